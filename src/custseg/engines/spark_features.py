"""The feature transform fitted on Spark: the local engine's `FeatureTransform`, learned
from Spark aggregates over every row (its expressions: `spark_columns`).

Over all rows (Spark): each date column's newest date (a date column is days before
it), the checks (a numeric column's text that is not a number, a date not in its
format, an infinite value, a column with no values), each numeric column's median
(approxQuantile, made exact in a second pass) and whether it holds only 0 and 1, the
mean and standard deviation after the transform, and each categorical column's levels,
counts and mode.
On the driver's seeded sample, as the local engine decides them on its own sample of
at most 200,000 rows: the skew transform, the log scale and the clip bounds
(`preprocessing.plan_numeric`). The one-hot weights follow from the exact counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from custseg.config import Features
from custseg.core.columns import date_column_days, numeric_column
from custseg.core.preprocessing import (
    Encoded,
    FeatureTransform,
    category_weight,
    encode,
    plan_numeric,
)
from custseg.core.schema import Schema
from custseg.engines.spark_columns import Dates, category, days, forward, number
from custseg.engines.spark_data import SparkData, column
from custseg.errors import DataError

__all__ = ["MEDIAN_ERROR", "FittedFeatures", "fit_features_spark"]

MEDIAN_ERROR = 1e-4  # approxQuantile's relative error (rank): 0.01% of the rows
MEDIAN_WINDOW = 5e-4  # the ranks either side of the middle bracketed (5x the error)


@dataclass(frozen=True)
class FittedFeatures:
    """The transform, the rows, the missing count of each used column, and the driver
    sample encoded (with the clipped rows' original values, as `fit_features` keeps)."""

    transform: FeatureTransform
    rows: int
    missing: dict[str, int]
    sample: Encoded
    counts: list[np.ndarray]  # each categorical level's rows (missing ones in the mode)


def _date_references(data: SparkData, schema: Schema, kinds: dict[str, pa.DataType]
                     ) -> Dates:
    """One pass: each date column's newest date; a DataError for a value that is not a
    date in the column's format, or a column with no dates."""
    from pyspark.sql import functions as F

    dates = schema.dates
    if not dates:
        return {}
    aggs = []
    for j, (name, fmt) in enumerate(dates.items()):
        in_days = days(name, kinds[name], data.text, fmt)
        aggs += [F.max(in_days).alias(f"newest{j}"),
                 F.count(F.when(column(name).isNotNull() & in_days.isNull(), 1)
                         ).alias(f"bad{j}")]
    row = data.frame.agg(*aggs).first().asDict()
    out: Dates = {}
    for j, (name, fmt) in enumerate(dates.items()):
        if row[f"bad{j}"]:
            in_days = days(name, kinds[name], data.text, fmt)
            found = data.frame.filter(column(name).isNotNull() & in_days.isNull()).select(
                F.input_file_name().alias("file"), column(name).alias("value")).first()
            raise DataError(f"column {name!r} should be a date ({fmt}), but "
                            f"{found['file'] or 'the data'} holds {found['value']!r}")
        if row[f"newest{j}"] is None:
            raise DataError(f"column {name!r} has no values (all {data.rows} rows are "
                            "missing); drop it with features.ignore")
        out[name] = (fmt, float(row[f"newest{j}"]))
    return out


def _check_numbers(data: SparkData, schema: Schema, kinds: dict[str, pa.DataType],
                   dates: Dates) -> tuple[dict[str, int], list[str]]:
    """One pass: the present values and 0/1-only flag of each numeric column; a DataError
    for text that is not a number, an infinite value, or a column with no values."""
    from pyspark.sql import functions as F

    aggs = []
    for j, name in enumerate(schema.numeric):
        x = number(name, kinds[name], data.text, dates)
        aggs += [F.count(x).alias(f"present{j}"),
                 F.count(F.when(column(name).isNotNull() & x.isNull(), 1)).alias(f"bad{j}"),
                 F.count(F.when(F.abs(x) == float("inf"), 1)).alias(f"inf{j}"),
                 F.count(F.when(~x.isin(0.0, 1.0), 1)).alias(f"other{j}")]
    for j, name in enumerate(schema.categorical):
        aggs.append(F.count(column(name)).alias(f"cat{j}"))
    row = data.frame.agg(*aggs).first().asDict()
    present, flags = {}, []
    for j, name in enumerate(schema.numeric):
        x = number(name, kinds[name], data.text, dates)
        for kind, cond, expected in (
                ("bad", column(name).isNotNull() & x.isNull(), "a number"),
                ("inf", F.abs(x) == float("inf"), "a finite number")):
            if row[f"{kind}{j}"]:
                found = data.frame.filter(cond).select(
                    F.input_file_name().alias("file"), column(name).alias("value")).first()
                raise DataError(
                    f"column {name!r} should be numeric, but {row[f'{kind}{j}']:,} rows hold "
                    f"other values, e.g. {found['file'] or 'the data'} holds "
                    f"{found['value']!r} (expected {expected})")
        present[name] = int(row[f"present{j}"])
        if present[name] and not row[f"other{j}"]:
            flags.append(name)
    for j, name in enumerate(schema.categorical):
        present[name] = int(row[f"cat{j}"])
    for name, count in present.items():
        if count == 0:
            raise DataError(f"column {name!r} has no values (all {data.rows} rows are "
                            "missing); drop it with features.ignore")
    return present, flags


Plan = tuple[str, float, float, float]  # function, log scale, clip bounds


def _numeric(data: SparkData, schema: Schema, features: Features,
             kinds: dict[str, pa.DataType], dates: Dates
             ) -> tuple[list[float], list[Plan], list[float], list[float]]:
    """Medians (all rows), plans (the sample), means and sds after the transform (all)."""
    from pyspark.sql import functions as F

    names = schema.numeric
    if not names:
        return [], [], [], []
    numbers = data.frame.select([number(c, kinds[c], data.text, dates).alias(f"n{j}")
                                 for j, c in enumerate(names)])
    medians = _medians(numbers, len(names))
    plans = []
    for name, median in zip(names, medians, strict=True):
        values = _sample_numbers(data.sample, name, dates)
        np.copyto(values, median, where=np.isnan(values))
        plans.append(plan_numeric(values, features.transforms.get(name, features.transform)))
    moments = []
    for j, ((function, scale, lo, hi), median) in enumerate(zip(plans, medians, strict=True)):
        x = F.coalesce(F.col(f"n{j}"), F.lit(median))
        if np.isfinite(lo) or np.isfinite(hi):
            x = F.least(F.greatest(x, F.lit(lo)), F.lit(hi))
        v = forward(x, function, scale)
        moments += [F.avg(v).alias(f"mean{j}"), F.stddev_pop(v).alias(f"sd{j}")]
    row = numbers.agg(*moments).first().asDict()
    means = [float(row[f"mean{j}"]) for j in range(len(names))]
    sds = [float(row[f"sd{j}"]) for j in range(len(names))]
    for name, median, mean, sd in zip(names, medians, means, sds, strict=True):
        if sd == 0.0 or sd < 1e-12 * max(1.0, abs(mean)):
            raise DataError(f"column {name!r} is constant (every row is {median:g}): it cannot "
                            "separate segments; drop it with features.ignore")
    return medians, plans, means, sds


def _medians(numbers: Any, m: int) -> list[float]:
    """The exact median of each column `n{j}` (numpy's: the midpoint of the two middle
    values), in two passes and without the values on the driver: approxQuantile brackets
    the middle ranks in [lo, hi] (`MEDIAN_WINDOW` of the rows either side of the middle,
    against its rank error of `MEDIAN_ERROR`); the second pass counts the values below
    lo, at lo and at hi, and brings only the values strictly between them."""
    from pyspark.sql import functions as F

    cols = [f"n{j}" for j in range(m)]
    bounds = numbers.approxQuantile(cols, [0.5 - MEDIAN_WINDOW, 0.5 + MEDIAN_WINDOW],
                                    MEDIAN_ERROR)
    aggs = []
    for j, (lo, hi) in enumerate(bounds):
        x = F.col(f"n{j}")
        aggs += [F.count(x).alias(f"present{j}"),
                 F.count(F.when(x < F.lit(lo), 1)).alias(f"below{j}"),
                 F.count(F.when(x == F.lit(lo), 1)).alias(f"at_lo{j}"),
                 F.count(F.when((x == F.lit(hi)) & F.lit(hi != lo), 1)).alias(f"at_hi{j}"),
                 F.collect_list(F.when((x > F.lit(lo)) & (x < F.lit(hi)), x)).alias(f"in{j}")]
    row = numbers.agg(*aggs).first().asDict()
    out = []
    for j, (lo, hi) in enumerate(bounds):
        inner = sorted(float(v) for v in row[f"in{j}"])
        below, at_lo, at_hi = row[f"below{j}"], row[f"at_lo{j}"], row[f"at_hi{j}"]

        def value(rank: int, lo: float = lo, hi: float = hi, inner: list[float] = inner,
                  below: int = below, at_lo: int = at_lo, at_hi: int = at_hi) -> float:
            rank -= below
            if rank < 0:  # outside the bracket: approxQuantile's guarantee makes it rare
                return lo
            if rank < at_lo:
                return lo
            rank -= at_lo
            if rank < len(inner):
                return inner[rank]
            return hi

        n = int(row[f"present{j}"])
        out.append((value((n - 1) // 2) + value(n // 2)) / 2)
    return out


def _sample_row(row: int) -> str:
    return f"sampled row {row + 1}"


def _sample_numbers(sample: pa.Table, name: str, dates: Dates) -> np.ndarray:
    """A numeric column of the driver's sample as the transform reads it (NaN missing)."""
    if name in dates:
        fmt, newest = dates[name]
        return newest - date_column_days(name, sample.column(name), fmt, _sample_row)
    return numeric_column(name, sample.column(name), _sample_row)


def _levels(data: SparkData, schema: Schema, kinds: dict[str, pa.DataType]
            ) -> list[dict[str, int]]:
    """Each categorical column's levels and counts (missing values not counted), in one
    pass over the rows."""
    from pyspark.sql import functions as F

    names = schema.categorical
    if not names:
        return []
    pairs = F.explode(F.array(*[
        F.struct(F.lit(j).alias("j"), category(c, kinds[c], data.text).alias("v"))
        for j, c in enumerate(names)])).alias("p")
    counts = (data.frame.select(pairs).select("p.j", "p.v").where(F.col("v").isNotNull())
              .groupBy("j", "v").count().collect())
    out: list[dict[str, int]] = [{} for _ in names]
    for r in counts:
        out[int(r["j"])][str(r["v"])] = int(r["count"])
    return out


def fit_features_spark(data: SparkData, schema: Schema, features: Features) -> FittedFeatures:
    """The FeatureTransform of all rows (see the module docstring), and the sample
    encoded with it."""
    kinds = {name: data.sample.schema.field(name).type
             for name in schema.numeric + schema.categorical}
    dates = _date_references(data, schema, kinds)
    present, flags = _check_numbers(data, schema, kinds, dates)
    medians, plans, means, sds = _numeric(data, schema, features, kinds, dates)
    modes, categories, weights, all_counts = [], [], [], []
    for name, counts in zip(schema.categorical, _levels(data, schema, kinds), strict=True):
        cats = sorted(counts)
        if len(cats) < 2:
            raise DataError(f"column {name!r} is constant (every row is {cats[0]!r}): it "
                            "cannot separate segments; drop it with features.ignore")
        top = max(counts.values())
        mode = min(v for v, f in counts.items() if f == top)  # sklearn's rule, as local
        freq = np.array([counts[c] for c in cats], dtype=float)
        freq[cats.index(mode)] += data.rows - present[name]  # missing values take the mode
        plain = features.transforms.get(name, features.transform) == "none"
        modes.append(mode)
        categories.append(cats)
        all_counts.append(freq)
        weights.append(1.0 if plain else category_weight(freq, features.categorical_weight))
    transform = FeatureTransform(
        numeric=list(schema.numeric),
        medians=np.array(medians),
        means=np.array(means),
        scales=np.array(sds),
        categorical=list(schema.categorical),
        modes=modes,
        categories=categories,
        functions=[p[0] for p in plans],
        log_scales=np.array([p[1] for p in plans]),
        clip_low=np.array([p[2] for p in plans]),
        clip_high=np.array([p[3] for p in plans]),
        dates={c: fmt for c, (fmt, _) in dates.items()},
        date_reference={c: newest for c, (_, newest) in dates.items()},
        weights=np.array(weights),
        flags=flags,
    )
    missing = {c: data.rows - present[c] for c in schema.numeric + schema.categorical}
    return FittedFeatures(transform, data.rows, missing, _encode_sample(data.sample, transform),
                          all_counts)


def _encode_sample(sample: pa.Table, transform: FeatureTransform) -> Encoded:
    """The sample encoded, keeping the clipped rows' original values (for profiles)."""
    enc = encode(sample, transform, _sample_row)
    clipped = {}
    dates = {c: (fmt, transform.date_reference[c]) for c, fmt in transform.dates.items()}
    for j, name in enumerate(transform.numeric):
        values = _sample_numbers(sample, name, dates)
        np.copyto(values, transform.medians[j], where=np.isnan(values))
        outside = (values < transform.clip_low[j]) | (values > transform.clip_high[j])
        if outside.any():
            rows = np.flatnonzero(outside)
            clipped[j] = (rows, values[rows].copy())
    return Encoded(num=enc.num, codes=enc.codes, clipped=clipped)
