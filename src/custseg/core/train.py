"""Fit, tune and score: PCA then KMeans (fixed k or a sweep), with quality metrics.

Pure computation: takes encoded features (see preprocessing) and returns values.

* PCA is fitted from the feature covariance, accumulated block-wise without building the
  one-hot matrix, and solved as a small d x d eigenproblem (d = number of features).
  Components have scikit-learn's sign convention (largest entry of each positive).
* KMeans (`custseg.core.kmeans`): with more than `INIT_SAMPLE` rows, `n_init` k-means++
  starts run on a seeded sample, and the best is refined by Lloyd iterations on all rows.
  Smaller data is fitted directly.
* Clusters are numbered by decreasing size, so cluster 0 is the largest segment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from custseg.core import kmeans, metrics, quality
from custseg.core.preprocessing import Encoded, FeatureTransform
from custseg.errors import TrainError

__all__ = [
    "AUTO_VARIANCE",
    "INIT_SAMPLE",
    "Candidate",
    "Clustering",
    "Projection",
    "TrainResult",
    "fit_kmeans",
    "fit_pca",
    "project",
    "train",
]

AUTO_VARIANCE = 0.9  # n_components: auto keeps the components explaining 90% of variance
INIT_SAMPLE = 50_000
_CHUNK = 1 << 20
Progress = Callable[[str, float], None]


def _no_progress(_message: str, _fraction: float) -> None:
    return None


@dataclass(frozen=True)
class Projection:
    """A fitted PCA: z = (x - mean) @ components.T."""

    mean: np.ndarray  # (d,)
    components: np.ndarray  # (p, d)
    explained_variance: np.ndarray  # (p,), ddof=1 as scikit-learn
    explained_variance_ratio: np.ndarray  # (p,)
    singular_values: np.ndarray  # (p,)
    noise_variance: float
    n_samples: int

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])


@dataclass(frozen=True)
class Clustering:
    k: int
    centers: np.ndarray  # (k, p)
    labels: np.ndarray  # (n,) int32
    inertia: float
    n_iter: int


@dataclass(frozen=True)
class Candidate:
    """One row of the candidate table of a sweep (or the single fit)."""

    k: int
    inertia: float
    silhouette: metrics.Silhouette
    calinski_harabasz: float
    davies_bouldin: float
    sizes: list[int]
    stability: float | None = None
    eligible: bool = True
    note: str = ""

    @property
    def min_share(self) -> float:
        return min(self.sizes) / max(sum(self.sizes), 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "inertia": self.inertia,
            "silhouette": self.silhouette.value,
            "silhouette_ci95": list(self.silhouette.ci95) if self.silhouette.ci95 else None,
            "calinski_harabasz": self.calinski_harabasz,
            "davies_bouldin": self.davies_bouldin,
            "sizes": self.sizes,
            "min_share": self.min_share,
            "stability": self.stability,
            "eligible": self.eligible,
            "note": self.note,
        }

    def score(self, metric: str) -> float:
        value = {
            "silhouette": self.silhouette.value,
            "calinski_harabasz": self.calinski_harabasz,
            "davies_bouldin": -self.davies_bouldin,
        }[metric]
        return float(value)


@dataclass(frozen=True)
class TrainResult:
    projection: Projection
    clustering: Clustering
    chosen: Candidate
    candidates: list[Candidate]
    metric: str
    timings: dict[str, float] = field(default_factory=dict)
    sentence: str = ""
    warnings: list[str] = field(default_factory=list)
    feature_space: dict[str, Any] = field(default_factory=dict)


# -- PCA -----------------------------------------------------------------------------------


def _gram(enc: Encoded, transform: FeatureTransform) -> tuple[np.ndarray, np.ndarray]:
    """X^T X and column sums of the full one-hot feature matrix, without building it."""
    a = enc.num.shape[1]
    d = transform.n_features
    gram = np.zeros((d, d))
    sums = np.zeros(d)
    gram[:a, :a] = enc.num.T @ enc.num
    sums[:a] = enc.num.sum(axis=0)
    offsets = transform.offsets
    sizes = [len(c) for c in transform.categories]
    for j, (off, kj) in enumerate(zip(offsets, sizes, strict=True)):
        codes = enc.codes[:, j]
        known = codes >= 0
        all_known = bool(known.all())  # always so on training data: no copies then
        cj = codes if all_known else codes[known]
        counts = np.bincount(cj, minlength=kj).astype(np.float64)
        sums[off : off + kj] = counts
        gram[off : off + kj, off : off + kj] = np.diag(counts)
        for i in range(a):
            weights = enc.num[:, i] if all_known else enc.num[known, i]
            block = np.bincount(cj, weights=weights, minlength=kj)
            gram[i, off : off + kj] = block
            gram[off : off + kj, i] = block
        for j2 in range(j):
            off2, k2 = offsets[j2], sizes[j2]
            codes2 = enc.codes[:, j2]
            both = known & (codes2 >= 0)
            table = np.bincount(codes[both] * k2 + codes2[both], minlength=kj * k2).reshape(kj, k2)
            gram[off : off + kj, off2 : off2 + k2] = table
            gram[off2 : off2 + k2, off : off + kj] = table.T
    w = transform.feature_weights  # a one-hot feature is w_j, not 1, when set
    return gram * np.outer(w, w), sums * w


def _choose_components(n_components: int | float | str, ratio: np.ndarray, d: int) -> int:
    if isinstance(n_components, str):  # "auto"
        n_components = AUTO_VARIANCE
    if isinstance(n_components, float):
        cum = np.cumsum(ratio)
        return min(int(np.searchsorted(cum, n_components, side="right")) + 1, d)
    if n_components > d:
        raise TrainError(
            f"n_components={n_components} exceeds the number of features ({d}); "
            f"use at most {d}, a variance fraction such as 0.9, or 'auto'"
        )
    return int(n_components)


def fit_pca(
    enc: Encoded, transform: FeatureTransform, n_components: int | float | str
) -> Projection:
    """PCA of the feature matrix, from its d x d covariance."""
    n, d = enc.n, transform.n_features
    if isinstance(n_components, int) and n_components > d:
        _choose_components(n_components, np.ones(d) / d, d)  # raises the clear error
    gram, sums = _gram(enc, transform)
    mean = sums / n
    cov = (gram - n * np.outer(mean, mean)) / max(n - 1, 1)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    values = np.clip(values[order], 0.0, None)
    vectors = vectors[:, order].T  # rows are components
    signs = np.sign(vectors[np.arange(d), np.argmax(np.abs(vectors), axis=1)])
    vectors *= np.where(signs == 0, 1.0, signs)[:, None]
    total = float(values.sum())
    ratio = values / total if total > 0 else np.zeros(d)
    p = _choose_components(n_components, ratio, d)
    rest = values[p:]
    return Projection(
        mean=mean,
        components=vectors[:p].copy(),
        explained_variance=values[:p].copy(),
        explained_variance_ratio=ratio[:p].copy(),
        singular_values=np.sqrt(values[:p] * max(n - 1, 1)),
        noise_variance=float(rest.mean()) if len(rest) else 0.0,
        n_samples=n,
    )


def category_tables(transform: FeatureTransform, projection: Projection) -> list[np.ndarray]:
    """For each categorical column, its categories' contribution to z, plus a zero row
    at the end (index -1) for unknown categories."""
    w = projection.components
    return [
        np.vstack([weight * w[:, off : off + len(cats)].T, np.zeros((1, w.shape[0]))])
        for off, cats, weight in zip(transform.offsets, transform.categories,
                                     transform.weights.tolist(), strict=True)
    ]


def project(enc: Encoded, transform: FeatureTransform, projection: Projection,
            tables: list[np.ndarray] | None = None) -> np.ndarray:
    """z = (x - mean) @ components.T, with the one-hot block folded in as table lookups
    (`tables`: `category_tables`, precomputed by callers that project many times)."""
    w = projection.components
    a = enc.num.shape[1]
    bias = -projection.mean @ w.T
    if tables is None:
        tables = category_tables(transform, projection)
    z = np.empty((enc.n, w.shape[0]))
    for s in range(0, enc.n, _CHUNK):
        e = min(s + _CHUNK, enc.n)
        block = enc.num[s:e] @ w[:, :a].T + bias
        for j, table in enumerate(tables):
            block += table[enc.codes[s:e, j]]
        z[s:e] = block
    return z


# -- KMeans --------------------------------------------------------------------------------


def _distinct_rows(z: np.ndarray, limit: int) -> int:
    """Number of distinct rows, counting only up to `limit` (cheap on a sample first)."""
    rng = np.random.default_rng(0)
    probe = z if len(z) <= 50_000 else z[rng.choice(len(z), 50_000, replace=False)]
    found = len(np.unique(probe, axis=0))
    if found >= limit or len(probe) == len(z):
        return found
    return len(np.unique(z, axis=0))


def _check_distinct(z: np.ndarray, k: int) -> None:
    distinct = _distinct_rows(z, k)
    if distinct < k:
        raise TrainError(
            f"only {distinct} distinct rows after feature engineering and PCA, fewer than "
            f"n_clusters={k}; lower n_clusters or add features/rows"
        )


def fit_kmeans(
    z: np.ndarray,
    k: int,
    *,
    random_state: int = 0,
    n_init: int = 10,
    init_sample: int = INIT_SAMPLE,
    prepared: kmeans.Prepared | None = None,
) -> Clustering:
    """KMeans with k clusters (see `custseg.core.kmeans`); clusters numbered by decreasing size.

    `prepared` shares the seeding sample and sorted data between the fits of a sweep.
    """
    if prepared is None:
        _check_distinct(z, k)
        prepared = kmeans.Prepared(z, init_sample=init_sample, random_state=random_state)
    result = kmeans.fit(prepared, k, n_init=n_init, random_state=random_state)
    sizes = np.bincount(result.labels, minlength=k)
    order = np.argsort(-sizes, kind="stable")
    relabel = np.empty(k, dtype=np.int32)
    relabel[order] = np.arange(k, dtype=np.int32)
    return Clustering(
        k=k,
        centers=result.centers[order].copy(),
        labels=relabel[result.labels],
        inertia=result.inertia,
        n_iter=result.n_iter,
    )


def _feasible(z: np.ndarray, k_candidates: list[int]) -> list[int]:
    """The candidate ks that the data's distinct rows allow (a sweep is trimmed; a fixed k
    or a sweep with no feasible k is an error)."""
    if len(z) < min(k_candidates):
        raise TrainError(f"{len(z)} rows cannot form n_clusters={min(k_candidates)} clusters")
    distinct = _distinct_rows(z, max(k_candidates))
    feasible = [k for k in k_candidates if k <= distinct]
    if not feasible or len(k_candidates) == 1:
        _check_distinct(z, k_candidates[0] if len(k_candidates) == 1 else min(k_candidates))
    return feasible


def _candidate(
    z: np.ndarray, c: Clustering, sample_size: int, random_state: int, index: np.ndarray | None
) -> Candidate:
    sil = metrics.silhouette(z, c.labels, c.k, sample_size, random_state, index=index)
    summary = metrics.cluster_means(z, c.labels, c.k)
    return Candidate(
        k=c.k,
        inertia=c.inertia,
        silhouette=sil,
        calinski_harabasz=metrics.calinski_harabasz(z, c.labels, c.k, summary),
        davies_bouldin=metrics.davies_bouldin(z, c.labels, c.k, summary),
        sizes=[int(s) for s in summary[1]],
    )


def train(
    enc: Encoded,
    transform: FeatureTransform,
    *,
    k_candidates: list[int],
    n_components: int | float | str,
    metric: str = "silhouette",
    random_state: int = 0,
    n_init: int = 10,
    silhouette_sample_size: int = 10_000,
    min_share: float = 0.0,
    min_stability: float = 0.0,
    tolerance: float = 0.0,
    progress: Progress = _no_progress,
) -> TrainResult:
    """PCA, then KMeans for each k in `k_candidates`, choosing k as `quality.choose_k`
    does (by `metric`, among candidates meeting `min_share` and `min_stability`)."""
    import time

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    progress("PCA", 0.0)
    projection = fit_pca(enc, transform, n_components)
    z = project(enc, transform, projection)
    timings["pca"] = time.perf_counter() - t0
    index = metrics.silhouette_sample_index(len(z), silhouette_sample_size, random_state)
    k_candidates = _feasible(z, k_candidates)
    prepared = kmeans.Prepared(
        z, init_sample=INIT_SAMPLE, random_state=random_state, sort_all=len(k_candidates) > 1
    )
    candidates: list[Candidate] = []
    kept: dict[int, Clustering] = {}  # the clusterings that can still be chosen
    for i, k in enumerate(k_candidates):
        progress(f"KMeans k={k}", i / len(k_candidates))
        t = time.perf_counter()
        clustering = fit_kmeans(z, k, random_state=random_state, n_init=n_init, prepared=prepared)
        timings[f"kmeans_k{k}"] = time.perf_counter() - t
        t = time.perf_counter()
        cand = _candidate(z, clustering, silhouette_sample_size, random_state, index)
        stable = quality.stability(z, clustering.labels, k, random_state=random_state,
                                   n_init=min(n_init, 3))
        cand = replace(cand, stability=stable)
        timings[f"metrics_k{k}"] = time.perf_counter() - t
        candidates.append(cand)
        kept[k] = clustering
        kept = _prune(kept, candidates, metric, min_share, min_stability, tolerance)
    choice = quality.choose_k(
        [c.k for c in candidates], [c.score(metric) for c in candidates],
        [c.min_share for c in candidates], [c.stability or 0.0 for c in candidates],
        metric=metric, min_share=min_share, min_stability=min_stability, tolerance=tolerance,
        shown=[abs(c.score(metric)) for c in candidates])
    candidates = [replace(c, eligible=ok, note=note) for c, ok, note in
                  zip(candidates, choice.eligible, choice.notes, strict=True)]
    chosen = candidates[choice.index]
    clustering = kept[chosen.k]
    t = time.perf_counter()
    # the feature space has more dimensions than PCA's: its silhouette is sampled sooner
    fs_index = metrics.silhouette_sample_index(
        len(z), min(silhouette_sample_size, quality.FEATURE_SILHOUETTE_SAMPLE), random_state)
    feature_space = quality.feature_space_metrics(enc, transform, clustering.labels, chosen.k,
                                                  sample_index=fs_index)
    timings["metrics_feature_space"] = time.perf_counter() - t
    return TrainResult(
        projection=projection,
        clustering=clustering,
        chosen=chosen,
        candidates=candidates,
        metric=metric,
        timings=timings,
        sentence=choice.sentence,
        warnings=choice.warnings,
        feature_space=feature_space,
    )


def _prune(kept: dict[int, Clustering], candidates: list[Candidate], metric: str,
           min_share: float, min_stability: float, tolerance: float) -> dict[int, Clustering]:
    """Drop the clusterings that can no longer be chosen (labels are n ints each): keep
    the best-scoring one (the fallback) and the eligible ones within the tolerance of
    the best eligible score so far."""
    score = {c.k: c.score(metric) for c in candidates}
    ok = [c.k for c in candidates
          if c.min_share >= min_share and (c.stability or 0.0) >= min_stability]
    keep = {max(score, key=lambda k: score[k])}
    if ok:
        best = max(score[k] for k in ok)
        keep |= {k for k in ok if score[k] >= best - tolerance * abs(best)}
    return {k: c for k, c in kept.items() if k in keep}
