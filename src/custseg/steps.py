"""The bodies of the pipeline's steps, and what decides whether a step can be cached.

`pipeline` runs these in order and records them; they take the config and the previous
steps' outputs and return values. Only `data` and `model` (called from here) touch files.
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Protocol

from custseg import __version__
from custseg.config import Config
from custseg.data import read_data
from custseg.errors import ConfigError
from custseg.model import Model, save_model
from custseg.preprocessing import fit_features, infer_schema
from custseg.profiles import name_segments, profile_segments
from custseg.store import now
from custseg.train import TrainResult, train

__all__ = [
    "Reporter",
    "cache_key",
    "code_version",
    "diff",
    "rerun_reason",
    "save_artifact",
    "train_step",
    "training_parameters",
]

# Config keys that cannot change what Train produces: left out of its cache key.
NOT_TRAINING = frozenset(
    {
        "project_name",
        "environment",
        "region",
        "bucket_name",
        "role_arn",
        "lambda_role_arn",
        "training_instance_type",
        "inference_instance_type",
        "data_uri",
        "data_file",
        "s3",
        "store",
        "artifacts",
        "endpoint",
        "deploy",
        "spark",
    }
)


class Reporter(Protocol):
    """Receives progress: a stage starts or advances (fraction in [0, 1]), and notes."""

    def stage(self, name: str, fraction: float) -> None: ...

    def note(self, message: str) -> None: ...


@functools.cache
def code_version() -> dict[str, Any]:
    """The package version, and the git commit (with a dirty flag) when run from a checkout."""
    root = Path(__file__).resolve().parents[2]
    commit = dirty = None
    if (root / ".git").exists():
        try:
            commit = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            ).stdout.strip()
            status = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            ).stdout
            dirty = bool(status.strip())
        except (OSError, subprocess.SubprocessError):
            commit = dirty = None
    return {"package": __version__, "git_commit": commit, "git_dirty": dirty}


def training_parameters(cfg: Config) -> dict[str, Any]:
    return {k: v for k, v in cfg.parameters().items() if k not in NOT_TRAINING}


def cache_key(data_sha256: str, parameters: dict[str, Any], code: dict[str, Any]) -> str:
    blob = json.dumps({"data": data_sha256, "parameters": parameters, "code": code}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """What changed between two nested mappings, one "key old -> new" line per leaf."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} {json.dumps(a)} -> {json.dumps(b)}")
    return out


def rerun_reason(previous: dict[str, Any] | None, inputs: dict[str, Any], no_cache: bool) -> str:
    """Why Train ran instead of coming from cache, compared with the last successful run."""
    if no_cache:
        return "--no-cache"
    if previous is None:
        return "no earlier successful run"
    before = previous.get("inputs") or {}
    reasons = []
    if before.get("data_sha256") != inputs["data_sha256"]:
        reasons.append(
            f"data content changed (sha256 {str(before.get('data_sha256'))[:12]} -> "
            f"{inputs['data_sha256'][:12]})"
        )
    changed = diff(before.get("parameters") or {}, inputs["parameters"])
    if changed:
        reasons.append("parameters changed: " + ", ".join(changed))
    if before.get("code") != inputs["code"]:
        reasons.append(
            "code version changed: " + ", ".join(diff(before.get("code") or {}, inputs["code"]))
        )
    return "; ".join(reasons) or "the cached artifact is missing"


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {
        "custseg": __version__,
        "python": platform.python_version(),
        **{name: version(name) for name in ("numpy", "pyarrow", "scikit-learn")},
    }


def _metrics(result: TrainResult) -> dict[str, Any]:
    chosen = result.chosen
    return {
        "k": chosen.k,
        "silhouette": chosen.silhouette.to_dict(),
        "calinski_harabasz": chosen.calinski_harabasz,
        "davies_bouldin": chosen.davies_bouldin,
        "inertia": chosen.inertia,
        "cluster_sizes": chosen.sizes,
        "selection_metric": result.metric,
    }


def train_step(
    cfg: Config, execution_id: str, reporter: Reporter, data_sha256: str | None = None
) -> Model:
    """Read, engineer features, fit PCA + KMeans, score. Returns the in-memory model."""
    t0 = time.perf_counter()
    reporter.stage("Reading data", 0.0)
    features = cfg.features
    declared = features.numeric is not None or features.categorical is not None
    data = read_data(
        cfg.data_location,
        known_sha256=data_sha256,
        delimiter=cfg.csv.delimiter,
        s3_endpoint_url=cfg.s3.endpoint_url,
        include=[*(features.numeric or []), *(features.categorical or [])] if declared else None,
        exclude=features.ignore,
    )
    t_read = time.perf_counter() - t0
    reporter.stage("Feature engineering", 0.0)
    source = (
        data.files[0] if len(data.files) == 1 else f"{len(data.files)} files at {cfg.data_location}"
    )
    schema = infer_schema(data.table, features, source, header=data.meta.get("header"))
    missing = {c: int(data.table.column(c).null_count) for c in schema.numeric + schema.categorical}
    transform, encoded = fit_features(data.table, schema, data.locate)
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
        progress=lambda msg, frac: reporter.stage(msg, frac),
    )
    k = result.clustering.k
    if cfg.segment_names is not None and len(cfg.segment_names) != k:
        raise ConfigError(f"segment_names has {len(cfg.segment_names)} names, but the model "
                          f"has {k} segments")
    profiles = profile_segments(encoded, transform, result.clustering.labels, k,
                                cfg.random_state)
    names = name_segments(profiles, cfg.segment_names)
    for profile, name in zip(profiles, names, strict=True):
        profile["name"] = name
    meta = {
        "execution_id": execution_id,
        "created_at": now(),
        "parameters": cfg.parameters(),
        "engine": cfg.engine,
        "metrics": _metrics(result),
        "candidates": [c.to_dict() for c in result.candidates],
        "segments": profiles,
        "segment_names": names,
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
        "code_version": code_version(),
    }
    return Model(
        schema=schema,
        transform=transform,
        projection=result.projection,
        centers=result.clustering.centers,
        meta=meta,
    )


def save_artifact(cfg: Config, model: Model, execution_id: str) -> str:
    """Write the trained model's artifact under the execution, in the artifact store."""
    uri = f"{cfg.artifacts_location.rstrip('/')}/executions/{execution_id}/model"
    if "://" not in uri:
        uri = str(Path(uri))
    return save_model(model, uri, s3_endpoint_url=cfg.s3.endpoint_url)
