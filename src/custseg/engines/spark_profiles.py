"""Exact segment figures over every row, for data larger than the driver's sample.

The profiles are computed on the driver's sample with the local engine's code (medians
and quartiles come from a sample there too); when the sample is not every row, each
segment's means in original units, its mean in standard deviations of the feature
space, and its category shares are then replaced by their exact values, in one Spark
pass that assigns every row to its nearest centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce
from typing import Any

import numpy as np

from custseg.core.preprocessing import FeatureTransform
from custseg.core.train import Projection
from custseg.engines.spark_columns import feature_columns, level_columns, original_columns
from custseg.engines.spark_data import SparkData

__all__ = ["SegmentSums", "exact_profiles", "segment_sums"]


@dataclass(frozen=True)
class SegmentSums:
    """Per segment: rows, means of the original and of the scaled numeric values, and
    the rows of each categorical level."""

    sizes: np.ndarray  # (k,)
    original: np.ndarray  # (k, numeric)
    scaled: np.ndarray  # (k, numeric)
    levels: list[np.ndarray]  # per categorical column: (k, levels)


def _nearest(z: list[Any], centers: np.ndarray) -> Any:
    """The index of the nearest centre, as a Spark expression over the z columns."""
    from pyspark.sql import functions as F

    dist = [reduce(lambda a, b: a + b,
                   [(zi - F.lit(float(c[i]))) * (zi - F.lit(float(c[i]))) for i, zi in
                    enumerate(z)]) for c in centers]
    arr = F.array(*dist)
    return F.array_position(arr, F.array_min(arr)) - 1


def segment_sums(data: SparkData, transform: FeatureTransform, projection: Projection,
                 centers: np.ndarray, centre: np.ndarray) -> SegmentSums:
    """One pass over every row: its segment (nearest centre in z), then the sums."""
    from pyspark.sql import functions as F

    feats = feature_columns(data, transform, centre)
    a = len(transform.numeric)
    w = projection.components
    frame = data.frame.select(
        *[f.alias(f"f{j}") for j, f in enumerate(feats)],
        *[o.alias(f"o{j}") for j, o in enumerate(original_columns(data, transform))],
        *[c.alias(f"c{j}") for j, c in enumerate(level_columns(data, transform))])
    z = [reduce(lambda x, y: x + y, [F.col(f"f{j}") * F.lit(float(w[i, j]))
                                     for j in range(w.shape[1])]) for i in range(w.shape[0])]
    frame = frame.withColumn("label", _nearest(z, centers))
    aggs = [F.count(F.lit(1)).alias("n")]
    aggs += [F.avg(f"o{j}").alias(f"o{j}") for j in range(a)]
    aggs += [F.avg(f"f{j}").alias(f"s{j}") for j in range(a)]
    for j, cats in enumerate(transform.categories):
        aggs += [F.count(F.when(F.col(f"c{j}") == F.lit(level), 1)).alias(f"c{j}_{i}")
                 for i, level in enumerate(cats)]
    k = len(centers)
    sizes, original, scaled = np.zeros(k), np.zeros((k, a)), np.zeros((k, a))
    levels = [np.zeros((k, len(cats))) for cats in transform.categories]
    for r in frame.groupBy("label").agg(*aggs).collect():
        c = int(r["label"])
        sizes[c] = r["n"]
        original[c] = [r[f"o{j}"] for j in range(a)]
        scaled[c] = [r[f"s{j}"] + float(centre[j]) for j in range(a)]
        for j, cats in enumerate(transform.categories):
            levels[j][c] = [r[f"c{j}_{i}"] for i in range(len(cats))]
    return SegmentSums(sizes, original, scaled, levels)


def exact_profiles(profiles: list[dict[str, Any]], sums: SegmentSums,
                   transform: FeatureTransform) -> None:
    """Replace the sample's sizes, means, shares and differences with the exact ones
    (in place; the medians and quartiles stay the sample's, as the local engine's)."""
    n = float(sums.sizes.sum())
    populations = [table.sum(axis=0) / n for table in sums.levels]
    for c, p in enumerate(profiles):
        size = float(sums.sizes[c])
        p["size"], p["share"] = int(size), size / n
        diffs: dict[str, dict[str, Any]] = {d["feature"]: d for d in p["differences"]}
        for j, name in enumerate(transform.numeric):
            p["numeric"][name]["mean"] = float(sums.original[c, j])
            diffs[name]["z"] = float(sums.scaled[c, j])
        for j, (name, cats) in enumerate(zip(transform.categorical, transform.categories,
                                             strict=True)):
            shares = sums.levels[j][c] / max(size, 1.0)
            p["categorical"][name] = dict(zip(cats, shares.tolist(), strict=True))
            for cat, share, pop in zip(cats, shares, populations[j], strict=True):
                sd = math.sqrt(pop * (1 - pop)) if 0 < pop < 1 else 1.0
                diff = diffs[f"{name}={cat}"]
                diff["share"], diff["z"] = float(share), float((share - pop) / sd)
        p["differences"].sort(key=lambda d: -abs(d["z"]))
        p["exact_over_rows"] = int(n)
