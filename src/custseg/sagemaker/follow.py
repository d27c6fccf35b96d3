"""`custseg run --target sagemaker --wait`: follow an execution to its end.

Every `interval` seconds, for at most `timeout` seconds, DescribePipelineExecution gives
the execution's status and ListPipelineExecutionSteps its steps; each step whose status
changed is reported. At the end, what the steps made is read from their `Metadata`: the
training job's final metrics (DescribeTrainingJob's `FinalMetricDataList`, for the job
named in the Train step's `TrainingJob.Arn`), the registered model package's ARN
(`RegisterModel.Arn`) and approval status (DescribeModelPackage), and the endpoint the
deploy Lambda created or updated (its `OutputParameters`). Nothing is stopped from here:
after a timeout or Ctrl-C the execution keeps running on SageMaker.

A failed or stopped execution becomes the error of the failing step's branch, so that
the exit code means what it means for a local run: Train 4 (or the training entry
point's own code, 2 config or 3 data, when the FailureReason carries it, as the training
toolkit's `ExitCode N` does), CreateModel 5, RegisterModel 7, DeployEndpoint 8; a
failure outside any step 8. A timeout is `WaitTimeout` (124, as timeout(1)).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from custseg.errors import (
    ConfigError,
    CustsegError,
    DataError,
    DeployError,
    ModelError,
    RegistryError,
    TrainError,
    WaitTimeout,
)
from custseg.sagemaker.metrics import METRIC_DEFINITIONS

__all__ = ["TERMINAL", "Followed", "StepState", "error_for", "follow", "read_results"]

TERMINAL = ("Succeeded", "Failed", "Stopped")
# the step a failure happened in -> the error branch a local run raises there
STEP_ERRORS: dict[str, type[CustsegError]] = {
    "Train": TrainError, "CreateModel": ModelError, "RegisterModel": RegistryError,
    "DeployEndpoint": DeployError}
# the training entry point's exit codes (custseg.sagemaker.train.main) -> their branch
JOB_EXIT_ERRORS: dict[int, type[CustsegError]] = {
    e.exit_code: e for e in (ConfigError, DataError, TrainError, ModelError)}
EXIT_CODE = re.compile(r"ExitCode:? (\d+)|exit code: (\d+)")


@dataclass(frozen=True)
class StepState:
    """One step as ListPipelineExecutionSteps describes it."""

    name: str
    status: str
    started: datetime | None = None
    ended: datetime | None = None
    failure_reason: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_api(cls, step: dict[str, Any]) -> StepState:
        return cls(name=step["StepName"], status=step.get("StepStatus", "Starting"),
                   started=step.get("StartTime"), ended=step.get("EndTime"),
                   failure_reason=step.get("FailureReason") or None,
                   metadata=step.get("Metadata") or {})

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return (self.ended - self.started).total_seconds()

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status,
                "started": self.started.isoformat() if self.started else None,
                "ended": self.ended.isoformat() if self.ended else None,
                "seconds": self.seconds, "failure_reason": self.failure_reason,
                "metadata": self.metadata}


@dataclass
class Followed:
    """Where an execution got to: its status, its steps and, once read, their results."""

    arn: str
    status: str
    failure_reason: str | None
    steps: list[StepState]
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    training_job: str | None = None
    model_package_arn: str | None = None
    model_approval_status: str | None = None
    endpoint: dict[str, str] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def failed_step(self) -> StepState | None:
        """The first step that failed, else the first that was stopped."""
        for status in ("Failed", "Stopped"):
            for step in self.steps:
                if step.status == status:
                    return step
        return None

    def metadata(self, key: str) -> dict[str, Any]:
        """The `Metadata[key]` of the first step that has it (e.g. "TrainingJob")."""
        for step in self.steps:
            if key in step.metadata:
                return dict(step.metadata[key])
        return {}

    def to_json(self) -> dict[str, Any]:
        return {"execution_arn": self.arn, "status": self.status,
                "failure_reason": self.failure_reason, "seconds": round(self.seconds, 3),
                "steps": {s.name: s.to_json() for s in self.steps},
                "metrics": self.metrics, "training_job": self.training_job,
                "model_package_arn": self.model_package_arn,
                "model_approval_status": self.model_approval_status,
                "endpoint": self.endpoint}


def _steps(sm: Any, arn: str) -> list[StepState]:
    """Every step started so far, in the order they started."""
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = sm.list_pipeline_execution_steps(
            PipelineExecutionArn=arn, SortOrder="Ascending", **({"NextToken": token}
                                                               if token else {}))
        found += page.get("PipelineExecutionSteps", [])
        token = page.get("NextToken")
        if not token:
            break
    steps = [StepState.from_api(s) for s in found]
    return sorted(steps, key=lambda s: (s.started is None, s.started or datetime.min))


def follow(sm: Any, arn: str, *, interval: float, timeout: float,
           on_change: Callable[[StepState], None],
           sleep: Callable[[float], None] = time.sleep,
           clock: Callable[[], float] = time.monotonic) -> Followed:
    """Poll until the execution ends or `timeout` seconds have passed (then the status
    returned is not terminal); `on_change` gets each step whose status changed."""
    start = clock()
    seen: dict[str, str] = {}
    while True:
        described = sm.describe_pipeline_execution(PipelineExecutionArn=arn)
        status = described.get("PipelineExecutionStatus", "Executing")
        steps = _steps(sm, arn)
        for step in steps:
            if seen.get(step.name) != step.status:
                seen[step.name] = step.status
                on_change(step)
        elapsed = clock() - start
        if status in TERMINAL or elapsed >= timeout:
            return Followed(arn, status, described.get("FailureReason") or None, steps,
                            elapsed)
        sleep(min(interval, max(timeout - elapsed, 0.0)))


def read_results(sm: Any, followed: Followed) -> None:
    """The training job's final metrics, the model package and the endpoint, from the
    steps' metadata (whatever the steps got to make)."""
    job_arn = followed.metadata("TrainingJob").get("Arn")
    if job_arn:
        followed.training_job = str(job_arn).rsplit("/", 1)[-1]
        job = sm.describe_training_job(TrainingJobName=followed.training_job)
        wanted = {d["Name"] for d in METRIC_DEFINITIONS}
        followed.metrics = {m["MetricName"]: float(m["Value"])
                            for m in job.get("FinalMetricDataList", [])
                            if m.get("MetricName") in wanted}
    followed.model_package_arn = followed.metadata("RegisterModel").get("Arn")
    if followed.model_package_arn:
        package = sm.describe_model_package(ModelPackageName=followed.model_package_arn)
        followed.model_approval_status = package.get("ModelApprovalStatus")
    outputs = followed.metadata("Lambda").get("OutputParameters") or []
    followed.endpoint = {str(p["Name"]): str(p["Value"]) for p in outputs}


def _job_error(reason: str) -> type[CustsegError] | None:
    found = EXIT_CODE.search(reason)
    if found is None:
        return None
    return JOB_EXIT_ERRORS.get(int(found.group(1) or found.group(2)))


def error_for(followed: Followed, timeout: float) -> CustsegError | None:
    """None when the execution succeeded; else the error a user sees (one line), of the
    branch a local run would raise at the same step."""
    if followed.status == "Succeeded":
        return None
    arn = followed.arn
    if not followed.done:
        return WaitTimeout(
            f"execution {arn} is still {followed.status} after {timeout:g} s (--timeout): it "
            f"keeps running on SageMaker; follow it with `aws sagemaker "
            f"describe-pipeline-execution --pipeline-execution-arn {arn}`")
    step = followed.failed_step()
    if step is None:
        reason = followed.failure_reason or "no reason given"
        return DeployError(f"execution {arn} {followed.status.lower()}: {reason}")
    reason = step.failure_reason or followed.failure_reason or "no reason given"
    kind = STEP_ERRORS.get(step.name.split("-")[0], DeployError)
    if kind is TrainError:
        kind = _job_error(reason) or TrainError
    return kind(f"execution {arn} {followed.status.lower()} at step {step.name} "
                f"({step.status}): {reason}")
