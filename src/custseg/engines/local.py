"""The local engine: Train in this process, from the data to a fitted `Model`.

Reads the data (`io/data`), infers the schema, fits the features, PCA and KMeans with
the choice of k (`core/`), profiles and names the segments, and matches their ids to
the previous version's so that a retrain keeps them (`core/matching`).
"""

from __future__ import annotations

import platform
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np

from custseg import __version__
from custseg.artifact.scorer import Model
from custseg.config import Config
from custseg.core.columns import take_rows
from custseg.core.diagnostics import run_warnings
from custseg.core.matching import agreement, centroid_matrix, match_ids
from custseg.core.preprocessing import Encoded, FeatureTransform, fit_features
from custseg.core.profile_only import describe_profile_only, profile_only_columns
from custseg.core.profiles import name_segments, numeric_correlations, profile_segments
from custseg.core.report_sample import report_sample
from custseg.core.schema import infer_schema
from custseg.core.train import Clustering, TrainResult, train
from custseg.engines.base import Reporter, TrainRequest
from custseg.errors import ConfigError, CustsegError
from custseg.io.data import read_data

__all__ = ["LocalEngine", "train_local"]


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {
        "custseg": __version__,
        "python": platform.python_version(),
        **{name: version(name) for name in ("numpy", "pyarrow", "scikit-learn")},
    }


def _metrics(result: TrainResult) -> dict[str, Any]:
    chosen = result.chosen
    p = result.projection
    return {
        "space": f"PCA, {p.n_components} component{'s' if p.n_components > 1 else ''} "
                 f"({float(p.explained_variance_ratio.sum()):.0%} of the variance)",
        "feature_space": result.feature_space,
        "stability": chosen.stability,
        "k": chosen.k,
        "silhouette": chosen.silhouette.to_dict(),
        "calinski_harabasz": chosen.calinski_harabasz,
        "davies_bouldin": chosen.davies_bouldin,
        "inertia": chosen.inertia,
        "cluster_sizes": chosen.sizes,
        "selection_metric": result.metric,
    }


class LocalEngine:
    """Trains in this process: Arrow reads the data, numpy and scikit-learn fit it."""

    name = "local"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def train(self, cfg: Config, request: TrainRequest, reporter: Reporter) -> Model:
        # the row blocks run on a thread per core (core/rowblocks): a BLAS that also
        # starts a thread per core under each of them fights them for the cores (a
        # sampled silhouette measured 4 to 10x slower on a busy machine), so BLAS runs
        # single-threaded for the training
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return train_local(cfg, request, reporter)


def train_local(cfg: Config, request: TrainRequest, reporter: Reporter) -> Model:
    """Read, engineer features, fit PCA + KMeans, score, profile and name the segments.

    With `request.previous` (the model group's latest version), cluster ids are matched
    to its segments (see `core/matching`) and the agreement on this data is recorded.
    """
    execution_id, data_sha256, previous = (request.execution_id, request.data_sha256,
                                           request.previous)
    t0 = time.perf_counter()
    reporter.stage("Reading data", 0.0)
    features = cfg.features
    declared = features.numeric is not None or features.categorical is not None
    data = read_data(
        cfg.data_location,
        known_sha256=data_sha256,
        delimiter=cfg.csv.delimiter,
        s3_endpoint_url=cfg.s3.endpoint_url,
        include=[*(features.numeric or []), *(features.categorical or []), *features.dates,
                 *features.profile_only] if declared else None,
        exclude=features.ignore,
    )
    t_read = time.perf_counter() - t0
    reporter.stage("Feature engineering", 0.0)
    source = (
        data.files[0] if len(data.files) == 1 else f"{len(data.files)} files at {cfg.data_location}"
    )
    schema = infer_schema(data.table, features, source, header=data.meta.get("header"))
    missing = {c: int(data.table.column(c).null_count) for c in schema.numeric + schema.categorical}
    transform, encoded = fit_features(data.table, schema, data.locate, features)
    described = profile_only_columns(data.table, schema.profile_only)
    old_labels = _previous_labels(previous, data.table, cfg.random_state)
    data.release()  # free the Arrow table before PCA and KMeans: memory matters at 10M rows
    t_features = time.perf_counter() - t0 - t_read
    result = train(
        encoded,
        transform,
        k_candidates=cfg.k_candidates,
        n_components=cfg.n_components,
        metric=cfg.tuning.metric,
        random_state=cfg.random_state,
        n_init=cfg.tuning.n_init,
        silhouette_sample_size=cfg.tuning.silhouette_sample_size,
        min_share=cfg.tuning.min_share,
        min_stability=cfg.tuning.stability,
        tolerance=cfg.tuning.tolerance,
        progress=lambda msg, frac: reporter.stage(msg, frac),
    )
    k = result.clustering.k
    if cfg.segment_names is not None and len(cfg.segment_names) != k:
        raise ConfigError(f"segment_names has {len(cfg.segment_names)} names, but the model "
                          f"has {k} segments")
    clustering = result.clustering
    profiles = profile_segments(encoded, transform, clustering.labels, k, cfg.random_state)
    describe_profile_only(profiles, described, clustering.labels, k)
    correlations = numeric_correlations(encoded, transform, cfg.random_state)
    stability = None
    if previous is not None and previous.meta.get("segments"):
        ids, stability = _match(profiles, transform, previous, clustering.labels, old_labels,
                                _original_sd(encoded, transform, cfg.random_state))
        clustering, profiles = _relabel(clustering, profiles, ids)
    sample = report_sample(encoded, transform, result.projection, clustering.labels, k,
                           cfg.random_state)
    names = name_segments(profiles, cfg.segment_names, value_labels=cfg.value_labels,
                          correlations=correlations)
    for profile, name in zip(profiles, names, strict=True):
        profile["name"] = name
    warnings = run_warnings(schema, transform, result, missing, encoded.n, cfg)
    meta = {
        "execution_id": execution_id,
        "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "parameters": cfg.parameters(),
        "engine": LocalEngine.name,
        "metrics": _metrics(result) | {"cluster_sizes": [p["size"] for p in profiles]},
        "candidates": [c.to_dict() for c in result.candidates],
        "selection": {
            "sentence": result.sentence,
            "metric": result.metric,
            "swept": len(cfg.k_candidates) > 1,
            "min_share": cfg.tuning.min_share,
            "stability": cfg.tuning.stability,
            "tolerance": cfg.tuning.tolerance,
        },
        "warnings": warnings,
        "value_labels": cfg.value_labels,
        "correlations": correlations,
        "segments": profiles,
        "segment_names": names,
        "stability": stability,
        "report_sample": sample,
        "data": {
            "uri": cfg.data_location,
            "files": data.files,
            "sha256": data.sha256,
            "rows": encoded.n,
            "delimiter": data.delimiter,
            "missing": missing,
        },
        "timings": {"read": t_read, "features": t_features, **result.timings},
        "versions": _versions(),
        "code_version": request.code_version,
    }
    return Model(
        schema=schema,
        transform=transform,
        projection=result.projection,
        centers=clustering.centers,
        meta=meta,
    )


AGREEMENT_SAMPLE = 50_000  # rows: the agreement share is known to +-0.5% or better


def _previous_labels(previous: Model | None, table: Any, random_state: int
                     ) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows (a seeded sample of at most AGREEMENT_SAMPLE) and the previous version's
    segment of each, to measure how many keep their id; None if it cannot read them."""
    if previous is None:
        return None
    n = table.num_rows
    rng = np.random.default_rng([random_state, 29])
    index = np.arange(n) if n <= AGREEMENT_SAMPLE else np.sort(
        rng.choice(n, AGREEMENT_SAMPLE, replace=False))
    try:
        sample = take_rows(table, index) if len(index) < n else table
        return index, previous.predict(sample)
    except CustsegError:
        return None  # e.g. a column it needs is gone: ids are matched on centroids only


def _original_sd(encoded: Encoded, transform: FeatureTransform, random_state: int
                 ) -> list[float]:
    """The sd of each numeric column in original units (on a seeded sample of at most
    AGREEMENT_SAMPLE rows): what centroid matching scales by, as profiles are in
    original units while a log-transformed column's `scales` are in log units."""
    n = encoded.n
    rng = np.random.default_rng([random_state, 31])
    index = np.arange(n) if n <= AGREEMENT_SAMPLE else np.sort(
        rng.choice(n, AGREEMENT_SAMPLE, replace=False))
    return [max(float(np.std(transform.original(encoded, j, index))), 1e-12)
            for j in range(len(transform.numeric))]


def _match(profiles: list[dict[str, Any]], transform: FeatureTransform, previous: Model,
           labels: np.ndarray, old_labels: tuple[np.ndarray, np.ndarray] | None,
           original_sd: list[float]) -> tuple[list[int], dict[str, Any]]:
    """New id per cluster (matched to the previous version) and the stability record."""
    shared = [c for c in transform.numeric if c in previous.transform.numeric]
    scales = dict(zip(transform.numeric, original_sd, strict=True))
    categories = [f"{c}={v}" for c, values in zip(transform.categorical, transform.categories,
                                                  strict=True)
                  if c in previous.transform.categorical for v in values]
    ids = match_ids(centroid_matrix(profiles, shared, scales, categories),
                    centroid_matrix(previous.meta["segments"], shared, scales, categories))
    k = len(profiles)
    if sorted(ids) != list(range(k)):  # fewer segments than before: keep their order
        order = sorted(range(k), key=lambda c: ids[c])
        ids = [order.index(c) for c in range(k)]
    agree = None
    if old_labels is not None:
        index, old = old_labels
        agree = agreement(np.asarray(ids, dtype=np.int32)[labels[index]], old)
    return ids, {
        "previous_model": previous.uri,
        "previous_k": previous.k,
        "matched_ids": ids,
        "agreement": agree,
        "agreement_rows": None if old_labels is None else len(old_labels[0]),
        "method": "Hungarian matching on centroids in original units (scaled by sd)",
    }


def _relabel(clustering: Clustering, profiles: list[dict[str, Any]], ids: list[int]
             ) -> tuple[Clustering, list[dict[str, Any]]]:
    """Renumber clusters: cluster c becomes ids[c]."""
    order = np.argsort(ids)  # order[new_id] = old position
    mapping = np.asarray(ids, dtype=np.int32)
    relabelled = Clustering(k=clustering.k, centers=clustering.centers[order].copy(),
                            labels=mapping[clustering.labels], inertia=clustering.inertia,
                            n_iter=clustering.n_iter)
    new_profiles = [profiles[int(c)] | {"id": new} for new, c in enumerate(order)]
    return relabelled, new_profiles
