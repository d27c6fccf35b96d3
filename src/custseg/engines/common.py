"""What every engine does around its fit, whatever ran it: the metrics record and the
library versions of the lineage, and stable segment ids (a retrain's clusters matched to
the previous version's segments: `core/matching`)."""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from typing import Any

import numpy as np

from custseg import __version__
from custseg.artifact.scorer import Model
from custseg.config import Config
from custseg.core.columns import take_rows
from custseg.core.matching import agreement, centroid_matrix, match_ids
from custseg.core.preprocessing import Encoded, FeatureTransform
from custseg.core.schema import Schema
from custseg.core.train import Clustering, TrainResult
from custseg.engines.base import TrainRequest
from custseg.errors import ConfigError, CustsegError

__all__ = ["AGREEMENT_SAMPLE", "check_column_settings", "match_previous", "metrics_record",
           "model_meta", "original_sd", "previous_labels", "relabel", "selection_record",
           "unlabelled_codes", "versions"]

# what each `features.transforms` mode does on a column of each role
_TRANSFORM_ROLES = {"log": {"numeric", "date"}, "clip": {"numeric", "date"},
                    "auto": {"numeric", "date", "categorical"},
                    "none": {"numeric", "date", "categorical"}}


def check_column_settings(schema: Schema, cfg: Config) -> None:
    """Settings naming columns must apply to them as the schema has them: a transform the
    column's role has no use for, or words for the codes of a column that has none, would
    be recorded and never applied."""
    role = {c.name: c for c in schema.columns}
    for name, mode in cfg.features.transforms.items():
        column = role[name]  # infer_schema refuses a column missing from the data
        if column.role not in _TRANSFORM_ROLES[mode]:
            raise ConfigError(
                f"features.transforms.{name}: {mode!r} applies to "
                f"{' or '.join(sorted(_TRANSFORM_ROLES[mode]))} columns, but {name} is "
                f"{column.role.replace('_', '-')} ({column.reason}); declare its role in "
                f"features or drop the transform")
    for name in cfg.value_labels:
        if name not in role:
            raise ConfigError(f"value_labels.{name}: no such column in the data; columns: "
                              f"{', '.join(role)}")
        if role[name].role not in ("categorical", "profile_only"):
            raise ConfigError(
                f"value_labels.{name}: words for codes apply to categorical columns, but "
                f"{name} is {role[name].role} ({role[name].reason}); list it in "
                f"features.categorical to label its codes")


def unlabelled_codes(transform: FeatureTransform, cfg: Config) -> list[str]:
    """A warning per categorical column whose `value_labels` name codes it does not have."""
    out = []
    for name, categories in zip(transform.categorical, transform.categories, strict=True):
        labels = cfg.value_labels.get(name)
        if labels:
            unknown = [code for code in labels if code not in set(map(str, categories))]
            if unknown:
                out.append(f"value_labels.{name}: code{'s' if len(unknown) > 1 else ''} "
                           f"{', '.join(unknown)} not among its levels "
                           f"({', '.join(map(str, categories[:10]))})")
    return out


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {
        "custseg": __version__,
        "python": platform.python_version(),
        **{name: version(name) for name in ("numpy", "pyarrow", "scikit-learn")},
    }


def metrics_record(result: TrainResult) -> dict[str, Any]:
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


AGREEMENT_SAMPLE = 50_000  # rows: the agreement share is known to +-0.5% or better


def previous_labels(previous: Model | None, table: Any, random_state: int
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


def original_sd(encoded: Encoded, transform: FeatureTransform, random_state: int
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


def match_previous(profiles: list[dict[str, Any]], transform: FeatureTransform, previous: Model,
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


def relabel(clustering: Clustering, profiles: list[dict[str, Any]], ids: list[int]
             ) -> tuple[Clustering, list[dict[str, Any]]]:
    """Renumber clusters: cluster c becomes ids[c]."""
    order = np.argsort(ids)  # order[new_id] = old position
    mapping = np.asarray(ids, dtype=np.int32)
    relabelled = Clustering(k=clustering.k, centers=clustering.centers[order].copy(),
                            labels=mapping[clustering.labels], inertia=clustering.inertia,
                            n_iter=clustering.n_iter)
    new_profiles = [profiles[int(c)] | {"id": new} for new, c in enumerate(order)]
    return relabelled, new_profiles


def selection_record(cfg: Config, sentence: str, metric: str) -> dict[str, Any]:
    """How k was chosen, as the lineage records it (`meta["selection"]`)."""
    return {
        "sentence": sentence,
        "metric": metric,
        "swept": len(cfg.k_candidates) > 1,
        "min_share": cfg.tuning.min_share,
        "stability": cfg.tuning.stability,
        "tolerance": cfg.tuning.tolerance,
    }


def model_meta(cfg: Config, request: TrainRequest, engine: str, result: TrainResult, *,
               profiles: list[dict[str, Any]], names: list[str], stability: Any,
               correlations: Any, sample: dict[str, Any], warnings: list[str],
               baseline: dict[str, Any], data: dict[str, Any], timings: dict[str, float]
               ) -> dict[str, Any]:
    """The model's metadata as every engine records it (an engine adds its own keys)."""
    return {
        "execution_id": request.execution_id,
        "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "parameters": cfg.parameters(),
        "engine": engine,
        "metrics": metrics_record(result) | {"cluster_sizes": [p["size"] for p in profiles]},
        "candidates": [c.to_dict() for c in result.candidates],
        "selection": selection_record(cfg, result.sentence, result.metric),
        "warnings": warnings,
        "value_labels": cfg.value_labels,
        "correlations": correlations,
        "segments": profiles,
        "segment_names": names,
        "stability": stability,
        "report_sample": sample,
        "baseline": baseline,  # what `custseg monitor` compares traffic with
        "data": {"uri": cfg.data_location} | data,
        "timings": timings,
        "versions": versions(),
        "code_version": request.code_version,
    }
