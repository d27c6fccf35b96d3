"""`custseg models import ARN`: a SageMaker model package into the local store, through
the real CLI against a real moto server (the package created in moto's SageMaker, its
model.tar.gz, from a real run of the training entry point, in moto's S3)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from test_inference import CUSTSEG, Project
from test_sagemaker import Job, import_project, job, pack  # noqa: F401 - job: a fixture

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-py312-cpu-py3"
GROUP = "clustering-model-model-group"
RECORDS = [{"Age": 30, "Income": 50000, "Purchases": 10, "Gender": "Male"},
           {"Age": 62, "Income": 180000, "Purchases": 3, "Gender": "Female"}]


@pytest.fixture
def sm(moto_server: str) -> Any:
    import boto3

    return boto3.client("sagemaker", endpoint_url=moto_server, region_name="us-east-1")


def _package(sm: Any, container: dict[str, str], status: str = "Approved") -> str:
    """A model package version in a fresh group, as RegisterModel makes one."""
    group = f"shop-{uuid.uuid4().hex[:8]}-model-group"
    sm.create_model_package_group(ModelPackageGroupName=group)
    return str(sm.create_model_package(
        ModelPackageGroupName=group, ModelApprovalStatus=status,
        InferenceSpecification={"Containers": [{"Image": IMAGE, **container}],
                                "SupportedContentTypes": ["application/json", "text/csv"],
                                "SupportedResponseMIMETypes": ["application/json"]},
    )["ModelPackageArn"])


def _cli(project: Project, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    from conftest import AWS_ENV

    return project.cli(*args, env={**AWS_ENV, "AWS_ENDPOINT_URL": url})


def test_a_model_package_arn_is_imported_with_its_arn_and_status_and_then_predicts(
        job: Job, tmp_path: Path, moto_server: str, make_bucket: Any, sm: Any) -> None:  # noqa: F811
    import custseg

    archive = pack(job.model_dir, tmp_path / "model.tar.gz")
    bucket = make_bucket({"shop/models/job-1/output/model.tar.gz": archive.read_bytes()})
    url = f"s3://{bucket}/shop/models/job-1/output/model.tar.gz"
    arn = _package(sm, {"ModelDataUrl": url})
    project = import_project(tmp_path / "p", s3={"endpoint_url": moto_server})

    result = _cli(project, moto_server, "models", "import", arn)
    assert result.returncode == 0, result.stderr
    assert f"Model {GROUP}/1: PendingManualApproval (imported from {arn})" in result.stdout
    assert "On SageMaker: Approved (not carried over: approve it here with `custseg models " \
           "approve 1`)" in result.stdout
    listed = json.loads(project.cli("models", "list", "--json").stdout)
    assert [(p["version"], p["approval_status"]) for p in listed] == [
        (1, "PendingManualApproval")]
    lineage = listed[0]["lineage"]
    assert (lineage["imported_from"], lineage["model_package_arn"]) == (arn, arn)
    assert lineage["model_package_approval_status"] == "Approved"
    assert lineage["model_data_url"] == url
    assert lineage["trained_by_execution"] == "custseg-test-job"
    described = project.cli("models", "describe", "1")
    assert described.returncode == 0, described.stderr
    assert f"Imported from: {arn} (on SageMaker: Approved)" in described.stdout

    data, out = tmp_path / "in.csv", tmp_path / "out.csv"
    data.write_text("Age,Income,Purchases,Gender\n30,50000,10,Male\n62,180000,3,Female\n")
    predicted = project.cli("predict", "--model", f"{GROUP}/1", "--input", str(data),
                            "--output", str(out))
    assert predicted.returncode == 0, predicted.stderr
    expected = custseg.load_model(str(job.model_dir)).predict(RECORDS)
    assert [int(r["cluster"]) for r in csv.DictReader(out.open())] == [int(c) for c in expected]
    report = project.cli("report", f"{GROUP}/1", "-o", str(tmp_path / "report.html"))
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "report.html").stat().st_size > 10_000


ACCOUNT = "123456789012"


@pytest.mark.parametrize(("arn", "says"), [
    ("arn:aws:sagemaker:us-east-1", "expected six ':'-separated parts"),
    (f"arn:aws:s3:us-east-1:{ACCOUNT}:model-package/shop/1", "service 's3' is not sagemaker"),
    (f"arn:aws:sagemaker:useast1:{ACCOUNT}:model-package/shop/1",
     "region 'useast1' is not a region such as us-east-1"),
    ("arn:aws:sagemaker:us-east-1:12345:model-package/shop/1",
     "account '12345' is not a 12-digit account id"),
    (f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model/shop",
     "resource 'model/shop' is not model-package/NAME/VERSION"),
    (f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model-package-group/shop",
     "names a model package group: name one of its versions"),
    (f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model-package/shop_ml/1",
     "package name 'shop_ml' is not letters, digits and hyphens"),
    (f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model-package/shop/one",
     "version 'one' is not a positive integer"),
])
def test_a_malformed_arn_is_refused_naming_the_part(tmp_path: Path, arn: str,
                                                    says: str) -> None:
    project = import_project(tmp_path / "p")
    result = project.cli("models", "import", arn)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert says in " ".join(result.stderr.split())
    assert json.loads(project.cli("models", "list", "--json").stdout) == []


def test_without_credentials_the_import_says_what_it_needs(tmp_path: Path) -> None:
    project = import_project(tmp_path / "p")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE":
            str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true", "HOME": str(tmp_path)}
    result = subprocess.run(
        [str(CUSTSEG), "models", "import", f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:"
         "model-package/shop-model-group/1", "-c", str(project.config)],
        cwd=project.root, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "needs AWS credentials" in " ".join(result.stderr.split())


def test_an_unknown_package_and_one_without_model_data_are_refused(
        tmp_path: Path, moto_server: str, sm: Any) -> None:
    project = import_project(tmp_path / "p", s3={"endpoint_url": moto_server})
    missing = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model-package/nobody-model-group/7"
    result = _cli(project, moto_server, "models", "import", missing)
    assert result.returncode == 7, result.stderr
    assert f"model package {missing} not found on SageMaker (region us-east-1, account " \
           f"{ACCOUNT})" in " ".join(result.stderr.split())
    bare = _package(sm, {})
    result = _cli(project, moto_server, "models", "import", bare)
    assert result.returncode == 5, result.stderr
    assert "Traceback" not in result.stderr
    assert f"model package {bare} has no model archive: InferenceSpecification.Containers[0]" \
           ".ModelDataUrl is missing (found: ['Image'])" in " ".join(result.stderr.split())
    assert json.loads(project.cli("models", "list", "--json").stdout) == []
