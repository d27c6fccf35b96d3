"""`custseg deploy --target sagemaker`: put the pipeline and what it runs on AWS.

In order: the source tarball to `s3://{bucket}/{project}/code/source.tar.gz`; the deploy
Lambda `{project}-deploy-endpoint-{environment}` created, or its code updated; the
pipeline `{project}-pipeline-{environment}` created, or updated when its definition
changed (its description carries custseg's version number of it, so a repeat with an
unchanged config is reported as up to date). boto3 finds credentials and endpoints as
usual (`AWS_PROFILE`, `AWS_ENDPOINT_URL`, ...); without credentials it says so.
"""

from __future__ import annotations

import io
import json
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from custseg.config import Config
from custseg.errors import ConfigError, DeployError
from custseg.sagemaker.pipeline import definition, names, package_source

__all__ = ["changes", "upsert"]

VERSION = re.compile(r"custseg pipeline v(\d+)")


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two definitions: parameters and steps by name, and the rest."""
    out = []
    for key, label in (("Parameters", "parameter"), ("Steps", "step")):
        a = {x["Name"]: x for x in old.get(key, [])}
        b = {x["Name"]: x for x in new.get(key, [])}
        out += [f"{label} {name}" for name in sorted(set(a) | set(b)) if a.get(name) != b.get(name)]
    rest = sorted(k for k in set(old) | set(new)
                  if k not in ("Parameters", "Steps") and old.get(k) != new.get(k))
    return out + rest


def _lambda_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(Path(__file__).with_name("lambda_handler.py"), "lambda_handler.py")
    return buf.getvalue()


def _upsert_lambda(client: Any, cfg: Config, name: str) -> None:
    code = _lambda_zip()
    try:
        client.get_function(FunctionName=name)
    except client.exceptions.ResourceNotFoundException:
        client.create_function(
            FunctionName=name, Runtime="python3.12", Role=cfg.lambda_role_arn,
            Handler="lambda_handler.handler", Code={"ZipFile": code}, Timeout=60,
            Description=f"custseg: create or update the endpoint {names(cfg)['endpoint']}")
        return
    client.update_function_code(FunctionName=name, ZipFile=code)


def _aws(cfg: Config, service: str) -> Any:
    import boto3

    return boto3.client(service, region_name=cfg.region)


def upsert(cfg: Config) -> tuple[int, bool, list[str]]:
    """Upload, upsert the Lambda and the pipeline: (version, whether new, what changed)."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    new = definition(cfg)  # validates the config first, offline
    n = names(cfg)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            source = package_source(Path(tmp) / "source.tar.gz")
            bucket, key = n["source"].removeprefix("s3://").split("/", 1)
            _aws(cfg, "s3").upload_file(str(source), bucket, key)
        _upsert_lambda(_aws(cfg, "lambda"), cfg, n["lambda"])
        sm = _aws(cfg, "sagemaker")
        body = json.dumps(new)
        try:
            current = sm.describe_pipeline(PipelineName=n["pipeline"])
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code != "ResourceNotFound" and not re.search(
                    r"does not exist|Could not find pipeline", str(exc)):
                raise
            sm.create_pipeline(PipelineName=n["pipeline"], PipelineDefinition=body,
                               PipelineDescription="custseg pipeline v1",
                               RoleArn=cfg.role_arn)
            return 1, True, []
        found = VERSION.search(current.get("PipelineDescription") or "")
        version = int(found.group(1)) if found else 0
        changed = changes(json.loads(current["PipelineDefinition"]), new)
        if not changed and current.get("RoleArn") == cfg.role_arn:
            return version, False, []
        sm.update_pipeline(PipelineName=n["pipeline"], PipelineDefinition=body,
                           PipelineDescription=f"custseg pipeline v{version + 1}",
                           RoleArn=cfg.role_arn)
        return version + 1, True, changed or ["role_arn"]
    except NoCredentialsError as exc:
        raise ConfigError("deploy --target sagemaker needs AWS credentials (aws configure, "
                          "AWS_PROFILE or the AWS_* variables); --dry-run needs none") from exc
    except (ClientError, BotoCoreError) as exc:
        raise DeployError(f"deploying pipeline {n['pipeline']} to SageMaker failed: {exc}"
                          ) from exc
