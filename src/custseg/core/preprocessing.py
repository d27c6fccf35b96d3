"""Feature engineering: imputation, skew transforms, clipping, scaling and one-hot.

Pure computation on Arrow tables and numpy arrays; no files. The learned state is a
:class:`FeatureTransform`, which the model artifact stores and the scorer and
`to_sklearn()` replay. For a numeric column, in this order:

1. a date column becomes days before the newest training date;
2. missing values take the training median;
3. clipping to robust bounds (the 0.5% and 99.5% quantiles, in the transformed space);
4. a skewed column is log-transformed: `log1p(x / s)` (`s` the 1st percentile of the
   positive values, so that money, counts and durations alike are compressed as by a
   log while zeros stay at 0), or the signed log `sign(x) log1p(|x| / s)` when values
   have both signs; chosen when the skewness is above 1 in absolute value and the log
   lowers it, and never for a column within [0, 1] (a rate or a share has no long tail);
5. standard scaling.

A categorical column is one-hot encoded (missing values take the training mode;
unknown categories at scoring are all zeros), and its block is weighted so that the
column carries `features.categorical_weight` (default 0.25) of one numeric column's
variance, never more than a plain one-hot: w = min(1, sqrt(weight / (1 - sum p^2))).
Left alone, a 50/50 category splits every real segment in two. `features.transform:
none` turns 3, 4 and the weighting off; `features.transforms: {COLUMN: auto | none |
log | clip}` sets one column.

The one-hot block is never materialised: categorical columns are kept as integer codes
(:class:`Encoded`), and the PCA step folds each category's column in directly. This keeps
memory near the size of the numeric columns, even at tens of millions of rows.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from custseg.config import Features
from custseg.core.columns import (
    NUMBER,
    Locate,
    category_codes,
    category_levels,
    category_strings,
    date_column_days,
    date_days,
    numeric_column,
    require_values,
)
from custseg.core.schema import Schema
from custseg.errors import DataError

__all__ = [
    "CLIP_QUANTILES",
    "LOG_SCALE_QUANTILE",
    "NUMBER",
    "SKEW_THRESHOLD",
    "Encoded",
    "FeatureTransform",
    "category_key",
    "category_weight",
    "date_days",
    "encode",
    "fit_features",
    "forward",
    "plan_numeric",
    "schema_rows",
]

CLIP_QUANTILES = (0.005, 0.995)
SKEW_THRESHOLD = 1.0
LOG_SCALE_QUANTILE = 0.01  # s: near the smallest positive values, so log1p(x/s) ~ log(x/s)
_SAMPLE = 200_000
T = TypeVar("T")


def _no_locate(row: int) -> str:
    return f"row {row + 1}"


def forward(x: np.ndarray, function: str, scale: float) -> np.ndarray:
    """The skew transform of raw values (`none`, `log1p` or `signed_log`)."""
    if function == "log1p":
        return np.asarray(np.log1p(x / scale))
    if function == "signed_log":
        return np.asarray(np.sign(x) * np.log1p(np.abs(x) / scale))
    return x


def inverse(y: np.ndarray, function: str, scale: float) -> np.ndarray:
    if function == "log1p":
        return np.asarray(np.expm1(y) * scale)
    if function == "signed_log":
        return np.asarray(np.sign(y) * np.expm1(np.abs(y)) * scale)
    return y


@dataclass(frozen=True)
class FeatureTransform:
    """The learned feature engineering (see the module docstring), in column order.

    Per numeric column: `medians` (raw units, after date conversion), `clip_low` /
    `clip_high` (raw units), `functions` and `log_scales`, then `means` and `scales` of
    the transformed values. `dates` maps a date column to its format and
    `date_reference` to the newest training date (days since 1970-01-01). `weights`
    is the one-hot weight of each categorical column.
    """

    numeric: list[str]
    medians: np.ndarray
    means: np.ndarray
    scales: np.ndarray
    categorical: list[str]
    modes: list[str]
    categories: list[list[str]]
    functions: list[str] = field(default_factory=list)
    log_scales: np.ndarray = field(default_factory=lambda: np.zeros(0))
    clip_low: np.ndarray = field(default_factory=lambda: np.zeros(0))
    clip_high: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dates: dict[str, str] = field(default_factory=dict)
    date_reference: dict[str, float] = field(default_factory=dict)
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # numeric columns whose training values were all 0 or 1 (None: not recorded, as in
    # older artifacts): only they take true/false at scoring
    flags: list[str] | None = None

    def __post_init__(self) -> None:  # defaults: the plain transform (older artifacts)
        a = len(self.numeric)
        fill = object.__setattr__
        if len(self.functions) != a:
            fill(self, "functions", ["none"] * a)
        if len(self.log_scales) != a:
            fill(self, "log_scales", np.ones(a))
        if len(self.clip_low) != a:
            fill(self, "clip_low", np.full(a, -np.inf))
        if len(self.clip_high) != a:
            fill(self, "clip_high", np.full(a, np.inf))
        if len(self.weights) != len(self.categorical):
            fill(self, "weights", np.ones(len(self.categorical)))

    def accepts_bool(self, name: str) -> bool:
        return self.flags is None or name in self.flags

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

    @property
    def feature_weights(self) -> np.ndarray:
        """The value of a one-hot feature when set: 1 per numeric, w_j per category."""
        parts = [np.ones(len(self.numeric))]
        parts += [np.full(len(c), w) for c, w in zip(self.categories, self.weights, strict=True)]
        return np.concatenate(parts)

    @property
    def plain(self) -> bool:
        """Only impute, scale and one-hot (no clip, log or weights): scikit-learn's own."""
        return (not self.dates and all(f == "none" for f in self.functions)
                and not np.isfinite(self.clip_low).any()
                and not np.isfinite(self.clip_high).any() and bool((self.weights == 1).all()))

    def finish(self, values: np.ndarray, j: int) -> np.ndarray:
        """Raw numeric values (imputed) -> clipped, transformed, standard-scaled; in place
        where it can."""
        np.clip(values, self.clip_low[j], self.clip_high[j], out=values)
        out = forward(values, self.functions[j], float(self.log_scales[j]))
        out -= self.means[j]
        out /= self.scales[j]
        return out

    def unscale(self, scaled: np.ndarray, j: int) -> np.ndarray:
        """Values of numeric feature j back in original units, as a new array (a clipped
        value stays at its bound: see `original`)."""
        return np.asarray(inverse(scaled * self.scales[j] + self.means[j], self.functions[j],
                                  float(self.log_scales[j])))

    def original(self, enc: Encoded, j: int, rows: np.ndarray | None = None) -> np.ndarray:
        """Numeric column j of encoded training rows (all, or `rows`) in original units
        (imputed, not clipped: the clipped rows' values are kept aside by `fit_features`)."""
        raw = self.unscale(enc.num[:, j] if rows is None else enc.num[rows, j], j)
        if j in enc.clipped:
            clipped, values = enc.clipped[j]  # clipped: sorted row numbers
            if rows is None:
                raw[clipped] = values
            elif len(clipped) and len(rows) > 1 and bool((rows[1:] > rows[:-1]).all()):
                # sorted distinct rows (the samples): the few clipped rows are looked up
                # among them, not every row among the clipped (4x faster at 200,000 rows)
                at = np.searchsorted(rows, clipped)
                hit = at < len(rows)
                hit[hit] = rows[at[hit]] == clipped[hit]
                raw[at[hit]] = values[hit]
            elif len(clipped):
                at = np.minimum(np.searchsorted(clipped, rows), len(clipped) - 1)
                hit = clipped[at] == rows
                raw[hit] = values[at[hit]]
        return raw

    def describe(self, name: str) -> str:
        """The transform of one input column, in words (for the schema table)."""
        if name in self.categorical:
            j = self.categorical.index(name)
            w = float(self.weights[j])
            weight = "" if w == 1.0 else f", weight {w:.2f}"
            return f"one-hot ({len(self.categories[j])} levels{weight})"
        j = self.numeric.index(name)
        steps = []
        if name in self.dates:
            ref = (date(1970, 1, 1).toordinal() + int(self.date_reference[name]))
            steps.append(f"days before {date.fromordinal(ref).isoformat()}")
        lo, hi = self.clip_low[j], self.clip_high[j]
        if np.isfinite(lo) or np.isfinite(hi):
            steps.append(f"clip [{_num(lo)}, {_num(hi)}]")
        fn = self.functions[j]
        if fn != "none":
            steps.append(f"{'log1p' if fn == 'log1p' else 'signed log'}(x / "
                         f"{_num(self.log_scales[j])})")
        steps.append("standardise")
        return ", ".join(steps)


def schema_rows(schema: Schema, transform: FeatureTransform) -> list[dict[str, Any]]:
    """One row per input column: name, role, transform (in words) and reason."""
    rows = []
    for col in schema.columns:
        if col.name in transform.numeric or col.name in transform.categorical:
            how = transform.describe(col.name)
        elif col.role == "profile_only":
            how = "described only"
        else:
            how = "-"
        rows.append({"name": col.name, "role": col.role, "transform": how,
                     "reason": col.reason} | col.to_dict())
    return rows


def _num(x: float) -> str:
    if not np.isfinite(x):
        return "-inf" if x < 0 else "inf"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


@dataclass(frozen=True)
class Encoded:
    """Rows in feature space without the one-hot block: scaled numerics + category codes.

    `codes[:, j]` indexes `categories[j]`; -1 marks an unknown category (all zeros).
    `clipped` (training rows only) keeps, per numeric column, the rows that clipping
    changed and their original values, so that profiles report original units.
    """

    num: np.ndarray  # (n, n_numeric) float64, imputed, transformed and standard-scaled
    codes: np.ndarray  # (n, n_categorical) int32
    clipped: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.num.shape[0])

    def take(self, index: np.ndarray) -> Encoded:
        return Encoded(num=self.num[index], codes=self.codes[index])

    def dense(self, transform: FeatureTransform) -> np.ndarray:
        """The full weighted one-hot feature matrix (for tests, samples and blocks)."""
        out = np.zeros((self.n, transform.n_features))
        out[:, : self.num.shape[1]] = self.num
        for j, off in enumerate(transform.offsets):
            rows = np.flatnonzero(self.codes[:, j] >= 0)
            out[rows, off + self.codes[rows, j]] = transform.weights[j]
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


def _only_zero_one(values: np.ndarray) -> bool:
    """Whether every value is 0 or 1 (a flag), looking at every row only when a spread
    sample of them is."""
    step = max(1, len(values) // _SAMPLE)
    sample = values[::step]
    if not ((sample == 0) | (sample == 1)).all():
        return False
    return bool(((values == 0) | (values == 1)).all())


def _skew(x: np.ndarray) -> float:
    """The sample skewness E[(x - mean)^3] / sd^3 (products, not numpy's slow `** 3`)."""
    d = x - x.mean()
    var = float(np.dot(d, d)) / len(d)
    if var == 0.0:
        return 0.0
    return float(np.dot(d * d, d)) / len(d) / float(var**1.5)


def plan_numeric(values: np.ndarray, mode: str) -> tuple[str, float, float, float]:
    """The function, log scale and clip bounds (raw units) for one imputed column."""
    if mode == "none":
        return "none", 1.0, -np.inf, np.inf
    step = max(1, len(values) // _SAMPLE)
    sample = values[::step]
    if len(np.unique(sample[: 1000])) <= 2 and len(np.unique(sample)) <= 2:
        return "none", 1.0, -np.inf, np.inf  # a 0/1 flag: nothing to tame
    function, scale = "none", 1.0
    positive = np.abs(sample[sample != 0])
    if len(positive) and mode in ("auto", "log"):
        scale = float(np.quantile(positive, LOG_SCALE_QUANTILE))
        candidate = "log1p" if sample.min() >= 0 else "signed_log"
        raw_skew = _skew(sample)
        bounded = sample.min() >= 0 and sample.max() <= 1  # a rate or share: no long tail
        if mode == "log" or (not bounded and abs(raw_skew) > SKEW_THRESHOLD
                             and abs(_skew(forward(sample, candidate, scale))) < abs(raw_skew)):
            function = candidate
    if function == "none":
        scale = 1.0
    lo, hi = np.quantile(forward(sample, function, scale), CLIP_QUANTILES)
    if not lo < hi:
        return function, scale, -np.inf, np.inf
    bounds = inverse(np.array([lo, hi]), function, scale)
    return function, scale, float(bounds[0]), float(bounds[1])


def category_weight(freq: np.ndarray, weight: float) -> float:
    p = freq / freq.sum()
    spread = 1.0 - float((p * p).sum())
    return min(1.0, math.sqrt(weight / spread)) if spread > 0 else 1.0


def _raw_numeric(name: str, col: pa.ChunkedArray, fmt: str | None, locate: Locate,
                 out: np.ndarray) -> float | None:
    """Raw values (NaN when missing) into `out` and, for a date column, the newest date
    (days)."""
    if fmt is None:
        numeric_column(name, col, locate, out)
        return None
    days = date_column_days(name, col, fmt, locate)
    newest = float(np.nanmax(days))
    np.subtract(newest, days, out=out)
    return newest


@dataclass(frozen=True)
class _NumericFit:
    """What fitting one numeric column learned (its scaled values go straight into the
    feature matrix)."""

    median: float
    mean: float
    scale: float
    function: str
    log_scale: float
    low: float
    high: float
    newest: float | None
    flag: bool
    clipped: tuple[np.ndarray, np.ndarray] | None


def _fit_numeric(table: pa.Table, name: str, fmt: str | None, mode: str, locate: Locate,
                 column: np.ndarray) -> _NumericFit:
    """Impute, plan, clip, transform and scale one numeric column, in place in `column`
    (its slot of the feature matrix: no other full-length copy but the median's)."""
    col = table.column(name)
    require_values(name, col, len(column))
    newest = _raw_numeric(name, col, fmt, locate, column)
    missing = np.isnan(column)
    any_missing = bool(missing.any())
    present = column[~missing] if any_missing else column.copy()  # the median reorders it
    flag = _only_zero_one(present)
    median = float(np.median(present, overwrite_input=True))
    del present
    if any_missing:
        np.copyto(column, median, where=missing)
    del missing
    function, scale, lo, hi = plan_numeric(column, mode)
    clipped = None
    if np.isfinite(lo) or np.isfinite(hi):
        rows = np.flatnonzero((column < lo) | (column > hi))
        if len(rows):
            clipped = (rows, column[rows])  # fancy indexing copies
        np.clip(column, lo, hi, out=column)
    if function == "log1p":  # forward(), in place
        column /= scale
        np.log1p(column, out=column)
    elif function != "none":
        np.copyto(column, forward(column, function, scale))
    mean = float(column.mean())
    column -= mean
    std = math.sqrt(float(np.dot(column, column)) / len(column))
    if std == 0.0 or std < 1e-12 * max(1.0, abs(mean)):
        raise DataError(
            f"column {name!r} is constant (every row is {median:g}): it cannot separate "
            f"segments; drop it with features.ignore"
        )
    column /= std
    return _NumericFit(median, mean, std, function, scale, lo, hi, newest, flag, clipped)


@dataclass(frozen=True)
class _CategoricalFit:
    mode: str
    categories: list[str]
    weight: float


def _fit_categorical(table: pa.Table, name: str, plain: bool, categorical_weight: float,
                     codes: np.ndarray) -> _CategoricalFit:
    """The levels, mode and weight of one categorical column; its codes into `codes`."""
    col = table.column(name)
    require_values(name, col, len(codes))
    values, freq, index = category_levels(category_strings(name, col))
    cats = sorted(values)
    if len(cats) < 2:
        raise DataError(
            f"column {name!r} is constant (every row is {cats[0]!r}): it cannot separate "
            f"segments; drop it with features.ignore"
        )
    top = freq.max()
    mode = min(v for v, f in zip(values, freq, strict=True) if f == top)  # sklearn's rule
    position = {c: i for i, c in enumerate(cats)}
    # each level's code, and the mode's for a missing value (index len(values))
    mapping = np.array([position[v] for v in values] + [position[mode]], dtype=np.int32)
    col_codes = mapping[index]
    codes[:] = col_codes
    weight = 1.0 if plain else category_weight(
        np.bincount(col_codes, minlength=len(cats)).astype(float), categorical_weight)
    return _CategoricalFit(mode, cats, weight)


PARALLEL_ROWS = 200_000  # below this, fitting the columns one after another is as fast


def _each_column(tasks: list[Callable[[], T]], rows: int) -> list[T]:
    """Run one task per column, on threads when the table is big (numpy and Arrow release
    the GIL in their loops); results (and the first error) in column order."""
    workers = min(len(tasks), os.cpu_count() or 1)
    if workers <= 1 or rows < PARALLEL_ROWS:
        return [task() for task in tasks]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda task: task(), tasks))


def fit_features(
    table: pa.Table, schema: Schema, locate: Locate = _no_locate,
    features: Features | None = None,
) -> tuple[FeatureTransform, Encoded]:
    """Learn imputation, transforms, scaling and categories from `table`, and encode it."""
    features = features or Features()
    n = table.num_rows
    numeric, dates, categorical = schema.numeric, schema.dates, schema.categorical
    # column-major: every later pass (Gram matrix, bincounts) reads whole columns
    num = np.empty((n, len(numeric)), dtype=np.float64, order="F")
    codes = np.empty((n, len(categorical)), dtype=np.int32, order="F")
    mode_of = features.transforms.get
    tasks: list[Callable[[], _NumericFit | _CategoricalFit]] = [
        partial(_fit_numeric, table, name, dates.get(name), mode_of(name, features.transform),
                locate, num[:, j])
        for j, name in enumerate(numeric)
    ] + [
        partial(_fit_categorical, table, name, mode_of(name, features.transform) == "none",
                features.categorical_weight, codes[:, j])
        for j, name in enumerate(categorical)
    ]
    fits = _each_column(tasks, n)
    nums = [f for f in fits if isinstance(f, _NumericFit)]
    cats = [f for f in fits if isinstance(f, _CategoricalFit)]
    transform = FeatureTransform(
        numeric=list(numeric),
        medians=np.array([f.median for f in nums]),
        means=np.array([f.mean for f in nums]),
        scales=np.array([f.scale for f in nums]),
        categorical=list(categorical),
        modes=[f.mode for f in cats],
        categories=[f.categories for f in cats],
        functions=[f.function for f in nums],
        log_scales=np.array([f.log_scale for f in nums]),
        clip_low=np.array([f.low for f in nums]),
        clip_high=np.array([f.high for f in nums]),
        dates={c: f for c, f in dates.items() if c in numeric},
        date_reference={c: f.newest for c, f in zip(numeric, nums, strict=True)
                        if f.newest is not None},
        weights=np.array([f.weight for f in cats]),
        flags=[c for c, f in zip(numeric, nums, strict=True) if f.flag],
    )
    clipped = {j: f.clipped for j, f in enumerate(nums) if f.clipped is not None}
    return transform, Encoded(num=num, codes=codes, clipped=clipped)


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
        fmt = transform.dates.get(name)
        if fmt is None:
            values = numeric_column(name, table.column(name), locate)
        else:
            values = transform.date_reference[name] - date_column_days(
                name, table.column(name), fmt, locate)
        np.copyto(values, transform.medians[j], where=np.isnan(values))
        num[:, j] = transform.finish(values, j)
    codes = np.empty((n, len(transform.categorical)), dtype=np.int32)
    for j, name in enumerate(transform.categorical):
        cats = transform.categories[j]
        col_codes = category_codes(category_strings(name, table.column(name)), cats)
        col_codes[col_codes == -2] = cats.index(transform.modes[j])
        codes[:, j] = col_codes
    return Encoded(num=num, codes=codes)
