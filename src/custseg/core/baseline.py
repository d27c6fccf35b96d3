"""The training baseline a model carries for monitoring (`meta["baseline"]`): what the
training data looked like, in the units requests arrive in, so that `custseg monitor`
can tell how far live traffic has moved from it.

Pure computation on the encoded training rows (a seeded sample of at most
`BASELINE_SAMPLE`), their segment ids and the model's projection:

* per numeric feature: the deciles (original units, before clipping) as bin edges and
  the share of training rows in each bin (ties make them differ from 10%), and the
  share of missing values;
* per categorical feature: the share of each level among present values, and the share
  of missing values;
* the share of each segment;
* the distance of each row to its nearest centroid: its median and 95th percentile
  (the monitor expects 5% of records beyond it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from custseg.core.preprocessing import Encoded, FeatureTransform
from custseg.core.train import Projection, project

__all__ = ["BASELINE_SAMPLE", "BASELINE_VERSION", "EDGE_TOLERANCE", "bin_shares",
           "training_baseline"]

# 50,000 rows put each decile within about 0.2 percentage points of the data's (PSI noise
# far below its 0.1 threshold) for a fifth of the 200,000-row cost (80 ms at 1M rows)
BASELINE_SAMPLE = 50_000
BASELINE_VERSION = 1
# the inverse transform's round-off is about 1e-15 of the column's scale; distinct data
# values 1e-9 of it apart are one value for binning
EDGE_TOLERANCE = 1e-9
DECILES = np.linspace(0.1, 0.9, 9)


def _sample(n: int, random_state: int) -> np.ndarray:
    if n <= BASELINE_SAMPLE:
        return np.arange(n)
    rng = np.random.default_rng([random_state, 37])
    return np.sort(rng.choice(n, BASELINE_SAMPLE, replace=False))


def bin_shares(values: np.ndarray, edges: list[float]) -> list[float]:
    """The share of `values` in each bin: (-inf, e0], (e0, e1], ..., (e_last, inf).

    A value within `EDGE_TOLERANCE` of the edges' scale above an edge counts as equal to
    it. The edges are training values read back through the inverse of the feature
    transform (`FeatureTransform.original`: the raw column is transformed in place), a
    few ULPs off the values the data holds: 4 reads back as 3.9999999999999996. With
    tied values (counts, codes, rounded amounts) a decile lands on such a value, and
    without the tolerance every 4 of the traffic would fall one bin above the training
    4s: a PSI of about 0.4 on traffic drawn from the training data itself.
    """
    if len(values) == 0:
        return [0.0] * (len(edges) + 1)
    bounds = np.asarray(edges, dtype=float)
    if len(bounds):
        scale = float(np.abs(bounds).max()) or 1.0
        bounds = bounds + EDGE_TOLERANCE * scale
    counts = np.bincount(np.searchsorted(bounds, values, side="left"),
                         minlength=len(edges) + 1)
    return [float(x) for x in counts / len(values)]


def _numeric(values: np.ndarray, missing: int, rows: int) -> dict[str, Any]:
    # quantiles and bin counts depend on the values only, and are faster on sorted ones
    # (the mean and sd are summed in the rows' order, as they always were)
    ordered = np.sort(values)
    edges = np.unique(np.quantile(ordered, DECILES)).tolist()
    return {"edges": edges, "shares": bin_shares(ordered, edges),
            "mean": float(values.mean()), "sd": float(values.std()),
            "missing_share": missing / rows if rows else 0.0}


def _categorical(codes: np.ndarray, levels: list[str], mode: str, missing: int,
                 rows: int, sampled: int) -> dict[str, Any]:
    """Level shares among present values: the rows imputed with the mode (missing, scaled
    to the sample) are taken off the mode's count."""
    counts = np.bincount(codes[codes >= 0], minlength=len(levels)).astype(float)
    counts[levels.index(mode)] -= min(counts[levels.index(mode)], missing * sampled / rows)
    total = counts.sum()
    shares = counts / total if total > 0 else counts
    return {"levels": dict(zip(levels, shares.tolist(), strict=True)),
            "missing_share": missing / rows if rows else 0.0}


def _distances(enc: Encoded, transform: FeatureTransform, projection: Projection,
               centers: np.ndarray) -> np.ndarray:
    z = project(enc, transform, projection)
    nearest = np.full(len(z), np.inf)
    for center in centers:  # a centre at a time: memory of one (n, p) difference
        np.minimum(nearest, ((z - center) ** 2).sum(axis=1), out=nearest)
    return np.asarray(np.sqrt(nearest))


def training_baseline(enc: Encoded, transform: FeatureTransform, projection: Projection,
                      centers: np.ndarray, labels: np.ndarray, *, missing: dict[str, int],
                      rows: int, random_state: int = 0) -> dict[str, Any]:
    """The baseline (see the module docstring). `enc` and `labels` are the training rows
    (all, or the engine's sample of them), `missing` the missing values per column over
    all `rows` training rows."""
    index = _sample(enc.n, random_state)
    sample = enc.take(index)
    numeric = {}
    for j, name in enumerate(transform.numeric):
        values = transform.original(enc, j, index)
        numeric[name] = _numeric(values, missing.get(name, 0), rows)
    categorical = {
        name: _categorical(sample.codes[:, j], transform.categories[j],
                           transform.modes[j], missing.get(name, 0), rows, len(index))
        for j, name in enumerate(transform.categorical)}
    k = int(centers.shape[0])
    segments = np.bincount(labels, minlength=k) / max(len(labels), 1)  # all rows
    distances = _distances(sample, transform, projection, centers)
    return {
        "version": BASELINE_VERSION,
        "rows": rows,
        "sample_rows": len(index),
        "numeric": numeric,
        "categorical": categorical,
        "segments": segments.tolist(),
        "distance": {"p50": float(np.quantile(distances, 0.5)),
                     "p95": float(np.quantile(distances, 0.95))},
    }
