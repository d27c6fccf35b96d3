"""Lloyd's algorithm in one dimension, on data sorted once, with prefix sums.

In one dimension (the default `n_components: 1`) each KMeans cluster is an interval of
the sorted data, cut at the midpoints between neighbouring centres. With the data sorted
once and its prefix sums of x and x^2, a Lloyd step (assign, then recompute means) is k
binary searches, O(k log n), instead of a pass over all n rows; so is the inertia. The
result is the same fixed point as the general algorithm (tested against it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LineFit", "SortedLine"]


@dataclass(frozen=True)
class LineFit:
    centers: np.ndarray  # (k,) increasing
    bounds: np.ndarray  # (k + 1,) cluster j is sorted rows bounds[j]:bounds[j+1]
    inertia: float
    n_iter: int


class SortedLine:
    """One-dimensional rows, sorted once, with prefix sums for O(k log n) Lloyd steps."""

    def __init__(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).ravel()
        self.order = np.argsort(x)
        self.xs = x[self.order]
        self.s1 = np.concatenate([[0.0], np.cumsum(self.xs)])
        self.s2 = np.concatenate([[0.0], np.cumsum(self.xs * self.xs)])
        self.n = len(x)
        self.variance = float(np.var(x)) if self.n > 1 else 0.0

    def bounds(self, centers: np.ndarray) -> np.ndarray:
        """Interval ends of each (increasing) centre's cluster; ties go to the lower centre."""
        mids = (centers[1:] + centers[:-1]) / 2.0
        cuts = np.searchsorted(self.xs, mids, side="right")
        return np.concatenate([[0], cuts, [self.n]]).astype(np.int64)

    def _stats(self, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        counts = np.diff(bounds)
        sums = self.s1[bounds[1:]] - self.s1[bounds[:-1]]
        squares = self.s2[bounds[1:]] - self.s2[bounds[:-1]]
        return counts, sums, squares

    def inertia(self, centers: np.ndarray, bounds: np.ndarray) -> float:
        counts, sums, squares = self._stats(bounds)
        per = squares - 2.0 * centers * sums + counts * centers * centers
        return float(np.maximum(per, 0.0).sum())

    def lloyd(self, centers: np.ndarray, *, max_iter: int = 300, tol: float = 1e-4) -> LineFit:
        """Lloyd iterations from `centers` (any order) until the centre shift is below tol."""
        tol_abs = tol * self.variance
        centers = np.sort(np.asarray(centers, dtype=np.float64).ravel())
        bounds = self.bounds(centers)
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            counts, sums, _ = self._stats(bounds)
            new = centers.copy()
            filled = counts > 0
            new[filled] = sums[filled] / counts[filled]
            if not filled.all():  # move empty clusters to the points farthest from theirs
                new = self._relocate(new, bounds, filled)
            shift = float(((new - centers) ** 2).sum())
            centers = np.sort(new)
            new_bounds = self.bounds(centers)
            unchanged = np.array_equal(new_bounds, bounds)
            bounds = new_bounds
            if unchanged or shift <= tol_abs:
                break
        return LineFit(centers, bounds, self.inertia(centers, bounds), n_iter)

    def _relocate(self, centers: np.ndarray, bounds: np.ndarray, filled: np.ndarray) -> np.ndarray:
        # a cluster's farthest points are its interval's ends
        ends = []
        for j in np.flatnonzero(filled):
            lo, hi = self.xs[bounds[j]], self.xs[bounds[j + 1] - 1]
            ends += [(abs(lo - centers[j]), lo), (abs(hi - centers[j]), hi)]
        ends.sort(reverse=True)
        out = centers.copy()
        for j, (_, value) in zip(np.flatnonzero(~filled), ends, strict=False):
            out[j] = value
        return out

    def labels(self, bounds: np.ndarray) -> np.ndarray:
        """Cluster index of each row in the original order."""
        sorted_labels = np.repeat(np.arange(len(bounds) - 1, dtype=np.int32), np.diff(bounds))
        labels = np.empty(self.n, dtype=np.int32)
        labels[self.order] = sorted_labels
        return labels
