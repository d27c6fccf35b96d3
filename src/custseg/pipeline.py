"""The pipeline: Train -> CreateModel (registry and endpoint steps come later), as
executions with per-step status, timings, errors and outputs.

Reads top to bottom like the seed's diagram. Each step is a function of the config and
the previous step's outputs; only `data` and `model` touch files.
"""

from __future__ import annotations

import platform
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from custseg import __version__
from custseg.config import Config
from custseg.data import read_data, returning_memory_pool
from custseg.errors import CustsegError
from custseg.model import Model, save_model
from custseg.preprocessing import fit_features, infer_schema
from custseg.train import TrainResult, train

__all__ = ["STEPS", "Execution", "Reporter", "StepRecord", "StepStatus", "run"]

STEPS = ("Train", "CreateModel")


class StepStatus(StrEnum):
    EXECUTING = "Executing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CACHED = "Cached"
    SKIPPED = "Skipped"


class Reporter(Protocol):
    """Receives progress: a stage starts, advances (fraction in [0, 1]) and ends."""

    def stage(self, name: str, fraction: float) -> None: ...


class _Silent:
    def stage(self, name: str, fraction: float) -> None:
        return None


@dataclass
class StepRecord:
    name: str
    status: StepStatus = StepStatus.SKIPPED
    started: str | None = None
    ended: str | None = None
    seconds: float | None = None
    error: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Execution:
    """One run of the pipeline. Mirrors the Python API of SPEC section 2."""

    id: str
    parameters: dict[str, Any]
    steps: dict[str, StepRecord]
    status: StepStatus = StepStatus.EXECUTING
    metrics: dict[str, Any] | None = None
    model_uri: str | None = None
    model_version: int | None = None
    endpoint: str | None = None
    error: str | None = None
    model: Model | None = field(default=None, repr=False)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_execution_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


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


def train_step(cfg: Config, execution_id: str, reporter: Reporter) -> Model:
    """Read, engineer features, fit PCA + KMeans, score. Returns the in-memory model."""
    t0 = time.perf_counter()
    reporter.stage("Reading data", 0.0)
    features = cfg.features
    declared = features.numeric is not None or features.categorical is not None
    data = read_data(
        cfg.data_location,
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
    meta = {
        "execution_id": execution_id,
        "created_at": _now(),
        "parameters": cfg.parameters(),
        "engine": cfg.engine,
        "metrics": _metrics(result),
        "candidates": [c.to_dict() for c in result.candidates],
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
    }
    return Model(
        schema=schema,
        transform=transform,
        projection=result.projection,
        centers=result.clustering.centers,
        meta=meta,
    )


def create_model_step(cfg: Config, model: Model, execution_id: str) -> str:
    """Package the artifact (schema, state, metrics, code version) into the artifact store."""
    uri = f"{cfg.artifacts_location.rstrip('/')}/executions/{execution_id}/model"
    if "://" not in uri:
        uri = str(Path(uri))
    return save_model(model, uri, s3_endpoint_url=cfg.s3.endpoint_url)


def run(cfg: Config, reporter: Reporter | None = None) -> Execution:
    """Execute the pipeline. Raises the step's CustsegError (with `.execution`) on failure."""
    reporter = reporter or _Silent()
    # Arrow's default pool keeps freed memory; at 10M rows that doubled peak memory.
    pa.set_memory_pool(returning_memory_pool())
    execution = Execution(
        id=new_execution_id(),
        parameters=cfg.parameters(),
        steps={name: StepRecord(name) for name in STEPS},
    )

    def step(name: str, fn: Callable[[], Any]) -> Any:
        rec = execution.steps[name]
        rec.status, rec.started = StepStatus.EXECUTING, _now()
        t = time.perf_counter()
        try:
            out = fn()
        except CustsegError as exc:
            rec.status, rec.error = StepStatus.FAILED, str(exc)
            execution.status, execution.error = StepStatus.FAILED, f"{name}: {exc}"
            exc.execution = execution  # type: ignore[attr-defined]
            raise
        finally:
            rec.ended, rec.seconds = _now(), time.perf_counter() - t
        rec.status = StepStatus.SUCCEEDED
        return out

    model: Model = step("Train", lambda: train_step(cfg, execution.id, reporter))
    execution.steps["Train"].outputs = {"metrics": model.meta["metrics"]}
    execution.metrics = model.meta["metrics"]
    reporter.stage("Saving model", 0.0)
    uri = step("CreateModel", lambda: create_model_step(cfg, model, execution.id))
    execution.steps["CreateModel"].outputs = {"model_uri": uri}
    execution.model_uri, execution.model = uri, model
    execution.status = StepStatus.SUCCEEDED
    return execution
