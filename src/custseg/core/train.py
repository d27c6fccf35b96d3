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

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from custseg.core import kmeans, metrics, quality, rowblocks
from custseg.core.preprocessing import Encoded, FeatureTransform
from custseg.core.segment_sums import SegmentSums, curved_columns, segment_sums
from custseg.errors import TrainError

__all__ = [
    "AUTO_VARIANCE",
    "INIT_SAMPLE",
    "Candidate",
    "Clustering",
    "Projection",
    "TrainResult",
    "check_components",
    "choose_components",
    "fit_kmeans",
    "fit_pca",
    "pca_projection",
    "project",
    "train",
]

AUTO_VARIANCE = 0.9  # n_components: auto keeps the components explaining 90% of variance
INIT_SAMPLE = 10_000  # rows the k-means++ starts run on, before the refinement on all rows
SCORE_SAMPLE = 200_000  # rows a sweep's candidates are scored on (the chosen k: all rows)
PROBE_ROWS = (1_000, 50_000)  # samples that count distinct rows first (_distinct_rows)
Progress = Callable[[str, float], None]


SWEEP_THREADS = os.cpu_count() or 1  # candidates of a one-dimensional sweep fitted at once


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
    # the means and sizes of the clusters under `labels` (metrics.Summary), when the fit
    # had them: scoring the fit then needs no pass over the rows for them
    summary: tuple[np.ndarray, np.ndarray] | None = None


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
    scored_rows: int | None = None  # inertia, CH, DB, sizes on this many rows (None: all)

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
            "scored_rows": self.scored_rows,
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
    totals: SegmentSums | None = None  # the chosen clustering's, for the profiles


# -- PCA -----------------------------------------------------------------------------------


ONE_HOT_LEVELS = 32  # up to this many levels, a column's Gram blocks are block products


def _gram(enc: Encoded, transform: FeatureTransform) -> tuple[np.ndarray, np.ndarray]:
    """X^T X and column sums of the full one-hot feature matrix, without building it."""
    a = enc.num.shape[1]
    d = transform.n_features
    gram = np.zeros((d, d))
    sums = np.zeros(d)
    gram[:a, :a] = enc.num.T @ enc.num
    sums[:a] = np.ones(enc.n) @ enc.num  # numpy sums over the short axis slowly
    offsets = transform.offsets
    sizes = [len(c) for c in transform.categories]
    # few levels: the numeric x category and category x category blocks as products of
    # one-hot row blocks (on both cores); many: bincounts (no rows x levels matrix)
    few = [j for j, kj in enumerate(sizes) if kj <= ONE_HOT_LEVELS]
    if few:
        gram += _one_hot_blocks(enc, offsets, sizes, few, d)
    for j in (j for j in range(len(sizes)) if j not in few):
        _bincount_blocks(enc, gram, offsets, sizes, j, few)
    for off, kj in zip(offsets, sizes, strict=True):  # a level's count: its diagonal entry
        sums[off : off + kj] = np.diag(gram)[off : off + kj]
    w = transform.feature_weights  # a one-hot feature is w_j, not 1, when set
    return gram * np.outer(w, w), sums * w


def _one_hot_blocks(enc: Encoded, offsets: list[int], sizes: list[int], few: list[int],
                    d: int) -> np.ndarray:
    """The Gram entries of the few-level categorical columns (with the numeric columns
    and among themselves), unknown codes (-1) contributing nothing."""
    a = enc.num.shape[1]
    cols = np.concatenate([np.arange(offsets[j], offsets[j] + sizes[j]) for j in few])
    levels = [np.arange(sizes[j], dtype=enc.codes.dtype) for j in few]

    def work(s: int, e: int) -> np.ndarray:
        one_hot = np.hstack([np.asarray(enc.codes[s:e, j][:, None] == lv, dtype=np.float64)
                             for j, lv in zip(few, levels, strict=True)])
        part = np.zeros((a + len(cols), len(cols)))
        part[:a] = enc.num[s:e].T @ one_hot
        part[a:] = one_hot.T @ one_hot
        return part

    total = np.zeros((a + len(cols), len(cols)))
    for part in rowblocks.map_blocks(work, enc.n):
        total += part
    out = np.zeros((d, d))
    out[:a, cols] = total[:a]
    out[cols, :a] = total[:a].T
    out[np.ix_(cols, cols)] = total[a:]
    return out


def _bincount_blocks(enc: Encoded, gram: np.ndarray, offsets: list[int], sizes: list[int],
                     j: int, few: list[int]) -> None:
    """The Gram entries of a many-level categorical column, by bincounts: with the
    numeric columns, itself, and the columns before it that are not in `few`."""
    a = enc.num.shape[1]
    off, kj = offsets[j], sizes[j]
    codes = enc.codes[:, j]
    known = codes >= 0
    all_known = bool(known.all())  # always so on training data: no copies then
    cj = codes if all_known else codes[known]
    counts = np.bincount(cj, minlength=kj).astype(np.float64)
    gram[off : off + kj, off : off + kj] = np.diag(counts)
    for i in range(a):
        weights = enc.num[:, i] if all_known else enc.num[known, i]
        block = np.bincount(cj, weights=weights, minlength=kj)
        gram[i, off : off + kj] = block
        gram[off : off + kj, i] = block
    for j2 in range(len(sizes)):
        if j2 == j or (j2 > j and j2 not in few):
            continue  # itself, or a later many-level column (which pairs with this one)
        off2, k2 = offsets[j2], sizes[j2]
        codes2 = enc.codes[:, j2]
        both = known & (codes2 >= 0)
        table = np.bincount(codes[both] * k2 + codes2[both], minlength=kj * k2).reshape(kj, k2)
        gram[off : off + kj, off2 : off2 + k2] = table
        gram[off2 : off2 + k2, off : off + kj] = table.T


def choose_components(n_components: int | float | str, ratio: np.ndarray, d: int) -> int:
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


def check_components(n_components: int | float | str, d: int) -> None:
    """Raise the clear error when an integer `n_components` exceeds the `d` features."""
    if isinstance(n_components, int) and n_components > d:
        choose_components(n_components, np.ones(d) / d, d)


def fit_pca(
    enc: Encoded, transform: FeatureTransform, n_components: int | float | str
) -> Projection:
    """PCA of the feature matrix, from its d x d covariance."""
    n, d = enc.n, transform.n_features
    check_components(n_components, d)
    gram, sums = _gram(enc, transform)
    mean = sums / n
    cov = (gram - n * np.outer(mean, mean)) / max(n - 1, 1)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    return pca_projection(np.clip(values[order], 0.0, None), vectors[:, order].T, mean, n,
                      n_components)


def pca_projection(values: np.ndarray, vectors: np.ndarray, mean: np.ndarray, n: int,
               n_components: int | float | str) -> Projection:
    """The fitted PCA from all d components (`vectors`, rows, by decreasing variance
    `values`, clipped at 0), with scikit-learn's sign convention (the largest entry of
    each component positive) and `n_components` chosen: every engine ends here."""
    d = len(values)
    signs = np.sign(vectors[np.arange(d), np.argmax(np.abs(vectors), axis=1)])
    vectors = vectors * np.where(signs == 0, 1.0, signs)[:, None]
    total = float(values.sum())
    ratio = values / total if total > 0 else np.zeros(d)
    p = choose_components(n_components, ratio, d)
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
    w_num = np.ascontiguousarray(w[:, :a].T)

    def work(s: int, e: int) -> None:
        block = z[s:e]
        np.matmul(enc.num[s:e], w_num, out=block)
        block += bias
        for j, table in enumerate(tables):
            block += table[enc.codes[s:e, j]]

    rowblocks.map_blocks(work, enc.n)
    return z


# -- KMeans --------------------------------------------------------------------------------


def _distinct_rows(z: np.ndarray, limit: int) -> int:
    """Number of distinct rows, counting only up to `limit`: on growing seeded samples
    first (a thousand rows nearly always show enough), on all rows only when they do not."""
    rng = np.random.default_rng(0)
    for size in PROBE_ROWS:
        if len(z) <= size:
            break
        found = len(np.unique(z[rng.choice(len(z), size, replace=False)], axis=0))
        if found >= limit:
            return found
    return len(np.unique(z, axis=0))


def _check_distinct(z: np.ndarray, k: int, distinct: int | None = None) -> None:
    """Refuse a k above the distinct rows (`distinct`: their count, when known)."""
    distinct = _distinct_rows(z, k) if distinct is None else distinct
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
    refine: bool = True,
) -> Clustering:
    """KMeans with k clusters (see `custseg.core.kmeans`); clusters numbered by decreasing size.

    `prepared` shares the seeding sample and sorted data between the fits of a sweep;
    `refine=False` keeps the sample's centres (see `kmeans.fit`).
    """
    if prepared is None:
        _check_distinct(z, k)
        prepared = kmeans.Prepared(z, init_sample=init_sample, random_state=random_state)
    result = kmeans.fit(prepared, k, n_init=n_init, random_state=random_state, refine=refine)
    return _by_size(result, k)


def _by_size(result: kmeans.KMeansFit, k: int) -> Clustering:
    """A fit as a Clustering, its clusters numbered by decreasing size."""
    known = result.counts is not None and result.sums is not None
    sizes = result.counts if known else np.bincount(result.labels, minlength=k)
    assert sizes is not None
    order = np.argsort(-sizes, kind="stable")
    relabel = np.empty(k, dtype=np.int32)
    relabel[order] = np.arange(k, dtype=np.int32)
    summary = None
    if known:
        assert result.sums is not None
        counts = sizes[order]
        summary = (result.sums[order] / np.maximum(counts, 1)[:, None], counts)
    return Clustering(
        k=k,
        centers=result.centers[order].copy(),
        labels=relabel[result.labels],
        inertia=result.inertia,
        n_iter=result.n_iter,
        summary=summary,
    )


def _feasible(z: np.ndarray, k_candidates: list[int]) -> list[int]:
    """The candidate ks that the data's distinct rows allow (a sweep is trimmed; a fixed k
    or a sweep with no feasible k is an error)."""
    if len(z) < min(k_candidates):
        raise TrainError(f"{len(z)} rows cannot form n_clusters={min(k_candidates)} clusters")
    distinct = _distinct_rows(z, max(k_candidates))
    feasible = [k for k in k_candidates if k <= distinct]
    if not feasible:  # then `distinct` is the exact count, below every candidate
        _check_distinct(z, min(k_candidates), distinct)
    return feasible


def _silhouette(values: np.ndarray, n: int) -> metrics.Silhouette:
    if len(values) == n:
        return metrics.Silhouette(float(values.mean()), True, n, n, None)
    return metrics.sampled_silhouette(values, n)


def _score(zs: np.ndarray, labels: np.ndarray, k: int, inertia: float,
           silhouette: metrics.Silhouette, stability: float | None, n: int,
           summary: metrics.Summary | None = None) -> Candidate:
    """A candidate's row from its labels on the rows `zs` (all n rows, or a sample);
    `summary`: the clusters' means and sizes on those rows, when known."""
    summary = summary or metrics.cluster_means(zs, labels, k)
    ch, db = metrics.calinski_and_davies(zs, labels, k, summary)
    return Candidate(
        k=k, inertia=inertia, silhouette=silhouette, calinski_harabasz=ch, davies_bouldin=db,
        sizes=[int(v) for v in summary[1]], stability=stability,
        scored_rows=None if len(zs) == n else len(zs))


def _scored_in_full(z: np.ndarray, silhouette_x: np.ndarray, index: np.ndarray | None,
                    clustering: Clustering, stability: float | None,
                    known: Candidate | None = None,
                    known_labels: np.ndarray | None = None) -> Candidate:
    """The row of a clustering fitted on all rows: every figure exact, but a silhouette
    sampled above the silhouette sample size. `known`: the same k's row from the sweep,
    whose silhouette is kept when its labels on the silhouette rows (`known_labels`)
    are the refined fit's (the refinement usually moves none of those rows)."""
    labels = clustering.labels
    at = labels if index is None else labels[index]
    if known is not None and known_labels is not None and np.array_equal(at, known_labels):
        silhouette = known.silhouette
    else:
        (values,) = metrics.silhouettes(silhouette_x, [(at, clustering.k)],
                                        sampled=index is not None)
        silhouette = _silhouette(values, len(z))
    return _score(z, labels, clustering.k, clustering.inertia, silhouette, stability, len(z),
                  clustering.summary)


def _sweep(z: np.ndarray, prepared: kmeans.Prepared, ks: list[int], silhouette_x: np.ndarray,
           index: np.ndarray | None, random_state: int, n_init: int,
           timings: dict[str, float], progress: Progress
           ) -> tuple[list[Candidate], list[np.ndarray], list[np.ndarray]]:
    """Every candidate k of a sweep: its centres (fitted on the seeding sample; in one
    dimension on all rows, which is as cheap), scored on a seeded sample of at most
    `SCORE_SAMPLE` rows, its stability, and its silhouette (all candidates in one pass).
    Only the chosen one is then fitted and scored on all rows (see `train`)."""
    import time

    n = len(z)
    rows = (None if n <= SCORE_SAMPLE else np.sort(
        np.random.default_rng([random_state, 13]).choice(n, SCORE_SAMPLE, replace=False)))
    zs = z if rows is None else z[rows]

    def candidate(k: int) -> tuple[Candidate, np.ndarray, np.ndarray]:
        fitted = kmeans.fit(prepared, k, n_init=n_init, random_state=random_state,
                            refine=prepared.one_dim)
        labels, d2 = kmeans.assign(zs, fitted.centers)
        order = np.argsort(-np.bincount(labels, minlength=k), kind="stable")
        c = fitted.centers[order]  # clusters numbered by decreasing size, as fit_kmeans does
        labels = np.argsort(order).astype(np.int32)[labels]
        stability = quality.stability(z, c, k, random_state=random_state,
                                      n_init=min(n_init, 3))
        row = _score(zs, labels, k, float(d2.sum()) * n / len(zs),
                     metrics.Silhouette(0.0, True, 0, 0, None), stability, n)
        return row, c, kmeans.assign(silhouette_x, c)[0]

    t = time.perf_counter()
    if prepared.one_dim:  # sorted once here, not by two threads at once
        prepared.line("sample")
        if prepared.sort_all:
            prepared.line("all")
    partial, centres, sample_labels = [], [], []
    progress(f"KMeans k={ks[0]}..{ks[-1]}", 0.0)
    # the candidates are independent (each fit is seeded by its k alone): in one dimension,
    # where each fit works on all rows, one per core; otherwise one after another, as
    # their numpy calls on the 10k-row sample are too short to share the GIL (two threads
    # took 0.83 s for the 1M-row sweep that one thread does in 0.65 s)
    threads = min(len(ks), SWEEP_THREADS) if prepared.one_dim else 1
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for i, (row, c, at) in enumerate(pool.map(candidate, ks)):
            partial.append(row)
            centres.append(c)
            sample_labels.append(at)
            progress(f"KMeans k={ks[0]}..{ks[-1]}", (i + 1) / len(ks))
    timings["kmeans_sweep"] = time.perf_counter() - t
    t = time.perf_counter()  # the silhouettes of all candidates in one pass
    values = metrics.silhouettes(silhouette_x, list(zip(sample_labels, ks, strict=True)),
                                 sampled=index is not None)
    timings["silhouettes"] = time.perf_counter() - t
    return [replace(c, silhouette=_silhouette(v, n))
            for c, v in zip(partial, values, strict=True)], centres, sample_labels


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
    asked = (min(k_candidates), max(k_candidates))
    k_candidates = _feasible(z, k_candidates)
    sweep = len(k_candidates) > 1
    prepared = kmeans.Prepared(z, init_sample=INIT_SAMPLE, random_state=random_state,
                               sort_all=sweep)
    silhouette_x = z if index is None else z[index]

    def choose(candidates: list[Candidate]) -> quality.Choice:
        return quality.choose_k(
            [c.k for c in candidates], [c.score(metric) for c in candidates],
            [c.min_share for c in candidates], [c.stability for c in candidates],
            metric=metric, min_share=min_share, min_stability=min_stability,
            tolerance=tolerance, shown=[abs(c.score(metric)) for c in candidates],
            swept=asked)

    if not sweep:  # one k: fitted and scored on all rows
        k = k_candidates[0]
        t = time.perf_counter()
        clustering = fit_kmeans(z, k, random_state=random_state, n_init=n_init,
                                prepared=prepared)
        timings[f"kmeans_k{k}"] = time.perf_counter() - t
        t = time.perf_counter()
        candidates = [_scored_in_full(z, silhouette_x, index, clustering, quality.stability(
            z, clustering.centers, k, random_state=random_state, n_init=min(n_init, 3)))]
        timings[f"metrics_k{k}"] = time.perf_counter() - t
        choice = choose(candidates)
    else:
        candidates, centres, sample_labels = _sweep(
            z, prepared, k_candidates, silhouette_x, index, random_state, n_init, timings,
            progress)
        choice = choose(candidates)
        # the chosen k fitted on all rows (its sample centres refined) and scored again
        t = time.perf_counter()
        k = k_candidates[choice.index]
        if prepared.one_dim:
            clustering = fit_kmeans(z, k, random_state=random_state, n_init=n_init,
                                    prepared=prepared)
        else:
            clustering = _by_size(prepared.refine(centres[choice.index]), k)
        known = candidates[choice.index]
        candidates[choice.index] = _scored_in_full(
            z, silhouette_x, index, clustering, known.stability, known,
            sample_labels[choice.index])
        again = choose(candidates)
        if again.index == choice.index:  # the sentence quotes the figures of the full fit
            choice = again
        timings[f"refine_k{k}"] = time.perf_counter() - t
    candidates = [replace(c, eligible=ok, note=note) for c, ok, note in
                  zip(candidates, choice.eligible, choice.notes, strict=True)]
    chosen = candidates[choice.index]
    t = time.perf_counter()
    # the feature space has more dimensions than PCA's: its silhouette is sampled sooner
    fs_index = metrics.silhouette_sample_index(
        len(z), min(silhouette_sample_size, quality.FEATURE_SILHOUETTE_SAMPLE), random_state)
    # the segments' totals serve the feature-space metrics and, later, the profiles
    totals = segment_sums(enc, transform, clustering.labels, chosen.k,
                          original=curved_columns(enc, transform))
    feature_space = quality.feature_space_metrics(enc, transform, clustering.labels, chosen.k,
                                                  sample_index=fs_index, totals=totals)
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
        totals=totals,
    )
