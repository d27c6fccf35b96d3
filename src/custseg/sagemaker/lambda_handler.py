"""The deploy step's Lambda: create or update the endpoint on the new model (the seed's
Lambda, with custseg's stable names, as the local DeployEndpoint does).

Each call creates a new endpoint config `{project}-endpoint-config-{environment}-
{timestamp}` for the model, then creates the endpoint `{project}-endpoint-{environment}`
on it when absent, else updates the endpoint to it (zero downtime: SageMaker keeps the
old config serving until the new one is InService). A repeat for the model and instance
type the endpoint already runs on changes nothing. The endpoint may be Updating from a
previous call: SageMaker refuses an update then, and the handler says so.

This file is uploaded to Lambda on its own: it uses only the standard library and
boto3 (which the Lambda runtime ships). The event, from the pipeline's LambdaStep:
`{"model_name", "project_name", "environment", "instance_type", "instance_count"?}`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

__all__ = ["config_name", "create_or_update", "endpoint_name", "handler"]

NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
REQUIRED = ("model_name", "project_name", "environment", "instance_type")


def endpoint_name(project: str, environment: str) -> str:
    return f"{project}-endpoint-{environment}"


def config_name(project: str, environment: str, when: datetime | None = None) -> str:
    when = when or datetime.now(UTC)
    return f"{project}-endpoint-config-{environment}-{when:%Y%m%d-%H%M%S-%f}"


def _checked(name: str, what: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"{what} {name!r} is not a valid SageMaker name (letters, digits "
                         f"and hyphens, at most 63 characters): shorten project_name or "
                         f"environment")
    return name


def _current(client: Any, endpoint: str) -> dict[str, Any] | None:
    try:
        return dict(client.describe_endpoint(EndpointName=endpoint))
    except client.exceptions.ClientError as exc:
        message = str(exc.response.get("Error", {}).get("Message", ""))
        if "Could not find endpoint" in message or "does not exist" in message:
            return None
        raise


def create_or_update(client: Any, *, model_name: str, project: str, environment: str,
                     instance_type: str, instance_count: int = 1,
                     when: datetime | None = None) -> dict[str, Any]:
    """Point the endpoint at `model_name`; returns what was done and the names."""
    endpoint = _checked(endpoint_name(project, environment), "endpoint name")
    current = _current(client, endpoint)
    if current is not None:
        running = client.describe_endpoint_config(
            EndpointConfigName=current["EndpointConfigName"])
        variants = running.get("ProductionVariants", [])
        if len(variants) == 1 and variants[0].get("ModelName") == model_name \
                and variants[0].get("InstanceType") == instance_type \
                and int(variants[0].get("InitialInstanceCount", 1)) == instance_count:
            return {"action": "unchanged", "endpoint_name": endpoint,
                    "endpoint_config_name": current["EndpointConfigName"],
                    "model_name": model_name}
        if current.get("EndpointStatus") in ("Creating", "Updating", "RollingBack"):
            raise RuntimeError(f"endpoint {endpoint} is {current['EndpointStatus']}: it can be "
                               f"updated once it is InService; run the pipeline again then")
    config = _checked(config_name(project, environment, when), "endpoint config name")
    client.create_endpoint_config(
        EndpointConfigName=config,
        ProductionVariants=[{
            "VariantName": "AllTraffic",
            "ModelName": model_name,
            "InitialInstanceCount": instance_count,
            "InstanceType": instance_type,
            "InitialVariantWeight": 1.0,
        }],
    )
    if current is None:
        client.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
        action = "created"
    else:
        client.update_endpoint(EndpointName=endpoint, EndpointConfigName=config)
        action = "updated"
    return {"action": action, "endpoint_name": endpoint, "endpoint_config_name": config,
            "model_name": model_name,
            "previous_endpoint_config_name": None if current is None
            else current["EndpointConfigName"]}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point (`lambda_handler.handler`)."""
    import boto3

    missing = [k for k in REQUIRED if not event.get(k)]
    if missing:
        raise ValueError(f"the deploy event lacks {', '.join(missing)} (the pipeline's "
                         f"LambdaStep passes {', '.join(REQUIRED)})")
    count = int(event.get("instance_count") or 1)
    result = create_or_update(
        boto3.client("sagemaker"),
        model_name=str(event["model_name"]),
        project=str(event["project_name"]),
        environment=str(event["environment"]),
        instance_type=str(event["instance_type"]),
        instance_count=count,
    )
    return {"statusCode": 200, **result}
