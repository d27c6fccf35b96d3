"""KMeans in numpy: k-means++ seeding on a sample, Lloyd refinement on all rows.

Why not scikit-learn's KMeans: importing scikit-learn costs seconds of start-up (it
pulls in SciPy and pandas), more than the whole fit at a million rows; the training path
stays on numpy. The algorithm is scikit-learn's: greedy k-means++ (2 + log k local
trials), Lloyd iterations until the centre shift is below `tol` x the mean feature
variance, empty clusters moved to the farthest points. Tests compare it with
scikit-learn's inertia on the same data.

Strategy for large n: run `n_init` seeded k-means++ + Lloyd fits on a uniform sample of
`init_sample` rows, keep the best, and refine it with Lloyd on all rows. The starts on a
sample of `FLOAT32_ROWS` rows or more run in float32 (half the memory traffic: a k
sweep's 171 Lloyd runs on 10k rows take 40% less time); the best of them is then
finished in float64 (on all rows, or on the sample when it is all rows), so every
result keeps float64 accuracy. In one
dimension (the default `n_components: 1`) Lloyd runs on sorted data with prefix sums
(`custseg.core.kmeans1d`): O(k log n) a step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from custseg.core.kmeans1d import LineFit, SortedLine
from custseg.core.rowblocks import cluster_sums, map_blocks, nearest, nearest_one_hot, sq_norms

__all__ = ["KMeansFit", "Prepared", "assign", "fit", "kmeans_plusplus", "lloyd"]

_CHUNK = 1 << 19
FLOAT32_ROWS = 4096  # seeding samples this large run their starts in float32
STAGE_ROWS = 200_000  # see Prepared.refine
_BLOCK = 1 << 16


@dataclass(frozen=True)
class KMeansFit:
    centers: np.ndarray  # (k, p)
    labels: np.ndarray  # (n,) int32
    inertia: float
    n_iter: int
    # per-cluster sums (k, p) and sizes of the rows under `labels`, when Lloyd had them
    sums: np.ndarray | None = None
    counts: np.ndarray | None = None


def assign(x: np.ndarray, centers: np.ndarray, x_sq: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of each row, and the squared distance to it (`x_sq`: the rows'
    squared norms, when the caller has them)."""
    step = _assign_step(x, centers, x_sq, sums=False)
    return step.labels, step.d2


@dataclass(frozen=True)
class _Step:
    """A Lloyd assignment: labels, squared distances, and (when asked) the per-cluster
    sums and sizes of the rows as assigned, for the next centres, and the sum of the
    rows' squared norms."""

    labels: np.ndarray
    d2: np.ndarray
    sums: np.ndarray | None = None
    counts: np.ndarray | None = None
    sq_total: float = 0.0


def _assign_step(x: np.ndarray, centers: np.ndarray, x_sq: np.ndarray | None, *,
                 sums: bool, x_aug: np.ndarray | None = None) -> _Step:
    """Assign the rows to their nearest centres; with `sums`, also sum them per cluster
    while each block is in the cache (the M step then needs no pass of its own). Without
    `x_sq`, each block's squared norms are computed with it (no array of them kept), and
    their total is returned. `x_aug`: [x, 1]^T (p + 1, n), when the caller keeps it (a
    seeding sample): with [-2c, |c|^2] it gives |x - c|^2 - |x|^2 in one product."""
    n, k = len(x), len(centers)
    labels = np.empty(n, dtype=np.int32)
    d2min = np.empty(n, dtype=x.dtype)
    if x.shape[1] == 1:
        order = np.argsort(centers[:, 0], kind="stable")
        c = centers[order, 0]
        mids = (c[1:] + c[:-1]) / 2.0
        for s in range(0, n, _CHUNK):
            xs = x[s : s + _CHUNK, 0]
            pos = np.searchsorted(mids, xs, side="left")
            labels[s : s + _CHUNK] = order[pos]
            diff = xs - c[pos]
            d2min[s : s + _CHUNK] = diff * diff
        if not sums:
            return _Step(labels, d2min)
        total, counts, _ = cluster_sums(x, labels, k)
        return _Step(labels, d2min, total, counts, float(x[:, 0] @ x[:, 0]))
    p = x.shape[1]
    c_sq = (centers * centers).sum(axis=1)
    c_aug = np.hstack([-2.0 * centers, c_sq[:, None]]).astype(x.dtype, copy=False)
    centers = centers.astype(x.dtype, copy=False)
    squares = x_sq is None  # the rows' squared norms are summed only when not given

    def work(s: int, e: int) -> np.ndarray | None:  # in cache-sized blocks
        block = x[s:e]
        if x_aug is not None:
            d2 = c_aug @ x_aug[:, s:e]
        else:  # (k, rows): see rowblocks on the layout
            d2 = centers @ block.T
            d2 *= -2.0
            d2 += c_sq[:, None]
        if sums:
            lab, best, one_hot = nearest_one_hot(d2)
        else:
            lab, best = nearest(d2)
        labels[s:e] = lab
        norms = x_sq[s:e] if x_sq is not None else sq_norms(block)
        best += norms
        np.maximum(best, 0.0, out=d2min[s:e])
        if not sums:
            return None
        part = np.zeros((k, p + 2))
        part[:, :p] = one_hot @ block
        part[:, p] = one_hot.sum(axis=1)
        if squares:
            part[:, p + 1] = one_hot @ norms
        return part

    parts = map_blocks(work, n, _BLOCK)
    if not sums:
        return _Step(labels, d2min)
    total = np.zeros((k, p + 2))
    for part in parts:
        assert part is not None
        total += part
    return _Step(labels, d2min, total[:, :p], np.rint(total[:, p]).astype(np.int64),
                 float(total[:, p + 1].sum()))


def _sq_dist_to(x: np.ndarray, x_sq: np.ndarray, points: np.ndarray,
                x_aug: np.ndarray | None = None) -> np.ndarray:
    """Squared distances (len(points), n) from each of `points` (rows of x) to every row
    (`x_aug`: [x, 1]^T, as in `_assign_step`)."""
    if x_aug is not None:
        d = np.hstack([-2.0 * points, sq_norms(points)[:, None]]) @ x_aug
    else:
        d = points @ x.T
        d *= -2.0
        d += sq_norms(points)[:, None]
    d += x_sq
    return np.asarray(np.maximum(d, 0.0, out=d))


def kmeans_plusplus(x: np.ndarray, k: int, rng: np.random.Generator,
                    x_sq: np.ndarray | None = None, x_aug: np.ndarray | None = None
                    ) -> np.ndarray:
    """Greedy k-means++ seeding (as scikit-learn): each step keeps the best of several
    draws. `x_sq`, `x_aug`: the rows' squared norms and [x, 1]^T, when the caller has them."""
    n = len(x)
    trials = 2 + int(math.log(k))
    if x_sq is None:
        x_sq = sq_norms(x)
    centers = np.empty((k, x.shape[1]))
    centers[0] = x[rng.integers(n)]
    closest = _sq_dist_to(x, x_sq, centers[:1], x_aug)[0]
    pot = closest.sum()
    for c in range(1, k):
        if pot <= 0:
            centers[c:] = x[rng.integers(n, size=k - c)]
            break
        draws = np.searchsorted(np.cumsum(closest), rng.random(trials) * pot)
        draws = np.minimum(draws, n - 1)
        cand_d = _sq_dist_to(x, x_sq, x[draws], x_aug)  # (trials, n)
        np.minimum(cand_d, closest[None, :], out=cand_d)
        pots = cand_d.sum(axis=1)
        best = int(pots.argmin())
        centers[c], closest, pot = x[draws[best]], cand_d[best], pots[best]
    return centers


def lloyd(
    x: np.ndarray, centers: np.ndarray, *, max_iter: int = 300, tol: float = 1e-4,
    x_sq: np.ndarray | None = None, variance: float | None = None,
    x_aug: np.ndarray | None = None,
) -> KMeansFit:
    """Lloyd iterations from `centers` until the squared centre shift is below `tol` x the
    mean feature variance (`x_sq`, `variance`, `x_aug`: the rows' squared norms, that mean
    variance and [x, 1]^T, when the caller keeps them for several fits on the same rows)."""
    centers = centers.copy()
    step = _assign_step(x, centers, x_sq, sums=True, x_aug=x_aug)
    if variance is None:  # from the first assignment's sums: no pass of its own
        assert step.sums is not None
        total = step.sq_total if x_sq is None else float(x_sq.sum())
        variance = _variance(len(x), step.sums.sum(axis=0), total)
    tol_abs = tol * variance
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        assert step.sums is not None and step.counts is not None
        new = centers.copy()
        filled = step.counts > 0
        new[filled] = step.sums[filled] / step.counts[filled, None]
        empty = np.flatnonzero(~filled)
        if len(empty):  # relocate empty clusters to the farthest points
            far = np.argsort(step.d2)[::-1][: len(empty)]
            new[empty] = x[far]
        shift = float(((new - centers) ** 2).sum())
        centers = new
        last = step
        step = _assign_step(x, centers, x_sq, sums=True, x_aug=x_aug)
        if shift <= tol_abs or np.array_equal(step.labels, last.labels):
            break
    return KMeansFit(centers=centers, labels=step.labels, inertia=float(step.d2.sum()),
                     n_iter=n_iter, sums=step.sums, counts=step.counts)


def mean_variance(x: np.ndarray, x_sq: np.ndarray | None = None) -> float:
    """The mean of the columns' variances, from the rows' squared norms (one pass over
    the rows instead of numpy's var, which copies them: 0.7 s at 10M rows x 3)."""
    total = float(x_sq.sum()) if x_sq is not None else float(np.einsum("ij,ij->", x, x))
    return _variance(len(x), x.sum(axis=0), total)


def _variance(n: int, column_sums: np.ndarray, sq_total: float) -> float:
    """The mean of the columns' variances from the column sums and the sum of the rows'
    squared norms."""
    if n < 2:
        return 0.0
    mean = column_sums / n
    return float(max(sq_total / n - float(mean @ mean), 0.0) / len(mean))


class Prepared:
    """A data set ready for several fits (a k sweep): the seeding sample is drawn once,
    and in one dimension the data and the sample are sorted once."""

    def __init__(
        self,
        x: np.ndarray,
        *,
        init_sample: int = 50_000,
        random_state: int = 0,
        sort_all: bool = False,
    ) -> None:
        self.x = np.ascontiguousarray(x, dtype=np.float64)
        self.random_state = random_state
        n = len(self.x)
        rng = np.random.default_rng([random_state, 3])
        if n <= init_sample:
            self.sample = self.x
        else:
            self.sample = self.x[np.sort(rng.choice(n, init_sample, replace=False))]
        self.one_dim = self.x.shape[1] == 1
        # what every seeding and Lloyd run on the sample needs, computed once
        self.sample_sq = sq_norms(self.sample)
        self.sample_variance = mean_variance(self.sample, self.sample_sq)
        self.sample_aug = (None if self.one_dim else
                           np.vstack([self.sample.T, np.ones(len(self.sample))]))
        # the seeding starts' copy of the sample: float32 when large (see module)
        self.starts = self.sample
        self.starts_sq, self.starts_aug = self.sample_sq, self.sample_aug
        if not self.one_dim and len(self.sample) >= FLOAT32_ROWS:
            self.starts = self.sample.astype(np.float32)
            self.starts_sq = sq_norms(self.starts)
            self.starts_aug = np.vstack([self.starts.T, np.ones(len(self.starts),
                                                                 dtype=np.float32)])
        # sorting all rows (O(n log n) once) pays off only over several fits (a k sweep)
        self.sort_all = sort_all
        self._lines: dict[str, SortedLine] = {}

    def line(self, which: str) -> SortedLine:
        if which not in self._lines:
            data = self.x if which == "all" else self.sample
            self._lines[which] = SortedLine(data[:, 0])
        return self._lines[which]

    @property
    def sampled(self) -> bool:
        return self.sample is not self.x

    def refine(self, centers: np.ndarray) -> KMeansFit:
        """Lloyd on all rows from `centers` (fitted on the seeding sample). Above
        `STAGE_ROWS` rows, Lloyd first runs on a seeded sample of that many: at 10M rows
        it leaves one pass over all rows to do instead of two (0.4-0.6 s saved), with
        the same inertia to 1e-5."""
        n = len(self.x)
        if n >= 10 * STAGE_ROWS:
            rng = np.random.default_rng([self.random_state, 5])
            middle = self.x[np.sort(rng.choice(n, STAGE_ROWS, replace=False))]
            centers = lloyd(middle, centers).centers
        return lloyd(self.x, centers)


def _fit_1d(data: Prepared, k: int, n_init: int, rng: np.random.Generator) -> KMeansFit:
    sample_line = data.line("sample")
    best: LineFit | None = None
    for _ in range(n_init):
        run = sample_line.lloyd(kmeans_plusplus(data.sample, k, rng)[:, 0])
        if best is None or run.inertia < best.inertia:
            best = run
    assert best is not None
    if data.sampled and not data.sort_all:
        return lloyd(data.x, best.centers[:, None])
    line = data.line("all")
    final = line.lloyd(best.centers) if data.sampled else best
    return KMeansFit(
        centers=final.centers[:, None],
        labels=line.labels(final.bounds),
        inertia=final.inertia,
        n_iter=final.n_iter,
    )


def fit(
    x: np.ndarray | Prepared,
    k: int,
    *,
    n_init: int = 10,
    random_state: int = 0,
    init_sample: int = 50_000,
    refine: bool = True,
) -> KMeansFit:
    """Best of `n_init` k-means++ + Lloyd runs (on a sample when large), refined on all
    rows. With `refine=False` the fit on the sample is returned as it is (the candidates
    of a sweep; the chosen one is refined afterwards); in one dimension every fit is
    refined, as that costs O(k log n) a step."""
    data = (
        x
        if isinstance(x, Prepared)
        else Prepared(x, init_sample=init_sample, random_state=random_state)
    )
    rng = np.random.default_rng([random_state, 3, k])
    if data.one_dim:
        return _fit_1d(data, k, n_init, rng)
    best: KMeansFit | None = None
    for _ in range(n_init):
        start = kmeans_plusplus(data.starts, k, rng, data.starts_sq, data.starts_aug)
        run = lloyd(data.starts, start, x_sq=data.starts_sq, variance=data.sample_variance,
                    x_aug=data.starts_aug)
        if best is None or run.inertia < best.inertia:
            best = run
    assert best is not None
    if data.sampled and refine:
        return data.refine(best.centers)
    if data.starts is data.sample:
        return best
    # finished in float64 on the sample (all rows when not sampled): labels, inertia
    # and centres as a float64 run would give them from there
    return lloyd(data.sample, best.centers, x_sq=data.sample_sq,
                 variance=data.sample_variance, x_aug=data.sample_aug)
