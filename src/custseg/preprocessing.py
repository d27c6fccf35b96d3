"""Feature engineering: schema inference, imputation, scaling and one-hot encoding.

Pure computation on Arrow tables and numpy arrays; no files. The learned state is a
:class:`FeatureTransform` (medians, means, scales, modes, categories), which the model
artifact stores and the scorer and `to_sklearn()` replay.

The one-hot block is never materialised: categorical columns are kept as integer codes
(:class:`Encoded`), and the PCA step folds each category's column in directly. This keeps
memory near the size of the numeric columns, even at tens of millions of rows.

Inference rules, when `features` does not declare a column (documented in the README):

* ignored: the columns in `features.ignore`; identifiers by name (`id`, `*ID`, `*Id`,
  `*_id`); text columns whose values are mostly unique (more than 50 distinct and over
  half the rows); dates and other non-tabular types.
* categorical: text columns; integer columns with at most 10 distinct values (codes such
  as Channel or Region).
* numeric: other integer and float columns; booleans (as 0/1).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from custseg.config import Features
from custseg.errors import DataError

__all__ = [
    "MAX_CODED_DISTINCT",
    "Encoded",
    "FeatureTransform",
    "Schema",
    "category_key",
    "encode",
    "fit_features",
    "infer_schema",
]

MAX_CODED_DISTINCT = 10
ID_NAME = re.compile(r"^([Ii][Dd]|.*_[Ii][Dd]|.*ID|.*Id)$")
NUMBER = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"
Locate = Callable[[int], str]


def _no_locate(row: int) -> str:
    return f"row {row + 1}"


@dataclass(frozen=True)
class Schema:
    """Which columns are numeric, categorical or ignored, and why (when inferred)."""

    numeric: list[str]
    categorical: list[str]
    ignored: list[str]
    inferred: bool
    reasons: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": self.numeric,
            "categorical": self.categorical,
            "ignored": self.ignored,
            "inferred": self.inferred,
            "reasons": self.reasons,
        }


@dataclass(frozen=True)
class FeatureTransform:
    """The learned feature engineering: impute, scale, one-hot (in this column order)."""

    numeric: list[str]
    medians: np.ndarray
    means: np.ndarray
    scales: np.ndarray
    categorical: list[str]
    modes: list[str]
    categories: list[list[str]]

    @property
    def n_features(self) -> int:
        return len(self.numeric) + sum(len(c) for c in self.categories)

    @property
    def feature_names(self) -> list[str]:
        names = list(self.numeric)
        for col, cats in zip(self.categorical, self.categories, strict=True):
            names += [f"{col}={c}" for c in cats]
        return names

    @property
    def offsets(self) -> list[int]:
        """Index of each categorical column's first one-hot feature."""
        out, pos = [], len(self.numeric)
        for cats in self.categories:
            out.append(pos)
            pos += len(cats)
        return out


@dataclass(frozen=True)
class Encoded:
    """Rows in feature space without the one-hot block: scaled numerics + category codes.

    `codes[:, j]` indexes `categories[j]`; -1 marks an unknown category (all zeros).
    """

    num: np.ndarray  # (n, n_numeric) float64, imputed and standard-scaled
    codes: np.ndarray  # (n, n_categorical) int32

    @property
    def n(self) -> int:
        return int(self.num.shape[0])

    def dense(self, transform: FeatureTransform) -> np.ndarray:
        """The full one-hot feature matrix (for tests and small data only)."""
        out = np.zeros((self.n, transform.n_features))
        out[:, : self.num.shape[1]] = self.num
        for j, off in enumerate(transform.offsets):
            rows = np.flatnonzero(self.codes[:, j] >= 0)
            out[rows, off + self.codes[rows, j]] = 1.0
        return out


def category_key(value: Any) -> str | None:
    """The canonical string of a categorical value (None when missing).

    Matches Arrow's cast to string, so that values read from CSV at training time and
    values arriving as JSON at inference time meet: 3, 3.0 and "3" are all "3".
    """
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if value != value:  # NaN
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


# -- schema ------------------------------------------------------------------------------


def _infer_kind(name: str, col: pa.ChunkedArray, n: int) -> tuple[str, str]:
    t = col.type
    if ID_NAME.match(name):
        return "ignored", "identifier (by name)"
    if pa.types.is_null(t):
        return "numeric", "no values at all"  # rejected with a clear message when fitted
    if pa.types.is_boolean(t):
        return "numeric", "boolean, coded 0/1"
    if pa.types.is_integer(t):
        distinct = len(pc.unique(col.drop_null()))
        if distinct <= MAX_CODED_DISTINCT:
            return "categorical", f"integer with {distinct} distinct values (a code)"
        return "numeric", "integer"
    if pa.types.is_floating(t):
        return "numeric", "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        values = col.drop_null()
        if len(values) and pc.sum(pc.match_substring_regex(values, NUMBER)).as_py() >= 0.9 * len(
            values
        ):
            return "numeric", "mostly numbers"  # the bad values are then reported by row
        distinct = len(pc.unique(values))
        if distinct > 50 and distinct > n / 2:
            return "ignored", f"text with {distinct} distinct values (an identifier?)"
        return "categorical", "text"
    return "ignored", f"unsupported type {t}"


def infer_schema(
    table: pa.Table,
    features: Features,
    source: str = "the data",
    header: list[str] | None = None,
) -> Schema:
    """The feature schema: the declared one (checked against the data) or an inferred one.

    `header` names every column of the source when the table holds only some of them.
    """
    columns = header if header is not None else table.column_names
    declared = {
        "numeric": features.numeric,
        "categorical": features.categorical,
        "ignore": features.ignore,
    }
    for key, names in declared.items():
        for name in names or []:
            if name not in columns:
                raise DataError(
                    f"column {name!r} (declared in features.{key}) is missing from {source}; "
                    f"columns found: {', '.join(columns)}"
                )
    if features.numeric is not None or features.categorical is not None:
        numeric, categorical = list(features.numeric or []), list(features.categorical or [])
        both = set(numeric) & set(categorical)
        if both:
            raise DataError(f"columns {sorted(both)} are declared both numeric and categorical")
        ignored = [c for c in columns if c not in numeric and c not in categorical]
        reasons = {
            c: "features.ignore" if c in features.ignore else "not declared in features"
            for c in ignored
        }
        return Schema(numeric, categorical, ignored, inferred=False, reasons=reasons)
    numeric, categorical, ignored, reasons = [], [], [], {}
    for name in columns:
        if name in features.ignore or name not in table.column_names:
            ignored.append(name)
            reasons[name] = "features.ignore"
            continue
        kind, why = _infer_kind(name, table.column(name), table.num_rows)
        {"numeric": numeric, "categorical": categorical, "ignored": ignored}[kind].append(name)
        reasons[name] = why
    if not numeric and not categorical:
        raise DataError(f"no usable feature columns in {source} (all were ignored: {reasons})")
    return Schema(numeric, categorical, ignored, inferred=True, reasons=reasons)


# -- column conversion -------------------------------------------------------------------


def _present(chunk: pa.Array) -> np.ndarray | None:
    """Where a chunk has values (None when it has no nulls), from its validity bitmap."""
    if chunk.null_count == 0:
        return None
    if chunk.buffers()[0] is None:  # a null-typed chunk: nothing present
        return np.zeros(len(chunk), dtype=bool)
    bits = np.frombuffer(chunk.buffers()[0], dtype=np.uint8)
    unpacked = np.unpackbits(bits, bitorder="little", count=chunk.offset + len(chunk))
    return unpacked[chunk.offset :].astype(bool)


def _to_numpy(col: pa.ChunkedArray, dtype: type[np.generic], missing: float | int) -> np.ndarray:
    """A fixed-width column as a new numpy array, nulls replaced by `missing`.

    Read straight from Arrow's buffers: pyarrow's own `to_numpy` (and any conversion of a
    Python value) imports pandas, which costs 0.2 s and 35 MB on every training run.
    """
    out = np.empty(len(col), dtype=dtype)
    width = np.dtype(dtype).itemsize
    pos = 0
    for chunk in col.chunks:
        n = len(chunk)
        data = chunk.buffers()[1] if len(chunk.buffers()) > 1 else None
        if data is None:
            out[pos : pos + n] = missing
        else:
            out[pos : pos + n] = np.frombuffer(
                data, dtype=dtype, count=n, offset=chunk.offset * width
            )
            present = _present(chunk)
            if present is not None:
                out[pos : pos + n][~present] = missing
        pos += n
    return out


def _numeric_column(
    name: str, col: pa.ChunkedArray, locate: Locate
) -> tuple[np.ndarray, pa.ChunkedArray]:
    """The column as float64 with NaN for missing values, and as an Arrow float column."""
    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        ok = pc.fill_null(pc.match_substring_regex(col, NUMBER), True)
        if not pc.all(ok).as_py():
            row = int(pc.index(ok, False).as_py())
            raise DataError(
                f"column {name!r} should be numeric, but {locate(row)} holds "
                f"{col[row].as_py()!r} (expected a number)"
            )
        col = pc.utf8_trim_whitespace(col)
    elif not (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_null(t)
    ):
        raise DataError(f"column {name!r} should be numeric, but its values are {t}")
    floats = pc.cast(col, pa.float64())
    values = _to_numpy(floats, np.float64, np.nan)
    infinite = np.isinf(values)
    if infinite.any():
        row = int(np.argmax(infinite))
        raise DataError(
            f"column {name!r}: {locate(row)} holds {values[row]} (expected a finite number)"
        )
    return values, floats


def _median(floats: pa.ChunkedArray) -> float:
    """Median of the present values (numpy's: the mean of the two middle ones)."""
    return float(pc.quantile(floats, q=0.5, interpolation="midpoint")[0].as_py())


def _category_strings(name: str, col: pa.ChunkedArray) -> pa.ChunkedArray:
    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return col
    if (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_null(t)
    ):
        return pc.cast(col, pa.string())
    raise DataError(f"column {name!r} should be categorical, but its values are {t}")


def _codes(col: pa.ChunkedArray, categories: list[str]) -> np.ndarray:
    """Index of each value in `categories`; -1 for unknown, -2 for missing."""
    enc = (
        col.combine_chunks().dictionary_encode()
        if col.num_chunks
        else pa.array([], pa.string()).dictionary_encode()
    )
    lookup = {c: i for i, c in enumerate(categories)}
    mapping = np.array(
        [lookup.get(v, -1) for v in enc.dictionary.to_pylist()] + [-2], dtype=np.int32
    )
    idx = _to_numpy(pa.chunked_array([enc.indices]), np.int32, len(mapping) - 1)
    return np.asarray(mapping[idx], dtype=np.int32)


def _all_missing(name: str, col: pa.ChunkedArray, n: int) -> None:
    if col.null_count == n:
        raise DataError(
            f"column {name!r} has no values (all {n} rows are missing); "
            f"drop it with features.ignore"
        )


def fit_features(
    table: pa.Table, schema: Schema, locate: Locate = _no_locate
) -> tuple[FeatureTransform, Encoded]:
    """Learn imputation, scaling and categories from `table`, and encode it."""
    n = table.num_rows
    # column-major: every later pass (Gram matrix, bincounts) reads whole columns
    num = np.empty((n, len(schema.numeric)), dtype=np.float64, order="F")
    medians, means, scales = [], [], []
    for j, name in enumerate(schema.numeric):
        col = table.column(name)
        _all_missing(name, col, n)
        values, floats = _numeric_column(name, col, locate)
        missing = np.isnan(values)
        median = _median(floats)
        np.copyto(values, median, where=missing)
        mean, std = float(values.mean()), float(values.std())
        if std == 0.0 or std < 1e-12 * max(1.0, abs(mean)):
            raise DataError(
                f"column {name!r} is constant (every row is {values[0]:g}): it cannot separate "
                f"segments; drop it with features.ignore"
            )
        values -= mean
        values /= std
        num[:, j] = values
        medians.append(median)
        means.append(mean)
        scales.append(std)
    codes = np.empty((n, len(schema.categorical)), dtype=np.int32)
    modes, categories = [], []
    for j, name in enumerate(schema.categorical):
        col = table.column(name)
        _all_missing(name, col, n)
        strings = _category_strings(name, col)
        counts = pc.value_counts(strings.drop_null())
        values = counts.field("values").to_pylist()
        freq = np.array(counts.field("counts").to_pylist())
        cats = sorted(values)
        if len(cats) < 2:
            raise DataError(
                f"column {name!r} is constant (every row is {cats[0]!r}): it cannot separate "
                f"segments; drop it with features.ignore"
            )
        top = freq.max()
        mode = min(v for v, f in zip(values, freq, strict=True) if f == top)  # sklearn's tie rule
        col_codes = _codes(strings, cats)
        col_codes[col_codes == -2] = cats.index(mode)
        codes[:, j] = col_codes
        modes.append(mode)
        categories.append(cats)
    transform = FeatureTransform(
        numeric=list(schema.numeric),
        medians=np.array(medians),
        means=np.array(means),
        scales=np.array(scales),
        categorical=list(schema.categorical),
        modes=modes,
        categories=categories,
    )
    return transform, Encoded(num=num, codes=codes)


def encode(table: pa.Table, transform: FeatureTransform, locate: Locate = _no_locate) -> Encoded:
    """Encode new rows with a learned transform (missing values imputed, unknowns -1)."""
    n = table.num_rows
    for name in transform.numeric + transform.categorical:
        if name not in table.column_names:
            raise DataError(
                f"column {name!r} is missing; columns found: {', '.join(table.column_names)}"
            )
    num = np.empty((n, len(transform.numeric)), dtype=np.float64)
    for j, name in enumerate(transform.numeric):
        values, _ = _numeric_column(name, table.column(name), locate)
        np.copyto(values, transform.medians[j], where=np.isnan(values))
        num[:, j] = (values - transform.means[j]) / transform.scales[j]
    codes = np.empty((n, len(transform.categorical)), dtype=np.int32)
    for j, name in enumerate(transform.categorical):
        cats = transform.categories[j]
        col_codes = _codes(_category_strings(name, table.column(name)), cats)
        col_codes[col_codes == -2] = cats.index(transform.modes[j])
        codes[:, j] = col_codes
    return Encoded(num=num, codes=codes)
