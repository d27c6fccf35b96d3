"""The pipeline, as in the seed: Train -> CreateModel -> RegisterModel and DeployEndpoint.

`deploy` upserts the pipeline definition (steps, parameters and their defaults) into the
store as a new version when it changed. `run` starts an execution: each step's status,
times, error and outputs are recorded as it goes, so a failure or a kill leaves a true
record and no half-registered model. Train is served from cache when the data content,
the training parameters and the code version match an earlier success.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

import pyarrow as pa

from custseg.artifact.scorer import Model
from custseg.artifact.storage import load_model
from custseg.config import Config
from custseg.core.preprocessing import schema_rows
from custseg.engines import Engine, Reporter, TrainRequest, engine_for
from custseg.errors import CustsegError, ModelError
from custseg.io.data import returning_memory_pool
from custseg.io.sources import fingerprint_in_background
from custseg.pipeline import deploy as endpoints
from custseg.pipeline.records import (
    CreatedModel,
    Deployed,
    Registered,
    StepOutputs,
    Trained,
    TrainInputs,
)
from custseg.pipeline.report import default_path, write_report
from custseg.pipeline.steps import (
    cache_key,
    code_version,
    diff,
    rerun_reason,
    save_artifact,
    training_parameters,
)
from custseg.store import executions as records
from custseg.store import registry
from custseg.store.database import Store, now

__all__ = [
    "EDGES",
    "STEPS",
    "Execution",
    "Reporter",
    "StepRecord",
    "StepStatus",
    "definition",
    "deploy",
    "open_store",
    "run",
]

STEPS = ("Train", "CreateModel", "RegisterModel", "DeployEndpoint")
EDGES = (
    ("Train", "CreateModel"),
    ("CreateModel", "RegisterModel"),
    ("CreateModel", "DeployEndpoint"),
)
# the seed's pipeline parameters; `-p` overrides them (and any other key) for one run
PARAMETERS = (
    "n_clusters",
    "n_components",
    "data_file",
    "training_instance_type",
    "inference_instance_type",
)


Out = TypeVar("Out", bound=StepOutputs | None)


class StepStatus(StrEnum):
    PENDING = "Pending"
    EXECUTING = "Executing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CACHED = "Cached"
    SKIPPED = "Skipped"


@dataclass
class StepRecord:
    name: str
    status: StepStatus = StepStatus.PENDING
    started: str | None = None
    ended: str | None = None
    seconds: float | None = None
    error: str | None = None
    outputs: StepOutputs | None = None
    cached_from: str | None = None
    reason: str | None = None


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
    pipeline_version: int | None = None
    segment_names: list[str] | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    model: Model | None = field(default=None, repr=False)
    report: str | None = None  # the segment report's HTML file


class _Silent:
    def stage(self, name: str, fraction: float) -> None:
        return None

    def note(self, message: str) -> None:
        return None


def new_execution_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def open_store(cfg: Config) -> Store:
    return cfg.open_store()


# -- definitions -----------------------------------------------------------------------------


def definition(cfg: Config) -> dict[str, Any]:
    """The pipeline definition: its steps and edges, parameters with their defaults, and
    the settings the steps run with."""
    values = cfg.parameters()
    return {
        "name": cfg.project_name,
        "steps": [{"name": s, "depends_on": [a for a, b in EDGES if b == s]} for s in STEPS],
        "parameters": {name: values[name] for name in PARAMETERS},
        "settings": {k: v for k, v in values.items() if k not in PARAMETERS},
    }


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def deploy(cfg: Config, store: Store | None = None) -> tuple[int, bool, list[str]]:
    """Upsert the definition: (version, whether it is new, what changed)."""
    engine_for(cfg)  # refuses an engine that cannot run here
    store = store or open_store(cfg)
    new = definition(cfg)
    latest = records.latest_pipeline(store, cfg.project_name)
    version, created = records.upsert_pipeline(store, cfg.project_name, new, _sha(new))
    changes: list[str] = []
    if created and latest is not None:
        changes = diff(latest.definition, new)
    return version, created, changes


# -- executions ------------------------------------------------------------------------------


def run(
    cfg: Config,
    reporter: Reporter | None = None,
    *,
    no_cache: bool = False,
    base: Config | None = None,
    data_hash: Future[tuple[list[str], str]] | None = None,
) -> Execution:
    """Execute the pipeline; raises the failing step's CustsegError (with `.execution`).

    `base` is the config as deployed (without this run's `-p` overrides): the definition
    of `cfg.project_name`'s pipeline is upserted from it when missing or stale.
    `data_hash`: the `fingerprint` of `cfg`'s data, when the caller started it
    (`io.sources.fingerprint_in_background`).
    """
    # the content hash reads every byte of the data and needs nothing else: it runs on a
    # thread while the store is opened and the execution recorded (the CLI starts it
    # before importing numpy and pyarrow), and Train waits for it where it needs it (its
    # errors are Train's)
    if data_hash is None:
        data_hash = fingerprint_in_background(cfg.data_location,
                                              s3_endpoint_url=cfg.s3.endpoint_url)
    engine = engine_for(cfg)
    engine.prepare(cfg)  # e.g. the local engine's memory estimate, while the run records
    reporter = reporter or _Silent()
    # Arrow's default pool keeps freed memory; at 10M rows that doubled peak memory.
    pa.set_memory_pool(returning_memory_pool())
    store = open_store(cfg)
    with store.kept_open():  # one connection for the run's 25 store calls
        deployed = base or cfg
        if deployed.project_name != cfg.project_name:  # -p project_name=...: that pipeline
            deployed = deployed.model_copy(update={"project_name": cfg.project_name})
        version, created, changes = deploy(deployed, store)
        execution = Execution(
            id=new_execution_id(),
            parameters=cfg.parameters(),
            steps={name: StepRecord(name) for name in STEPS},
            pipeline_version=version,
        )
        if created:
            why = "it was missing" if version == 1 else "changed: " + ", ".join(changes)
            execution.notes.append(f"deployed pipeline {cfg.project_name} v{version} ({why})")
            reporter.note(execution.notes[-1])
        records.create_execution(
            store,
            execution.id,
            (cfg.project_name, version),
            execution.parameters,
            list(STEPS),
            registry.current_user(),
        )
        runner = _Runner(cfg, store, execution, reporter, no_cache, engine, data_hash)
        try:
            runner.run_all()
        except BaseException as exc:
            message = (
                str(exc) if isinstance(exc, CustsegError) else f"interrupted ({type(exc).__name__})"
            )
            execution.status, execution.error = StepStatus.FAILED, message
            records.finish_execution(store, execution.id, "Failed", message)
            for rec in execution.steps.values():
                if rec.status == StepStatus.PENDING:
                    rec.status = StepStatus.SKIPPED
            if isinstance(exc, CustsegError):
                exc.execution = execution  # type: ignore[attr-defined]
            raise
        execution.status = StepStatus.SUCCEEDED
        records.finish_execution(store, execution.id, "Succeeded")
        _write_report(cfg, store, execution, version)
        return execution


def _write_report(cfg: Config, store: Store, execution: Execution, version: int) -> None:
    """The segment report of a successful run, under the store's `reports/` folder."""
    model = execution.model or load_model(execution.model_uri or "",
                                          s3_endpoint_url=cfg.s3.endpoint_url)
    title = f"Segments of execution {execution.id}"
    try:
        path = write_report(model, default_path(store.folder, title), title,
                            f"pipeline {cfg.project_name} v{version}")
    except CustsegError as exc:
        exc.args = (f"the run succeeded ({execution.id}), but {exc}",)
        exc.execution = execution  # type: ignore[attr-defined]
        raise
    execution.report = str(path)


class _Runner:
    """Runs the steps of one execution in order, recording each in the store."""

    def __init__(
        self, cfg: Config, store: Store, execution: Execution, reporter: Reporter,
        no_cache: bool, engine: Engine, data_hash: Future[tuple[list[str], str]],
    ) -> None:
        self.cfg, self.store, self.execution = cfg, store, execution
        self.reporter, self.no_cache, self.engine = reporter, no_cache, engine
        self.data_hash = data_hash  # (files, sha256) of the data, computed on a thread

    def step(self, name: str, body: Callable[[StepRecord], Out]) -> Out:
        rec = self.execution.steps[name]
        rec.status, rec.started = StepStatus.EXECUTING, now()
        records.update_step(
            self.store, self.execution.id, name, status=rec.status.value, started_at=rec.started
        )
        t = time.perf_counter()
        try:
            outputs = body(rec)
        except BaseException as exc:
            rec.status, rec.error = StepStatus.FAILED, str(exc) or type(exc).__name__
            rec.ended, rec.seconds = now(), time.perf_counter() - t
            records.update_step(
                self.store,
                self.execution.id,
                name,
                status="Failed",
                error=rec.error,
                ended_at=rec.ended,
                seconds=rec.seconds,
            )
            raise
        if rec.status == StepStatus.EXECUTING:
            rec.status = StepStatus.SUCCEEDED
        rec.outputs, rec.ended, rec.seconds = outputs, now(), time.perf_counter() - t
        records.update_step(
            self.store,
            self.execution.id,
            name,
            status=rec.status.value,
            ended_at=rec.ended,
            seconds=rec.seconds,
            outputs=outputs.to_json() if outputs is not None else {},
            cached_from=rec.cached_from,
            reason=rec.reason,
        )
        return outputs

    def run_all(self) -> None:
        cfg, execution = self.cfg, self.execution
        trained = self.step("Train", self.train)
        execution.metrics = trained.metrics
        execution.segment_names = trained.segment_names
        execution.warnings = trained.warnings
        execution.model_uri = trained.model_uri
        created = self.step(
            "CreateModel",
            lambda rec: CreatedModel(
                model_name=f"{cfg.project_name}-model-{execution.id}",
                model_uri=trained.model_uri,
                inference_code_version=code_version(),
                input_schema=trained.schema,
            ),
        )
        registered = self.step("RegisterModel", lambda rec: self.register(trained, created))
        execution.model_version = registered.version
        deployed = self.step("DeployEndpoint", lambda rec: self.deploy(rec, registered))
        execution.endpoint = deployed.endpoint_name if deployed is not None else None

    def train(self, rec: StepRecord) -> Trained:
        cfg, store = self.cfg, self.store
        code = code_version().for_cache()  # while the data is hashed
        self.reporter.stage("Hashing data", 0.0)
        files, data_sha = self.data_hash.result()
        inputs = TrainInputs(
            data_sha256=data_sha,
            parameters=training_parameters(cfg) | {"artifacts": cfg.artifacts_location},
            code=code,
        )
        key = cache_key(data_sha, inputs.parameters, inputs.code)
        records.update_step(store, self.execution.id, "Train", cache_key=key)
        hit = None if self.no_cache else records.cached_step(store, "Train", key)
        unusable = None
        if hit is not None:
            unusable = self._artifact_problem(hit.outputs["model_uri"])
            if unusable is None:
                rec.status, rec.cached_from = StepStatus.CACHED, hit.execution_id
                rec.reason = f"inputs match execution {hit.execution_id}"
                self.reporter.note(f"Train: cached (from execution {hit.execution_id})")
                return Trained.from_json(hit.outputs)
        if hit is not None and unusable is not None:
            rec.reason = (f"inputs match execution {hit.execution_id}, but the cached "
                          f"artifact is unusable: {unusable}")
            self._note(f"Train: cached artifact unusable, retraining ({unusable})")
        else:
            previous = records.last_successful_step(store, cfg.project_name, "Train")
            rec.reason = rerun_reason(
                TrainInputs.lenient(previous.outputs.get("inputs")) if previous else None,
                inputs, self.no_cache)
        request = TrainRequest(self.execution.id, data_sha, self._previous_model(),
                               code_version().to_json())
        model = self.engine.train(cfg, request, self.reporter)
        self.reporter.stage("Saving model", 0.0)
        uri = save_artifact(cfg, model, self.execution.id)
        self.execution.model = model.with_uri(uri)
        return Trained(
            model_uri=uri,
            metrics=model.meta["metrics"],
            segment_names=model.meta["segment_names"],
            stability=model.meta["stability"],
            inputs=inputs,
            schema=model.schema.to_dict() | {
                "columns": schema_rows(model.schema, model.transform)},
            warnings=model.meta["warnings"],
            selection=model.meta["selection"],
            data=model.meta["data"] | {"files": files},
            engine=self.engine.name,
            engine_details=model.meta.get("engine_details") or self.engine.describe(),
        )

    def _previous_model(self) -> Model | None:
        """The group's latest version, whose segment ids the new model keeps."""
        versions = registry.packages(self.store, registry.group_name(self.cfg.project_name))
        if not versions:
            return None
        try:
            return load_model(versions[-1].artifact_uri, s3_endpoint_url=self.cfg.s3.endpoint_url)
        except ModelError as exc:
            self._note(f"Train: previous version unusable for stable ids ({exc})")
            return None

    def _note(self, message: str) -> None:
        self.execution.notes.append(message)
        self.reporter.note(message)

    def _artifact_problem(self, uri: str) -> str | None:
        """Why a cached artifact cannot be used (None when it loads and verifies)."""
        try:
            load_model(uri, s3_endpoint_url=self.cfg.s3.endpoint_url)
        except CustsegError as exc:
            return str(exc)
        return None

    def register(self, trained: Trained, created: CreatedModel) -> Registered:
        cfg = self.cfg
        group = registry.group_name(cfg.project_name)
        data = trained.data
        lineage = {
            "execution_id": self.execution.id,
            "trained_by_execution": self.execution.steps["Train"].cached_from or self.execution.id,
            "data_uri": data["uri"],
            "data_sha256": data["sha256"],
            "rows": data["rows"],
            "parameters": self.execution.parameters,
            "metrics": trained.metrics,
            "code_version": created.inference_code_version.to_json(),
            "engine": trained.engine,
            "engine_details": trained.engine_details,
            "model_name": created.model_name,
            "segment_names": trained.segment_names,
            "stability": trained.stability,
            "schema": trained.schema,
            "warnings": trained.warnings,
        }
        status = registry.ApprovalStatus.PENDING
        version = registry.register(
            self.store,
            group,
            execution_id=self.execution.id,
            artifact_uri=trained.model_uri,
            lineage=lineage,
            status=status,
            user=registry.current_user(),
        )
        return Registered(group=group, version=version, approval_status=status.value)

    def deploy(self, rec: StepRecord, registered: Registered) -> Deployed | None:
        cfg = self.cfg
        pkg = registry.package(self.store, registered.group, registered.version)
        if cfg.deploy.require_approval and pkg.approval_status != registry.ApprovalStatus.APPROVED:
            rec.status = StepStatus.SKIPPED
            rec.reason = (
                f"deploy.require_approval: {pkg.ref} is {pkg.approval_status.value}; "
                f"`custseg models approve {pkg.version}` deploys it"
            )
            self._note(f"DeployEndpoint: skipped ({rec.reason})")
            return None
        self.reporter.stage("Deploying endpoint", 0.0)
        return endpoints.deploy_version(self.store, cfg, pkg, self.execution.model)
