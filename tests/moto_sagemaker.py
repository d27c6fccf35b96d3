"""A moto server process with what moto (5.2.5) lacks for custseg's SageMaker target.

Run as `python tests/moto_sagemaker.py -H HOST -p PORT`. Everything else is plain moto.

**UpdateEndpoint**, as AWS documents it: the endpoint keeps its name and ARN and moves
to the new endpoint config (refused, as by AWS, when the config or the endpoint does not
exist).

**Pipeline executions that run.** moto marks an execution Succeeded the moment it starts
and has no ListPipelineExecutionSteps. Here an execution runs its pipeline definition's
steps one after the other, one stage per ListPipelineExecutionSteps call (a stage: a step
starts, Executing; or it ends, Succeeded or Failed), so a client that polls sees every
state; DescribePipelineExecution reports the execution's status (Executing until the
last step succeeded or one failed) and, once failed, its FailureReason. The listing
holds the steps started so far, newest first (AWS's default order), with the `Metadata`
AWS documents for each step type:

- Training: `TrainingJob.Arn` of a real moto training job whose `FinalMetricDataList`
  holds the step's metric definitions' names with fixed values (0.61, 842.5, 0.55, ...
  in definition order) once the step succeeded;
- Model: `Model.Arn`;
- RegisterModel: `RegisterModel.Arn` of a real moto model package (in its group, created
  when missing) whose container's `ModelDataUrl` is the training job's artifact;
- Lambda: `Lambda.OutputParameters`, what custseg's deploy handler returns for the
  step's project and environment (action `created`).

The `DataFile` parameter selects a deterministic variant, so a test picks one with
`-p data_file=...`:

- `simulate-failure-STEP.csv`: step STEP fails, and with it the execution. A Training
  step's FailureReason is the one the SageMaker training toolkit writes when the entry
  point exits non-zero (`AlgorithmError: ExecuteUserScriptError: ExitCode 3 ...`, the
  code custseg's train entry point gives a data error);
- `simulate-hang.csv`: the first step starts and the execution never goes further.

Drop the parts moto implements when it does.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from moto.core.utils import utcnow
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import (
    FakeEndpoint,
    FakeEndpointConfig,
    FakePipelineExecution,
    SageMakerModelBackend,
)
from moto.sagemaker.responses import ActionResult, SageMakerResponse
from moto.sagemaker.utils import get_pipeline_execution_from_arn

# -- UpdateEndpoint ----------------------------------------------------------------------------


def update_endpoint(self: SageMakerModelBackend, endpoint_name: str,
                    endpoint_config_name: str) -> FakeEndpoint:
    endpoint = self.endpoints.get(endpoint_name)
    if endpoint is None:
        arn = FakeEndpoint.arn_formatter(endpoint_name, self.account_id, self.region_name)
        raise ValidationError(message=f"Could not find endpoint '{arn}'.")
    if endpoint_config_name not in self.endpoint_configs:
        arn = FakeEndpointConfig.arn_formatter(endpoint_config_name, self.account_id,
                                               self.region_name)
        raise ValidationError(message=f"Could not find endpoint configuration '{arn}'.")
    config = self.describe_endpoint_config(endpoint_config_name)
    endpoint.endpoint_config_name = endpoint_config_name
    endpoint.production_variants = endpoint._process_production_variants(
        config["ProductionVariants"])
    endpoint.last_modified_time = utcnow()
    return endpoint


def _respond_update_endpoint(self: SageMakerResponse) -> Any:
    endpoint = self.sagemaker_backend.update_endpoint(
        endpoint_name=self._get_param("EndpointName"),
        endpoint_config_name=self._get_param("EndpointConfigName"),
    )
    return ActionResult({"EndpointArn": endpoint.arn})


# -- pipeline executions that run --------------------------------------------------------------

METRIC_VALUES = (0.61, 842.5, 0.55)
FAIL = re.compile(r"^simulate-failure-(.+)\.csv$")
HANG = "simulate-hang.csv"
PIPELINE_FAILURE = "Step failure: One or multiple steps failed."


@dataclass
class Run:
    """One execution's progress through its definition's steps."""

    steps: list[dict[str, Any]]
    parameters: dict[str, str]
    stage: int = 0
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    training_job: Any = None
    failure: str | None = None

    @property
    def fail_at(self) -> str | None:
        found = FAIL.match(self.parameters.get("DataFile", ""))
        return found.group(1) if found else None

    @property
    def hangs(self) -> bool:
        return self.parameters.get("DataFile") == HANG


def _arn(backend: SageMakerModelBackend, kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{backend.region_name}:{backend.account_id}:{kind}/{name}"


def _start_training(backend: SageMakerModelBackend, run: Run, step: dict[str, Any],
                    job_name: str) -> dict[str, Any]:
    arguments = step["Arguments"]
    specification = copy.deepcopy(arguments["AlgorithmSpecification"])
    job = backend.create_training_job(
        training_job_name=job_name, hyper_parameters={},
        algorithm_specification=copy.deepcopy(specification),
        role_arn=arguments["RoleArn"], input_data_config=[],
        output_data_config=arguments["OutputDataConfig"], resource_config={},
        vpc_config={}, stopping_condition={}, tags=[], enable_network_isolation=False,
        enable_inter_container_traffic_encryption=False, enable_managed_spot_training=False,
        checkpoint_config={}, debug_hook_config={}, debug_rule_configurations=[],
        tensor_board_output_config={}, experiment_config={})
    job.algorithm_specification = specification  # moto replaces the metric definitions
    job.training_job_status = job.secondary_status = "InProgress"
    job.final_metric_data_list = []
    run.training_job = job
    return {"TrainingJob": {"Arn": job.arn}}


def _end_training(run: Run, failure: str | None) -> None:
    job = run.training_job
    if failure is not None:
        job.training_job_status = job.secondary_status = "Failed"
        job.failure_reason = failure
        return
    job.training_job_status = job.secondary_status = "Completed"
    definitions = job.algorithm_specification.get("MetricDefinitions", [])
    job.final_metric_data_list = [
        {"MetricName": d["Name"], "Value": value, "Timestamp": utcnow()}
        for d, value in zip(definitions, METRIC_VALUES, strict=False)]


def _register(backend: SageMakerModelBackend, run: Run, step: dict[str, Any]) -> str:
    arguments = copy.deepcopy(step["Arguments"])
    group = arguments["ModelPackageGroupName"]
    if group not in backend.model_package_groups:
        backend.create_model_package_group(group, "created by the simulated pipeline")
    container = arguments["InferenceSpecification"]["Containers"][0]
    container["ModelDataUrl"] = run.training_job.model_artifacts["S3ModelArtifacts"]
    container["Image"] = str(container.get("Image"))
    return str(backend.create_model_package(
        model_package_name=None, model_package_group_name=group,
        model_package_description="registered by the simulated pipeline",
        inference_specification={"Containers": [container],
                                 **{k: v for k, v in arguments["InferenceSpecification"].items()
                                    if k != "Containers"}},
        validation_specification=None, source_algorithm_specification=None,
        certify_for_marketplace=False, tags=None,
        model_approval_status=arguments.get("ModelApprovalStatus"), metadata_properties=None,
        model_metrics=None, client_token=None, customer_metadata_properties=None,
        drift_check_baselines=None, domain=None, task=None, sample_payload_url=None,
        additional_inference_specifications=None))


def _lambda_outputs(step: dict[str, Any]) -> list[dict[str, str]]:
    """What custseg's deploy handler returns, for the step's project and environment."""
    arguments = step["Arguments"]
    project, environment = arguments["project_name"], arguments["environment"]
    stamp = utcnow().strftime("%Y%m%d-%H%M%S-%f")
    return [{"Name": "action", "Value": "created"},
            {"Name": "endpoint_name", "Value": f"{project}-endpoint-{environment}"},
            {"Name": "endpoint_config_name",
             "Value": f"{project}-endpoint-config-{environment}-{stamp}"}]


def _failure_reason(step: dict[str, Any], run: Run) -> str:
    if step["Type"] == "Training":
        data_file = run.parameters.get("DataFile")
        return ("AlgorithmError: ExecuteUserScriptError:\nExitCode 3\nErrorMessage \"Error: "
                f"data_file: no file {data_file} in the training channel\"\nCommand "
                "\"/usr/bin/python3 train.py\", exit code: 3")
    return f"ClientError: simulated failure of step {step['Name']}"


def _begin(backend: SageMakerModelBackend, execution: FakePipelineExecution, run: Run,
           step: dict[str, Any]) -> None:
    execution_id = execution.arn.rsplit("/", 1)[-1]
    name = step["Name"]
    metadata: dict[str, Any] = {}
    if step["Type"] == "Training":
        metadata = _start_training(backend, run, step, f"pipelines-{execution_id}-{name}")
    elif step["Type"] == "Lambda":
        metadata = {"Lambda": {"Arn": step.get("FunctionArn")}}
    run.records[name] = {"StepName": name, "StepDisplayName": name, "StartTime": utcnow(),
                         "StepStatus": "Executing", "AttemptCount": 1, "Metadata": metadata}


def _end(backend: SageMakerModelBackend, execution: FakePipelineExecution, run: Run,
         step: dict[str, Any]) -> None:
    record = run.records[step["Name"]]
    record["EndTime"] = utcnow()
    failure = _failure_reason(step, run) if run.fail_at == step["Name"] else None
    if step["Type"] == "Training":
        _end_training(run, failure)
    if failure is not None:
        record |= {"StepStatus": "Failed", "FailureReason": failure}
        execution.pipeline_execution_status, run.failure = "Failed", PIPELINE_FAILURE
        return
    record["StepStatus"] = "Succeeded"
    execution_id = execution.arn.rsplit("/", 1)[-1]
    if step["Type"] == "Model":
        record["Metadata"] = {"Model": {"Arn": _arn(
            backend, "model", f"pipelines-{execution_id}-{step['Name']}".lower())}}
    elif step["Type"] == "RegisterModel":
        record["Metadata"] = {"RegisterModel": {"Arn": _register(backend, run, step)}}
    elif step["Type"] == "Lambda":
        record["Metadata"]["Lambda"]["OutputParameters"] = _lambda_outputs(step)
    if step is run.steps[-1]:
        execution.pipeline_execution_status = "Succeeded"


def advance(backend: SageMakerModelBackend, execution: FakePipelineExecution) -> None:
    """One stage further: the next step starts, or the one executing ends."""
    run: Run | None = getattr(execution, "custseg_run", None)
    if run is None or execution.pipeline_execution_status != "Executing":
        return
    if run.hangs and run.stage >= 1:
        return
    index, ends = divmod(run.stage, 2)
    run.stage += 1
    (_end if ends else _begin)(backend, execution, run, run.steps[index])
    execution.last_modified_time = utcnow()


_moto_start = SageMakerModelBackend.start_pipeline_execution
_moto_describe = SageMakerModelBackend.describe_pipeline_execution


def start_pipeline_execution(self: SageMakerModelBackend, pipeline_name: str,
                             *args: Any, **kwargs: Any) -> dict[str, str]:
    started = _moto_start(self, pipeline_name, *args, **kwargs)
    execution = get_pipeline_execution_from_arn(self.pipelines, started["PipelineExecutionArn"])
    definition = json.loads(execution.pipeline_definition_for_execution)
    given = {p["Name"]: p["Value"] for p in execution.pipeline_parameters or []}
    defaults = {p["Name"]: str(p.get("DefaultValue")) for p in definition.get("Parameters", [])}
    execution.custseg_run = Run(steps=definition["Steps"], parameters=defaults | given)
    execution.pipeline_execution_status = "Executing"
    return started


def describe_pipeline_execution(self: SageMakerModelBackend,
                                pipeline_execution_arn: str) -> dict[str, Any]:
    execution = get_pipeline_execution_from_arn(self.pipelines, pipeline_execution_arn)
    described = _moto_describe(self, pipeline_execution_arn)
    run: Run | None = getattr(execution, "custseg_run", None)
    if run is not None and run.failure:
        described["FailureReason"] = run.failure
    return described


def list_pipeline_execution_steps(self: SageMakerModelBackend,
                                  pipeline_execution_arn: str) -> dict[str, Any]:
    execution = get_pipeline_execution_from_arn(self.pipelines, pipeline_execution_arn)
    advance(self, execution)
    run: Run | None = getattr(execution, "custseg_run", None)
    records = list(run.records.values()) if run is not None else []
    return {"PipelineExecutionSteps": sorted(records, key=lambda r: r["StartTime"],
                                             reverse=True)}


def _respond_list_steps(self: SageMakerResponse) -> Any:
    return ActionResult(self.sagemaker_backend.list_pipeline_execution_steps(
        self._get_param("PipelineExecutionArn")))


SageMakerModelBackend.update_endpoint = update_endpoint  # type: ignore[attr-defined]
SageMakerResponse.update_endpoint = _respond_update_endpoint  # type: ignore[attr-defined]
SageMakerModelBackend.start_pipeline_execution = start_pipeline_execution  # type: ignore[method-assign]
SageMakerModelBackend.describe_pipeline_execution = describe_pipeline_execution  # type: ignore[method-assign]
SageMakerModelBackend.list_pipeline_execution_steps = list_pipeline_execution_steps  # type: ignore[attr-defined]
SageMakerResponse.list_pipeline_execution_steps = _respond_list_steps  # type: ignore[attr-defined]

if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])
