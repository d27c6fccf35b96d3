"""Stable segment ids across retrains: match a new model's clusters to the previous
version's, so that "segment 2" keeps its meaning for the apps that use it.

Hungarian matching (scipy's `linear_sum_assignment`) on the segments' centroids in
original units: numeric means, each feature divided by the new data's standard
deviation so that no unit dominates, plus category shares. When k changes, the matched
clusters take the old ids and the others the next free ids. Pure computation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["agreement", "centroid_matrix", "match_ids"]


def centroid_matrix(profiles: list[dict[str, Any]], numeric: list[str],
                    scales: dict[str, float], categories: list[str]) -> np.ndarray:
    """Each segment's centroid as a vector: scaled numeric means, then category shares."""
    rows = []
    for p in profiles:
        row = [p["numeric"].get(c, {}).get("mean", np.nan) / scales[c] for c in numeric]
        for key in categories:
            column, _, value = key.partition("=")
            row.append(p["categorical"].get(column, {}).get(value, 0.0))
        rows.append(row)
    return np.asarray(rows, dtype=np.float64)


def match_ids(new: np.ndarray, old: np.ndarray) -> list[int]:
    """For each new cluster (row of `new`), its id: the old cluster it matches best."""
    from scipy.optimize import linear_sum_assignment

    usable = ~(np.isnan(new).any(axis=0) | np.isnan(old).any(axis=0))
    cost = ((new[:, None, usable] - old[None, :, usable]) ** 2).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    ids = [-1] * len(new)
    for r, c in zip(rows, cols, strict=True):
        ids[int(r)] = int(c)
    fresh = iter(i for i in range(len(new) + len(old)) if i not in set(cols.tolist()))
    return [i if i >= 0 else next(fresh) for i in ids]


def agreement(new_labels: np.ndarray, old_labels: np.ndarray) -> float:
    """Share of rows given the same id by both versions."""
    return float(np.mean(new_labels == old_labels)) if len(new_labels) else 1.0
