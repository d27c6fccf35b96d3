"""The bodies of the pipeline's steps, and what decides whether a step can be cached.

`runner` runs these in order and records them; they take the config and the previous
steps' outputs and return values. Only `io/data` and `artifact/storage` (called from
here) touch files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from custseg.artifact.scorer import Model
from custseg.artifact.storage import save_model
from custseg.config import Config
from custseg.pipeline.code_version import PACKAGE, code_version, source_files, source_sha256
from custseg.pipeline.records import TrainInputs

__all__ = [
    "PACKAGE",
    "cache_key",
    "code_version",
    "diff",
    "rerun_reason",
    "save_artifact",
    "source_files",
    "source_sha256",
    "training_parameters",
]

# Config keys that cannot change what Train produces: left out of its cache key.
# (`project_name` stays in: it names the model group whose latest version the segment ids
# are matched to, so another group's model is not this group's retrain.)
NOT_TRAINING = frozenset(
    {
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


def rerun_reason(before: TrainInputs | None, inputs: TrainInputs, no_cache: bool) -> str:
    """Why Train ran instead of coming from cache, compared with the last successful run."""
    if no_cache:
        return "--no-cache"
    if before is None:
        return "no earlier successful run"
    reasons = []
    if before.data_sha256 != inputs.data_sha256:
        reasons.append(
            f"data content changed (sha256 {before.data_sha256[:12]} -> "
            f"{inputs.data_sha256[:12]})"
        )
    changed = diff(before.parameters, inputs.parameters)
    if changed:
        reasons.append("parameters changed: " + ", ".join(changed))
    if before.code != inputs.code:
        reasons.append("code version changed: " + ", ".join(diff(before.code, inputs.code)))
    return "; ".join(reasons) or "the cached artifact is missing"


def save_artifact(cfg: Config, model: Model, execution_id: str) -> str:
    """Write the trained model's artifact under the execution, in the artifact store."""
    uri = f"{cfg.artifacts_location.rstrip('/')}/executions/{execution_id}/model"
    if "://" not in uri:
        uri = str(Path(uri))
    return save_model(model, uri, s3_endpoint_url=cfg.s3.endpoint_url)
