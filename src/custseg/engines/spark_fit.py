"""PCA, KMeans and the choice of k on Spark ML, scored as the local engine scores.

* PCA: Spark ML's `PCA` on the centred, weighted one-hot feature matrix (assembled from
  Spark expressions, never on the driver), all d components, then the local engine's
  sign convention (largest entry of each component positive) and choice of
  `n_components`. z = (x - mean) @ components.T is computed by Spark expressions and
  cached: KMeans and the metrics read it many times.
* KMeans: Spark ML's `KMeans` with k-means|| initialisation, `tuning.n_init` seeds per
  k (the lowest cost kept), clusters numbered by decreasing size.
* Per candidate k, over all rows: inertia (the cost), sizes, Calinski-Harabasz and
  Davies-Bouldin exact from cluster aggregates (`metrics.scores_from_sums`). On the
  driver's sample, with the local estimators: the silhouette (exact when the sample is
  every row and at most `tuning.silhouette_sample_size`; else sampled, with its 95% CI
  over all rows) and the stability. The choice is `quality.choose_k`, as local.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import reduce
from typing import Any

import numpy as np

from custseg.core import kmeans, metrics, quality
from custseg.core.preprocessing import Encoded, FeatureTransform
from custseg.core.train import Candidate, Projection, check_components, pca_projection, project
from custseg.errors import TrainError

__all__ = ["MAX_ITER", "TOL", "SparkFit", "fit_pca_spark", "fit_sweep_spark", "projected"]

MAX_ITER = 300  # as the local engine's Lloyd iterations
TOL = 1e-6  # Spark's tolerance: how far (Euclidean, in z) a centre may still move
Progress = Callable[[str, float], None]


def _variances(transform: FeatureTransform, counts: list[np.ndarray], n: int) -> np.ndarray:
    """Each feature's sample variance (ddof=1), exact from what the transform knows:
    a standardised column's is n/(n-1); a one-hot feature's w^2 p (1-p) n/(n-1)."""
    parts = [np.ones(len(transform.numeric))]
    for freq, w in zip(counts, transform.weights.tolist(), strict=True):
        p = freq / n
        parts.append(w * w * p * (1 - p))
    return np.concatenate(parts) * n / max(n - 1, 1)


def feature_means(transform: FeatureTransform, counts: list[np.ndarray], n: int) -> np.ndarray:
    """The features' means: 0 for a standardised column, w * share for a one-hot one."""
    parts = [np.zeros(len(transform.numeric))]
    parts += [w * freq / n for freq, w in zip(counts, transform.weights.tolist(), strict=True)]
    return np.concatenate(parts)


def fit_pca_spark(features: Any, transform: FeatureTransform, counts: list[np.ndarray],
                  n: int, n_components: int | float | str) -> Projection:
    """PCA of the centred feature columns `f0..f{d-1}` of the DataFrame `features`."""
    from pyspark.ml.feature import PCA, VectorAssembler

    d = transform.n_features
    check_components(n_components, d)
    assembled = VectorAssembler(inputCols=[f"f{j}" for j in range(d)], outputCol="x"
                                ).transform(features)
    model = PCA(k=d, inputCol="x", outputCol="pcs").fit(assembled)
    vectors = np.asarray(model.pc.toArray()).T.copy()  # rows are components
    ratio = np.asarray(model.explainedVariance.toArray())
    values = np.clip(ratio * float(_variances(transform, counts, n).sum()), 0.0, None)
    return pca_projection(values, vectors, feature_means(transform, counts, n), n, n_components)


def projected(features: Any, projection: Projection) -> Any:
    """z0..z{p-1} and their vector `z`, from the centred feature columns."""
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    w = projection.components
    cols = [reduce(lambda a, b: a + b,
                   [F.col(f"f{j}") * F.lit(float(w[i, j])) for j in range(w.shape[1])]
                   ).alias(f"z{i}") for i in range(w.shape[0])]
    z = features.select(cols)
    return VectorAssembler(inputCols=[f"z{i}" for i in range(w.shape[0])], outputCol="z"
                           ).transform(z)


@dataclass
class SparkFit:
    """The sweep's outcome: every candidate's row, the chosen one's centres, its labels
    on the driver's sample, and Spark's own silhouette of it (squared Euclidean)."""

    candidates: list[Candidate]
    centres: list[np.ndarray]
    choice: quality.Choice
    sample_labels: np.ndarray
    spark_silhouette: float
    timings: dict[str, float] = field(default_factory=dict)


def _kmeans(z: Any, k: int, random_state: int, n_init: int, keep: list[Any]
            ) -> tuple[Any, np.ndarray]:
    """The best of `n_init` Spark KMeans fits (k-means|| seeds), and each Spark cluster
    index's id when clusters are numbered by decreasing size. Every model fitted goes to
    `keep`, which the caller empties when no lock is held (see `spark_connect`)."""
    from pyspark.ml.clustering import KMeans

    best, cost = None, np.inf
    for s in range(n_init):
        model = KMeans(k=k, initMode="k-means||", seed=random_state + 1000 * s,
                       maxIter=MAX_ITER, tol=TOL, featuresCol="z").fit(z)
        keep.append(model)
        if model.summary.trainingCost < cost:
            best, cost = model, float(model.summary.trainingCost)
    assert best is not None
    sizes = np.asarray(best.summary.clusterSizes)
    if len(sizes) != k:
        raise TrainError(f"Spark's KMeans found {len(sizes)} clusters, not n_clusters={k}: "
                         "the data has too few distinct rows; lower n_clusters")
    order = np.argsort(-sizes, kind="stable")
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    return best, rank


def _labelled(z: Any, model: Any, rank: np.ndarray) -> Any:
    from pyspark.sql import functions as F

    ids = F.array(*[F.lit(int(r)) for r in rank])
    return model.transform(z).withColumn("label", F.element_at(ids, F.col("prediction") + 1))


def _cluster_scores(labelled: Any, k: int, p: int) -> tuple[list[int], float, float]:
    """Sizes, Calinski-Harabasz and Davies-Bouldin over all rows, in two passes."""
    from pyspark.sql import functions as F

    rows = labelled.groupBy("label").agg(
        F.count(F.lit(1)).alias("n"), *[F.sum(f"z{i}").alias(f"s{i}") for i in range(p)]
    ).collect()
    sizes = np.zeros(k)
    sums = np.zeros((k, p))
    for r in rows:
        sizes[int(r["label"])] = r["n"]
        sums[int(r["label"])] = [r[f"s{i}"] for i in range(p)]
    means = sums / np.maximum(sizes, 1)[:, None]
    diff = [F.col(f"z{i}") - F.element_at(F.array(*[F.lit(float(v)) for v in means[:, i]]),
                                          F.col("label") + 1) for i in range(p)]
    d2 = reduce(lambda a, b: a + b, [x * x for x in diff])
    spread = labelled.select("label", d2.alias("d2")).groupBy("label").agg(
        F.sum("d2").alias("sq"), F.sum(F.sqrt("d2")).alias("dist")).collect()
    dist_sum = np.zeros(k)
    intra = 0.0
    for r in spread:
        intra += float(r["sq"])
        dist_sum[int(r["label"])] = float(r["dist"])
    ch, db = metrics.scores_from_sums(means, sizes, intra, dist_sum)
    return [int(s) for s in sizes], ch, db


def _distinct(z: Any, p: int, limit: int) -> int:
    """Distinct rows of z, counted up to `limit`."""
    return int(z.select([f"z{i}" for i in range(p)]).distinct().limit(limit).count())


def _feasible(z: Any, p: int, n: int, ks: list[int]) -> list[int]:
    """The candidate ks the data's distinct rows allow (as `train._feasible`)."""
    if n < min(ks):
        raise TrainError(f"{n} rows cannot form n_clusters={min(ks)} clusters")
    distinct = _distinct(z, p, max(ks))
    feasible = [k for k in ks if k <= distinct]
    first = ks[0] if len(ks) == 1 else min(ks)
    if (not feasible or len(ks) == 1) and distinct < first:
        raise TrainError(
            f"only {distinct} distinct rows after feature engineering and PCA, fewer than "
            f"n_clusters={first}; lower n_clusters or add features/rows")
    return feasible


def fit_sweep_spark(
    z: Any, sample: Encoded, transform: FeatureTransform, projection: Projection, *,
    n: int, exact_sample: bool, k_candidates: list[int], metric: str, random_state: int,
    n_init: int, silhouette_sample_size: int, min_share: float, min_stability: float,
    tolerance: float, progress: Progress, keep: list[Any],
) -> SparkFit:
    """Every candidate k fitted on all rows (Spark) and scored; the choice of k.

    `sample`: the driver's sample, encoded; `exact_sample`: it is every row, in order;
    `keep`: where every fitted model goes until the training ends.
    """
    timings: dict[str, float] = {}
    p = projection.n_components
    zs = project(sample, transform, projection)
    index = metrics.silhouette_sample_index(len(zs), silhouette_sample_size, random_state)
    exact = exact_sample and index is None
    silhouette_x = zs if index is None else zs[index]
    ks = _feasible(z, p, n, k_candidates)
    candidates, centres, models = [], [], []
    labelings = []
    for i, k in enumerate(ks):
        progress(f"KMeans k={k} (Spark)", i / len(ks))
        t = time.perf_counter()
        model, rank = _kmeans(z, k, random_state, n_init, keep)
        spark_centres = np.asarray(model.clusterCenters())
        c = np.empty_like(spark_centres)
        c[rank] = spark_centres
        timings[f"kmeans_k{k}"] = time.perf_counter() - t
        t = time.perf_counter()
        sizes, ch, db = _cluster_scores(_labelled(z, model, rank), k, p)
        stability = quality.stability(zs, c, k, random_state=random_state,
                                      n_init=min(n_init, 3))
        labelings.append((kmeans.assign(silhouette_x, c)[0].astype(np.int32), k))
        candidates.append(Candidate(
            k=k, inertia=float(model.summary.trainingCost),
            silhouette=metrics.Silhouette(0.0, True, 0, 0, None), calinski_harabasz=ch,
            davies_bouldin=db, sizes=sizes, stability=stability))
        centres.append(c)
        models.append((model, rank))
        timings[f"metrics_k{k}"] = time.perf_counter() - t
    t = time.perf_counter()
    values = metrics.silhouettes(silhouette_x, labelings, sampled=not exact)
    for i, v in enumerate(values):
        sil = (metrics.Silhouette(float(v.mean()), True, n, n, None) if exact
               else metrics.sampled_silhouette(v, n))
        candidates[i] = replace(candidates[i], silhouette=sil)
    timings["silhouettes"] = time.perf_counter() - t
    choice = quality.choose_k(
        [c.k for c in candidates], [c.score(metric) for c in candidates],
        [c.min_share for c in candidates], [c.stability for c in candidates],
        metric=metric, min_share=min_share, min_stability=min_stability,
        tolerance=tolerance, shown=[abs(c.score(metric)) for c in candidates])
    model, rank = models[choice.index]
    from pyspark.ml.evaluation import ClusteringEvaluator

    spark_sil = float(ClusteringEvaluator(
        featuresCol="z", predictionCol="prediction", metricName="silhouette",
        distanceMeasure="squaredEuclidean").evaluate(model.transform(z)))
    chosen = centres[choice.index]
    return SparkFit(candidates=candidates, centres=centres, choice=choice,
                    sample_labels=kmeans.assign(zs, chosen)[0].astype(np.int32),
                    spark_silhouette=spark_sil, timings=timings)
