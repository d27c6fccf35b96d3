"""A moto server process with SageMaker's UpdateEndpoint, which moto (5.2.5) lacks.

Run as `python tests/moto_sagemaker.py -H HOST -p PORT`. It adds the one operation to
moto's own SageMaker backend, as AWS documents it: the endpoint keeps its name and ARN
and moves to the new endpoint config (refused, as by AWS, when the config or the
endpoint does not exist); everything else is plain moto. Drop this file when moto
implements update_endpoint.
"""

from __future__ import annotations

import sys
from typing import Any

from moto.core.utils import utcnow
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import FakeEndpoint, FakeEndpointConfig, SageMakerModelBackend
from moto.sagemaker.responses import ActionResult, SageMakerResponse


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


def _respond(self: SageMakerResponse) -> Any:
    endpoint = self.sagemaker_backend.update_endpoint(
        endpoint_name=self._get_param("EndpointName"),
        endpoint_config_name=self._get_param("EndpointConfigName"),
    )
    return ActionResult({"EndpointArn": endpoint.arn})


SageMakerModelBackend.update_endpoint = update_endpoint  # type: ignore[attr-defined]
SageMakerResponse.update_endpoint = _respond  # type: ignore[attr-defined]

if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])
