"""The fitted model and its fast scorer: what `predict` runs, in memory.

`Model` holds the fitted feature transform, the PCA projection, the centroids and the
metadata, and scores records, DataFrames or Arrow tables against them. It is immutable:
`with_uri` returns a copy that knows where it is stored. Its artifact on disk is
`custseg.artifact.format`'s business, its saving and loading `custseg.artifact.storage`'s.

`score_record` runs `_PlainScorer`: the whole chain (imputation, clipping, transforms,
scaling, one-hot, PCA) folded into one affine map over plain Python floats, several times
faster than numpy for a single record and proven equal to the vectorised path and to the
scikit-learn twin (`to_sklearn`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np
import pyarrow as pa

from custseg.core.preprocessing import (
    Encoded,
    FeatureTransform,
    category_key,
    date_days,
    encode,
)
from custseg.core.rowblocks import nearest
from custseg.core.schema import Schema
from custseg.core.train import Projection, category_tables, project
from custseg.errors import DataError

__all__ = ["Model"]

_CHUNK = 1 << 16  # rows scored at a time: their temporaries stay in cache


@dataclass(frozen=True)
class Model:
    """A fitted segmentation model: feature transform, PCA and centroids, plus metadata.

    Immutable (`meta` is a plain dict: fill it before the model is saved, never after);
    `uri` is where the artifact was saved or loaded from, None for a model not yet saved.
    """

    schema: Schema
    transform: FeatureTransform
    projection: Projection
    centers: np.ndarray  # (k, p)
    meta: dict[str, Any] = field(default_factory=dict)
    uri: str | None = None
    # scoring caches, derived from the fields above in __post_init__
    _tables: list[np.ndarray] = field(init=False, repr=False, compare=False)
    _lookup: list[dict[str, int]] = field(init=False, repr=False, compare=False)
    _lookup_missing: list[dict[str | None, int]] = field(init=False, repr=False, compare=False)
    _plain: _PlainScorer = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lookup = [{c: i for i, c in enumerate(cats)} for cats in self.transform.categories]
        # the same, with missing values (None, "") mapped to the imputed mode
        lookup_missing: list[dict[str | None, int]] = []
        for by_name, mode in zip(lookup, self.transform.modes, strict=True):
            with_missing: dict[str | None, int] = dict(by_name.items())
            with_missing[None] = with_missing[""] = by_name[mode]
            lookup_missing.append(with_missing)
        object.__setattr__(self, "_tables", category_tables(self.transform, self.projection))
        object.__setattr__(self, "_lookup", lookup)
        object.__setattr__(self, "_lookup_missing", lookup_missing)
        object.__setattr__(self, "_plain", _PlainScorer(self))

    def with_uri(self, uri: str) -> Model:
        """The same model, recording that its artifact is at `uri`."""
        return dataclasses.replace(self, uri=uri)

    @property
    def k(self) -> int:
        return int(self.centers.shape[0])

    @property
    def input_columns(self) -> list[str]:
        return self.transform.numeric + self.transform.categorical

    # -- scoring -------------------------------------------------------------------------
    def _assign(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest centre and distance of each row: squared differences summed coordinate
        by coordinate (exactly a sum over the coordinates, 3-8x faster than broadcasting
        rows x centres x coordinates), centre by centre (see core/rowblocks)."""
        labels = np.empty(len(z), dtype=np.int32)
        dist = np.empty(len(z))
        for s in range(0, len(z), _CHUNK):
            coords = np.ascontiguousarray(z[s : s + _CHUNK].T)  # (p, rows)
            d2 = np.empty((self.k, coords.shape[1]))
            term = np.empty(coords.shape[1])
            for j, center in enumerate(self.centers.tolist()):
                np.subtract(coords[0], center[0], out=d2[j])
                np.square(d2[j], out=d2[j])
                for c in range(1, len(center)):
                    np.subtract(coords[c], center[c], out=term)
                    np.square(term, out=term)
                    d2[j] += term
            lab, best = nearest(d2)
            labels[s : s + _CHUNK] = lab
            np.sqrt(best, out=dist[s : s + _CHUNK])
        return labels, dist

    def score_record(self, record: Mapping[str, Any], unseen: list[int] | None = None
                     ) -> tuple[int, float]:
        """One record's cluster id and distance, in plain Python (no numpy per call: a
        single record scores several times faster). Bad input raises the same DataError
        as `encode_records`. `unseen`, one counter per categorical column, is
        incremented for each category the model never saw (scored as all zeros)."""
        try:
            return self._plain.score(record, unseen)
        except (KeyError, TypeError, ValueError):
            self._encode_records_checked([record])  # raises the precise DataError
            raise

    @staticmethod
    def count_unseen(enc: Encoded, unseen: list[int]) -> None:
        """Add each categorical column's unseen categories in `enc` (code -1) to
        `unseen` (missing values are not unseen: they take the training mode)."""
        if enc.codes.size:
            for j, n in enumerate(np.count_nonzero(enc.codes < 0, axis=0).tolist()):
                unseen[j] += n

    def score_encoded(self, enc: Encoded) -> tuple[np.ndarray, np.ndarray]:
        """Cluster ids and distances to the assigned centroid for encoded rows."""
        return self._assign(project(enc, self.transform, self.projection, self._tables))

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> Encoded:
        """Encode JSON-like records (the path of every endpoint request).

        Column-wise and vectorised when the records are well-formed; otherwise the
        record-by-record path finds and names the bad record and field.
        """
        if len(records) <= 8:  # per record is faster than numpy's per-call overhead here
            return self._encode_records_checked(records)
        try:
            return self.encode_columns(lambda name: [rec[name] for rec in records],
                                       len(records))
        except (KeyError, TypeError, ValueError):
            return self._encode_records_checked(records)

    def encode_columns(self, column: Callable[[str], list[Any]], n: int) -> Encoded:
        """Encode `n` records given field by field (`column(name)`: the records' values
        of that field, as sent). Raises KeyError, TypeError or ValueError when a record
        is not well-formed (the caller then finds and names it record by record)."""
        t = self.transform
        num = np.empty((n, len(t.numeric)))
        for j, name in enumerate(t.numeric):
            raw = column(name)
            fmt = t.dates.get(name)
            if fmt is None:
                values = np.array(raw, dtype=np.float64)
                if not t.accepts_bool(name):  # true/false would pass as 1/0
                    for i in np.flatnonzero((values == 0) | (values == 1)).tolist():
                        if type(raw[i]) is bool:
                            raise ValueError(name)
            else:
                values = t.date_reference[name] - np.array(
                    [date_days(v, fmt) for v in raw], dtype=np.float64)
            np.copyto(values, t.medians[j], where=np.isnan(values))
            num[:, j] = t.finish(values, j)
        if not np.isfinite(num).all():
            raise ValueError("infinite value")
        codes = np.empty((n, len(t.categorical)), dtype=np.int32)
        for j, name in enumerate(t.categorical):
            lookup = self._lookup_missing[j]
            raw = column(name)
            found = list(map(lookup.get, raw, repeat(-1)))  # text and null, in C
            if -1 in found:  # unseen, or a category sent as a number: as its text
                for i in [i for i, code in enumerate(found) if code == -1]:
                    v = raw[i]
                    if not (v is None or type(v) is str):
                        found[i] = lookup.get(_scalar_key(v), -1)
            codes[:, j] = found
        return Encoded(num=num, codes=codes)

    def _encode_records_checked(self, records: Sequence[Mapping[str, Any]]) -> Encoded:
        """Encode record by record, raising DataError at the first bad record and field.

        Raises DataError naming the record and field for a missing field or a value that
        is not a number.
        """
        t = self.transform
        n = len(records)
        num = np.empty((n, len(t.numeric)))
        codes = np.empty((n, len(t.categorical)), dtype=np.int32)
        for i, rec in enumerate(records):
            if not isinstance(rec, Mapping):
                raise DataError(
                    f"record {i}: expected an object of fields, found {type(rec).__name__}"
                )
            for j, name in enumerate(t.numeric):
                if name not in rec:
                    kind = "a date" if name in t.dates else "a number"
                    raise DataError(f"record {i}: field {name!r} is missing (expected {kind})")
                v = rec[name]
                if name in t.dates:
                    fmt = t.dates[name]
                    try:
                        x = t.date_reference[name] - date_days(v, fmt)
                    except (TypeError, ValueError):
                        raise DataError(f"record {i}: field {name!r} must be a date "
                                        f"({fmt}), found {v!r}") from None
                    if x != x:
                        x = t.medians[j]
                elif v is None or (isinstance(v, str) and not v.strip()):
                    x = t.medians[j]
                elif isinstance(v, bool):
                    if not t.accepts_bool(name):
                        raise DataError(f"record {i}: field {name!r} must be a number, found "
                                        f"{'true' if v else 'false'} (a true/false value is "
                                        f"taken only for a 0/1 column)")
                    x = float(v)
                else:
                    try:
                        x = float(v)
                    except (TypeError, ValueError):
                        raise DataError(
                            f"record {i}: field {name!r} must be a number, found {v!r}"
                        ) from None
                    if x != x:
                        x = t.medians[j]
                    elif x in (float("inf"), float("-inf")):
                        raise DataError(f"record {i}: field {name!r} must be finite, found {v!r}")
                num[i, j] = t.finish(np.array([x]), j)[0]
            for j, name in enumerate(t.categorical):
                if name not in rec:
                    raise DataError(f"record {i}: field {name!r} is missing (expected a category)")
                if isinstance(rec[name], Mapping | list | tuple):
                    raise DataError(f"record {i}: field {name!r} must be a category (text or a "
                                    f"number), found {type(rec[name]).__name__}")
                key = category_key(rec[name])
                if key is None or key == "":
                    key = t.modes[j]
                codes[i, j] = self._lookup[j].get(key, -1)
        return Encoded(num=num, codes=codes)

    def _encode_any(self, data: Any) -> Encoded:
        if (
            isinstance(data, Mapping)
            and data
            and not all(isinstance(v, list | tuple | np.ndarray) for v in data.values())
        ):
            return self.encode_records([data])
        if isinstance(data, list | tuple):
            return self.encode_records(data)
        if isinstance(data, pa.Table):
            return encode(data, self.transform)
        if isinstance(data, Mapping):
            return encode(
                pa.table({k: _arrow_column(list(v)) for k, v in data.items()}), self.transform
            )
        if hasattr(data, "to_arrow") and not hasattr(data, "iloc"):  # polars
            return encode(data.to_arrow(), self.transform)
        if hasattr(data, "iloc"):  # pandas
            cols = {str(c): _arrow_column(data[c]) for c in data.columns}
            return encode(pa.table(cols) if cols else pa.table({}), self.transform)
        raise DataError(
            f"cannot score {type(data).__name__}: pass a record dict, a list of records, "
            f"a dict of columns, a pandas/polars DataFrame or an Arrow table"
        )

    def predict(self, data: Any) -> np.ndarray:
        """Cluster id of each row (a record, records, columns, DataFrame or Arrow table)."""
        return self.score(data)[0]

    def score(self, data: Any) -> tuple[np.ndarray, np.ndarray]:
        """Cluster ids and distances to the assigned centroid."""
        return self.score_encoded(self._encode_any(data))

    def to_sklearn(self) -> Any:
        """An equivalent, fitted scikit-learn Pipeline (ColumnTransformer, PCA, KMeans)."""
        from custseg.artifact.sklearn_bridge import build_pipeline

        return build_pipeline(self)


class _PlainScorer:
    """The model's whole chain folded into one affine map, as Python floats:
    z = bias + sum_j x_j * w_j + sum_c vector[category], then the nearest centre."""

    def __init__(self, model: Model) -> None:
        t, p = model.transform, model.projection
        w = p.components  # (p, d)
        a = len(t.numeric)
        scaled = w[:, :a] / t.scales  # the numeric weights per transformed unit
        bias = -p.mean @ w.T - scaled @ t.means
        # per column: name, median, weights, then (low, high, function, log scale, date
        # format, date reference) when the column is more than a plain number
        self.numeric = []
        for j, (name, median, weights) in enumerate(zip(
                t.numeric, t.medians.tolist(), scaled.T.tolist(), strict=True)):
            extra = None
            if not t.plain or name in t.dates:
                extra = (float(t.clip_low[j]), float(t.clip_high[j]), t.functions[j],
                         float(t.log_scales[j]), t.dates.get(name),
                         t.date_reference.get(name, 0.0))
            self.numeric.append((name, median, weights, extra))
        self.bias = bias.tolist()
        self.flags = {name: t.accepts_bool(name) for name in t.numeric}
        self.categorical = []
        tables = category_tables(t, p)
        for j, (name, cats) in enumerate(zip(t.categorical, t.categories, strict=True)):
            vectors: dict[Any, list[float]] = {c: tables[j][i].tolist() for i, c in
                                               enumerate(cats)}
            mode = vectors[t.modes[j]]
            vectors[None] = vectors[""] = mode
            self.categorical.append((name, vectors, [0.0] * w.shape[0]))
        self.centers = model.centers.tolist()

    def score(self, record: Mapping[str, Any], unseen: list[int] | None = None
              ) -> tuple[int, float]:
        z = self.bias.copy()
        one = len(z) == 1  # one component: no inner loops (twice as fast)
        for name, median, weights, extra in self.numeric:
            v = record[name]
            if extra is not None and extra[4] is not None:  # a date column
                x = extra[5] - date_days(v, extra[4])
                if x != x:
                    x = median
            elif v is None or v == "":
                x = median
            else:
                if type(v) is bool and not self.flags.get(name, True):
                    raise ValueError(name)
                x = float(v)
                if x != x:
                    x = median
                elif x == math.inf or x == -math.inf:
                    raise ValueError(name)
            if extra is not None:
                low, high, function = extra[0], extra[1], extra[2]
                x = low if x < low else high if x > high else x
                if function == "log1p":
                    x = math.log1p(x / extra[3])
                elif function == "signed_log":
                    x = math.copysign(math.log1p(abs(x) / extra[3]), x)
            if one:
                z[0] += x * weights[0]
            else:
                for c in range(len(z)):
                    z[c] += x * weights[c]
        for j, (name, vectors, zeros) in enumerate(self.categorical):
            v = record[name]
            key = v if v is None or type(v) is str else _scalar_key(v)
            vector = vectors.get(key)
            if vector is None:  # a category the model never saw: all zeros
                vector = zeros
                if unseen is not None:
                    unseen[j] += 1
            if one:
                z[0] += vector[0]
            else:
                for c in range(len(z)):
                    z[c] += vector[c]
        best, best_d2 = 0, math.inf
        if one:
            z0 = z[0]
            for i, center in enumerate(self.centers):
                d = z0 - center[0]
                if d * d < best_d2:
                    best, best_d2 = i, d * d
        else:
            for i, center in enumerate(self.centers):
                d2 = 0.0
                for zc, cc in zip(z, center, strict=True):
                    d2 += (zc - cc) * (zc - cc)
                if d2 < best_d2:
                    best, best_d2 = i, d2
        return best, math.sqrt(best_d2)


def _scalar_key(value: Any) -> str | None:
    """category_key of a scalar; a list or an object raises TypeError (the checked path
    then names the record and field)."""
    if isinstance(value, Mapping | list | tuple):
        raise TypeError("not a category")
    return category_key(value)


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _arrow_column(values: Any) -> pa.Array:
    """An Arrow column from a list or pandas Series (NaN is missing); mixed types as text."""
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if _is_missing(v) else str(v) for v in values], type=pa.string())

