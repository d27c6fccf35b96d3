"""A SageMaker model package ARN, and the model archive it registers.

`custseg models import ARN` takes a model package version's ARN
(`arn:aws:sagemaker:REGION:ACCOUNT:model-package/NAME/VERSION`, as the pipeline's
RegisterModel step makes and `run --target sagemaker --wait` prints): DescribeModelPackage,
in the ARN's region, gives `InferenceSpecification.Containers[0].ModelDataUrl`, the
training job's `model.tar.gz`, which the archive import then reads. A malformed ARN is
refused before any call, naming the part that is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from custseg.errors import ConfigError, ModelError, RegistryError

__all__ = ["PackageArn", "PackageSource", "is_package_arn", "parse_package_arn",
           "source_of"]

FORM = "arn:aws:sagemaker:REGION:ACCOUNT:model-package/NAME/VERSION"
PARTITION = re.compile(r"^aws(-[a-z]+)*$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
ACCOUNT = re.compile(r"^\d{12}$")
NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


@dataclass(frozen=True)
class PackageArn:
    arn: str
    region: str
    account: str
    name: str
    version: int | None  # None: an unversioned model package


@dataclass(frozen=True)
class PackageSource:
    """What the package says about its model: where the archive is, its approval."""

    arn: str
    model_data_url: str
    approval_status: str | None


def is_package_arn(text: str) -> bool:
    """Whether `text` is meant as an ARN (then it must parse), not a path or URI."""
    return text.startswith("arn:")


def _check(part: str, value: str, pattern: re.Pattern[str], expected: str, arn: str) -> None:
    if not pattern.match(value):
        raise ConfigError(f"model package ARN {arn!r}: {part} {value!r} is not {expected} "
                          f"(expected {FORM})")


def parse_package_arn(arn: str) -> PackageArn:
    """The parts of a model package ARN; ConfigError naming the part that is wrong."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        raise ConfigError(f"model package ARN {arn!r}: expected six ':'-separated parts, "
                          f"{FORM}")
    _, partition, service, region, account, resource = parts
    _check("partition", partition, PARTITION, "an AWS partition (aws, aws-cn, ...)", arn)
    if service != "sagemaker":
        raise ConfigError(f"model package ARN {arn!r}: service {service!r} is not sagemaker "
                          f"(expected {FORM})")
    _check("region", region, REGION, "a region such as us-east-1", arn)
    _check("account", account, ACCOUNT, "a 12-digit account id", arn)
    kind, _, path = resource.partition("/")
    if kind == "model-package-group":
        raise ConfigError(f"model package ARN {arn!r} names a model package group: name one "
                          f"of its versions, {FORM} (aws sagemaker list-model-packages "
                          f"--model-package-group-name {path} lists them)")
    if kind != "model-package" or not path:
        raise ConfigError(f"model package ARN {arn!r}: resource {resource!r} is not "
                          f"model-package/NAME/VERSION (expected {FORM})")
    name, _, version = path.partition("/")
    _check("package name", name, NAME, "letters, digits and hyphens (at most 63)", arn)
    if version and not (version.isdigit() and int(version) > 0):
        raise ConfigError(f"model package ARN {arn!r}: version {version!r} is not a positive "
                          f"integer (expected {FORM})")
    return PackageArn(arn, region, account, name, int(version) if version else None)


def _model_data_url(arn: str, described: dict[str, Any]) -> str:
    containers = (described.get("InferenceSpecification") or {}).get("Containers") or []
    url = containers[0].get("ModelDataUrl") if containers else None
    if not url:
        found = sorted(containers[0]) if containers else "no container"
        raise ModelError(f"model package {arn} has no model archive: "
                         f"InferenceSpecification.Containers[0].ModelDataUrl is missing "
                         f"(found: {found}); custseg imports the model.tar.gz a training "
                         f"job wrote, as the pipeline's RegisterModel step registers it")
    return str(url)


def source_of(arn: str) -> PackageSource:
    """DescribeModelPackage: the package's archive URL and approval status."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    parsed = parse_package_arn(arn)
    try:
        described = boto3.client("sagemaker", region_name=parsed.region).describe_model_package(
            ModelPackageName=arn)
    except NoCredentialsError as exc:
        raise ConfigError("models import of a model package ARN needs AWS credentials "
                          "(aws configure, AWS_PROFILE or the AWS_* variables)") from exc
    except ClientError as exc:
        if re.search(r"not found|does not exist", str(exc), re.IGNORECASE):
            raise RegistryError(f"model package {arn} not found on SageMaker (region "
                                f"{parsed.region}, account {parsed.account})") from exc
        raise RegistryError(f"describing model package {arn} failed: {exc}") from exc
    except BotoCoreError as exc:
        raise RegistryError(f"describing model package {arn} failed: {exc}") from exc
    return PackageSource(arn, _model_data_url(arn, described),
                         described.get("ModelApprovalStatus"))
