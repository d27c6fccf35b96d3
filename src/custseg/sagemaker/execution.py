"""`custseg run --target sagemaker`: start an execution of the deployed pipeline.

The pipeline on SageMaker must be the one the config describes: its definition is built
offline and compared with the deployed one, pipeline parameters' defaults aside (they
are passed with the execution, so `-p n_clusters=5` needs no redeploy). Any other
difference (features, tuning, roles, instance types baked into the registration, ...)
refuses the run and names it: `custseg deploy --target sagemaker` first. The execution
is started with the config's five parameters; its ARN is returned, and `wait` follows
it to its end (`custseg.sagemaker.follow`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from custseg.config import Config
from custseg.errors import ConfigError, DeployError
from custseg.sagemaker.follow import Followed, StepState, follow, read_results
from custseg.sagemaker.pipeline import definition, names
from custseg.sagemaker.upsert import changes

__all__ = ["parameters", "start", "wait"]


def parameters(cfg: Config) -> list[dict[str, str]]:
    """The execution's PipelineParameters, from the config (with `-p` overrides)."""
    return [{"Name": "NClusters", "Value": str(cfg.n_clusters)},
            {"Name": "NComponents", "Value": str(cfg.n_components)},
            {"Name": "DataFile", "Value": str(cfg.data_file)},
            {"Name": "TrainingInstanceType", "Value": cfg.training_instance_type},
            {"Name": "InferenceInstanceType", "Value": cfg.inference_instance_type}]


def _without_defaults(d: dict[str, Any]) -> dict[str, Any]:
    return d | {"Parameters": [{k: v for k, v in p.items() if k != "DefaultValue"}
                               for p in d.get("Parameters", [])]}


def start(cfg: Config) -> dict[str, Any]:
    """Start an execution; returns its ARN, status, pipeline and parameters."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    wanted = definition(cfg)  # validates the config, offline
    pipeline = names(cfg)["pipeline"]
    try:
        sm = boto3.client("sagemaker", region_name=cfg.region)
        try:
            deployed = sm.describe_pipeline(PipelineName=pipeline)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFound" or re.search(
                    r"does not exist|Could not find pipeline", str(exc)):
                raise ConfigError(f"pipeline {pipeline} is not on SageMaker: run `custseg "
                                  f"deploy --target sagemaker` first") from exc
            raise
        differ = changes(_without_defaults(json.loads(deployed["PipelineDefinition"])),
                         _without_defaults(wanted))
        if differ:
            raise ConfigError(f"pipeline {pipeline} on SageMaker differs from the config "
                              f"({', '.join(differ)}): run `custseg deploy --target "
                              f"sagemaker` first")
        given = parameters(cfg)
        started = sm.start_pipeline_execution(
            PipelineName=pipeline, PipelineParameters=given,
            PipelineExecutionDescription="started by custseg run --target sagemaker")
        arn = started["PipelineExecutionArn"]
        status = sm.describe_pipeline_execution(PipelineExecutionArn=arn).get(
            "PipelineExecutionStatus")
    except NoCredentialsError as exc:
        raise ConfigError("run --target sagemaker needs AWS credentials (aws configure, "
                          "AWS_PROFILE or the AWS_* variables)") from exc
    except (ClientError, BotoCoreError) as exc:
        raise DeployError(f"starting pipeline {pipeline} on SageMaker failed: {exc}") from exc
    return {"pipeline": pipeline, "execution_arn": arn, "status": status,
            "parameters": {p["Name"]: p["Value"] for p in given}}


def wait(cfg: Config, arn: str, *, interval: float, timeout: float,
         on_change: Callable[[StepState], None]) -> Followed:
    """Follow the execution `arn` until it ends or `timeout` seconds have passed; once it
    has ended, with the training job's metrics, the model package and the endpoint."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        sm = boto3.client("sagemaker", region_name=cfg.region)
        followed = follow(sm, arn, interval=interval, timeout=timeout, on_change=on_change)
    except (ClientError, BotoCoreError) as exc:
        raise DeployError(f"following execution {arn} failed: {exc} (the execution keeps "
                          f"running on SageMaker)") from exc
    if not followed.done:
        return followed
    try:
        read_results(sm, followed)
    except (ClientError, BotoCoreError) as exc:
        if followed.status != "Succeeded":
            return followed  # what the failed steps left is partial; the failure is the news
        raise DeployError(f"execution {arn} succeeded, but reading its results failed: "
                          f"{exc}") from exc
    return followed

