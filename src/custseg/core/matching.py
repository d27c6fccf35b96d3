"""Stable segment ids across retrains: match a new model's clusters to the previous
version's, so that "segment 2" keeps its meaning for the apps that use it.

Hungarian matching on the segments' centroids in original units: numeric means, each
feature divided by the new data's standard deviation so that no unit dominates, plus
category shares. When k changes, the matched clusters take the old ids and the others
the next free ids. Pure computation.

The assignment is solved here (`assignment`, the shortest-augmenting-path Hungarian
method, O(k^3) for k clusters) rather than by scipy's `linear_sum_assignment`: importing
`scipy.optimize` takes 0.25-0.4 s, a quarter of a whole retrain at a million rows, for a
problem of a few clusters. The tests check it against scipy on random matrices.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["agreement", "assignment", "centroid_matrix", "match_ids"]


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
    usable = ~(np.isnan(new).any(axis=0) | np.isnan(old).any(axis=0))
    cost = ((new[:, None, usable] - old[None, :, usable]) ** 2).sum(axis=2)
    ids = [-1] * len(new)
    for r, c in assignment(cost):
        ids[r] = c
    taken = set(ids)
    fresh = iter(i for i in range(len(new) + len(old)) if i not in taken)
    return [i if i >= 0 else next(fresh) for i in ids]


def assignment(cost: np.ndarray) -> list[tuple[int, int]]:
    """The (row, column) pairs of a minimum-cost assignment: each row to at most one
    column and each column to at most one row, min(rows, columns) pairs in all, sorted
    by row (as scipy's `linear_sum_assignment`)."""
    transposed = cost.shape[0] > cost.shape[1]
    c = (cost.T if transposed else cost).tolist()
    n, m = len(c), len(c[0]) if c else 0
    inf = float("inf")
    u, v = [0.0] * (n + 1), [0.0] * (m + 1)
    owner, way = [0] * (m + 1), [0] * (m + 1)  # owner[j]: the row holding column j (1-based)
    for i in range(1, n + 1):  # add row i, then augment along the shortest path
        owner[0], j0 = i, 0
        slack, used = [inf] * (m + 1), [False] * (m + 1)
        while True:
            used[j0] = True
            i0, delta, j1 = owner[j0], inf, 0
            row = c[i0 - 1]
            for j in range(1, m + 1):
                if not used[j]:
                    reduced = row[j - 1] - u[i0] - v[j]
                    if reduced < slack[j]:
                        slack[j], way[j] = reduced, j0
                    if slack[j] < delta:
                        delta, j1 = slack[j], j
            for j in range(m + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    slack[j] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:  # flip the path
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    pairs = [(owner[j] - 1, j - 1) for j in range(1, m + 1) if owner[j]]
    return sorted((b, a) for a, b in pairs) if transposed else sorted(pairs)


def agreement(new_labels: np.ndarray, old_labels: np.ndarray) -> float:
    """Share of rows given the same id by both versions."""
    return float(np.mean(new_labels == old_labels)) if len(new_labels) else 1.0
