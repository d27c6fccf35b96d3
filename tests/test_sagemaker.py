"""The SageMaker target without AWS, on real parts: the training entry point in a
subprocess under a simulated /opt/ml layout, its artifact loaded and scored by the real
CLI, the inference functions against a real `custseg serve` process, the Lambda
handler against a real moto server through a real boto3 client, and `custseg models
import` of the job's model.tar.gz (local and from moto's S3). The pipeline definition and
its deploy are in test_sagemaker_pipeline.py."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pytest

from custseg.core.sample import generate_customers
from test_inference import CUSTSEG, RECORD, Project, make_project, request, wait_for

ENDPOINT = "clustering-model-endpoint-dev"
CONFIG = {"random_state": 0, "features": {"transform": "auto"}, "tuning": {"n_init": 4}}


@dataclass
class Job:
    root: Path
    result: subprocess.CompletedProcess[str]

    @property
    def model_dir(self) -> Path:
        return self.root / "model"


def opt_ml(root: Path, table: Any, hyperparameters: dict[str, str]) -> dict[str, str]:
    """The /opt/ml layout of a training job under `root`, and its SM_* variables."""
    (root / "input" / "data" / "training").mkdir(parents=True)
    (root / "input" / "config").mkdir(parents=True)
    (root / "model").mkdir()
    pacsv.write_csv(table, root / "input" / "data" / "training" / "customers.csv")
    # as the SDK writes them for a framework estimator: every value JSON-encoded
    stored = {k: json.dumps(v) for k, v in hyperparameters.items()}
    stored |= {"sagemaker_program": json.dumps("train.py"),
               "sagemaker_submit_directory": json.dumps("s3://bucket/source.tar.gz")}
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(stored))
    return {
        "SM_CHANNEL_TRAINING": str(root / "input" / "data" / "training"),
        "SM_MODEL_DIR": str(root / "model"),
        "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
        "SM_OUTPUT_DIR": str(root / "output"),
        "SM_INPUT_CONFIG_DIR": str(root / "input" / "config"),
        "SM_TRAINING_ENV": json.dumps({"job_name": "custseg-test-job"}),
    }


def run_job(root: Path, table: Any, argv: list[str],
            hyperparameters: dict[str, str] | None = None) -> Job:
    env = {**os.environ, **opt_ml(root, table, hyperparameters or {})}
    result = subprocess.run([sys.executable, "-m", "custseg.sagemaker.train", *argv],
                            capture_output=True, text=True, timeout=300, env=env, check=False)
    return Job(root, result)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """`custseg run` then `custseg serve` on the same data the job trains on."""
    project = make_project(tmp_path_factory.mktemp("local"))
    import yaml

    cfg = yaml.safe_load(project.config.read_text()) | CONFIG
    project.config.write_text(yaml.safe_dump(cfg))
    result = project.cli("run")
    assert result.returncode == 0, result.stderr
    proc = subprocess.Popen([str(CUSTSEG), "serve", "-c", str(project.config)],
                            cwd=project.root, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(project.url)
        yield project
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Job:
    """The training entry point on the same 2,000 customers as `local` (make_project)."""
    table, _ = generate_customers(2000, segments=3, seed=1)
    job = run_job(tmp_path_factory.mktemp("job") / "opt" / "ml", table,
                  ["--n-clusters", "3", "--n-components", "1", "--data-file", "customers.csv",
                   "--custseg-config", json.dumps(CONFIG)])
    assert job.result.returncode == 0, job.result.stderr
    return job


# -- the training entry point ----------------------------------------------------------------

def test_training_job_writes_a_verified_artifact_that_scores_like_a_local_run(
        job: Job, local: Project) -> None:
    import custseg
    from test_inference import model_of

    sm, mine = custseg.load_model(str(job.model_dir)), model_of(local)
    assert sorted(p.name for p in job.model_dir.iterdir()) == [
        "arrays.npz", "manifest.json", "model.json"]
    assert sm.k == mine.k == 3
    assert sm.meta["execution_id"] == "custseg-test-job"
    assert sm.meta["parameters"]["n_components"] == 1
    assert sm.meta["parameters"]["data_uri"].endswith("input/data/training")
    records = [RECORD, {"Age": 62, "Income": 180000, "Purchases": 3, "Gender": "Female"},
               {"Age": 25, "Income": None, "Purchases": 35, "Gender": "Other"}]
    assert list(sm.predict(records)) == list(mine.predict(records))
    assert sm.meta["segment_names"] == mine.meta["segment_names"]
    assert sm.meta["metrics"]["silhouette"] == mine.meta["metrics"]["silhouette"]


def test_the_cli_predicts_with_the_training_jobs_artifact(job: Job, tmp_path: Path) -> None:
    data = tmp_path / "in.csv"
    data.write_text("Age,Income,Purchases,Gender\n30,50000,10,Male\n62,180000,3,Female\n")
    out = tmp_path / "out.csv"
    result = subprocess.run([str(CUSTSEG), "predict", "--model", str(job.model_dir),
                             "--input", str(data), "--output", str(out)],
                            capture_output=True, text=True, timeout=120, check=False,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(out.read_text().strip().splitlines()) == 3


def test_metric_definitions_match_the_training_log(job: Job) -> None:
    from custseg.sagemaker.metrics import METRIC_DEFINITIONS

    metrics = json.loads((job.root / "output" / "data" / "metrics.json").read_text())
    expected = {"silhouette_score": metrics["silhouette"]["value"],
                "calinski_harabasz_score": metrics["calinski_harabasz"],
                "davies_bouldin_score": metrics["davies_bouldin"]}
    for definition in METRIC_DEFINITIONS:
        found = re.findall(definition["Regex"], job.result.stdout)
        assert len(found) == 1, (definition, job.result.stdout)
        assert float(found[0]) == pytest.approx(expected[definition["Name"]], abs=1e-6)


def test_hyperparameters_json_is_read_when_argv_is_empty(tmp_path: Path) -> None:
    table, _ = generate_customers(600, segments=3, seed=2)
    job = run_job(tmp_path / "ml", table, [],
                  {"n-clusters": "4", "n-components": "2", "data-file": "customers.csv"})
    assert job.result.returncode == 0, job.result.stderr
    import custseg

    model = custseg.load_model(str(job.model_dir))
    assert model.k == 4
    assert model.projection.n_components == 2


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["--n-clusters", "1"], 2, "n_clusters: expected an integer >= 2"),
    (["--max-depth", "3"], 2, "training job argument '--max-depth'"),
    (["--custseg-config", '{"engine": "spark"}'], 2, "engine 'spark' cannot run"),
    (["--custseg-config", '{"n_clusterz": 3}'], 2, "did you mean 'n_clusters'"),
    (["--data-file", "missing.csv"], 3, "missing.csv"),
])
def test_a_bad_job_fails_with_one_line_and_a_failure_file(
        tmp_path: Path, argv: list[str], code: int, message: str) -> None:
    table, _ = generate_customers(200, segments=2, seed=3)
    job = run_job(tmp_path / "ml", table, argv)
    assert job.result.returncode == code, job.result.stderr
    assert "Traceback" not in job.result.stderr
    assert message in job.result.stderr
    assert message in (job.root / "output" / "failure").read_text()
    assert not (job.model_dir / "manifest.json").exists()


# -- the inference entry point ---------------------------------------------------------------

RECORDS = [RECORD, {"Age": 62, "Income": 180000, "Purchases": 3, "Gender": "Female"},
           {"Age": 25, "Income": None, "Purchases": 35, "Gender": "Other"}]
BODIES: dict[str, tuple[bytes, str]] = {
    "record": (json.dumps(RECORD).encode(), "application/json"),
    "list": (json.dumps(RECORDS).encode(), "application/json"),
    "instances": (json.dumps({"instances": RECORDS}).encode(), "application/json"),
    "dataframe_records": (json.dumps({"dataframe_records": RECORDS}).encode(),
                          "application/json"),
    "dataframe_split": (json.dumps({"dataframe_split": {
        "columns": list(RECORD), "data": [[r[c] for c in RECORD] for r in RECORDS]}}).encode(),
        "application/json"),
    "csv_header": (b"Age,Income,Purchases,Gender\n30,50000,10,Male\n62,180000,3,Female\n",
                   "text/csv"),
    "csv_plain": (b"30,50000,10,Male\n62,180000,3,Female\n", "text/csv"),
}


@pytest.mark.parametrize("accept", ["application/json", "text/csv"])
@pytest.mark.parametrize("shape", list(BODIES))
def test_inference_functions_answer_like_the_local_endpoint(
        job: Job, local: Project, shape: str, accept: str) -> None:
    from custseg.sagemaker import inference

    body, content_type = BODIES[shape]
    status, headers, expected = request(
        "POST", f"{local.url}/endpoints/{ENDPOINT}/invocations", body,
        {"Content-Type": content_type, "Accept": accept})
    assert status == 200, expected
    model = inference.model_fn(str(job.model_dir))
    out, media = inference.output_fn(
        inference.predict_fn(inference.input_fn(body, content_type), model), accept)
    assert out == expected
    assert media == headers["content-type"].split(";")[0]


@pytest.mark.parametrize(("body", "content_type"), [
    (b"{not json", "application/json"),
    (b"[1, 2]", "application/json"),
    (b"Age,Income\n1,2,3\n", "text/csv"),
    (b"<a/>", "application/xml"),
    (json.dumps({"Age": "old", "Income": 1, "Purchases": 1, "Gender": "Male"}).encode(),
     "application/json"),
])
def test_inference_refuses_what_the_local_endpoint_refuses(
        job: Job, local: Project, body: bytes, content_type: str) -> None:
    from custseg.sagemaker import inference

    status, _, answer = request("POST", f"{local.url}/endpoints/{ENDPOINT}/invocations", body,
                                {"Content-Type": content_type})
    with pytest.raises(inference.InferenceError) as caught:
        inference.predict_fn(inference.input_fn(body, content_type),
                             inference.model_fn(str(job.model_dir)))
    assert (caught.value.status, caught.value.message) == (status,
                                                           json.loads(answer)["message"])


def test_model_fn_refuses_a_tampered_artifact(job: Job, tmp_path: Path) -> None:
    import shutil

    from custseg.errors import ModelError
    from custseg.sagemaker import inference

    copy = tmp_path / "model"
    shutil.copytree(job.model_dir, copy)
    data = bytearray((copy / "arrays.npz").read_bytes())
    data[-40] ^= 0xFF
    (copy / "arrays.npz").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its sha256"):
        inference.model_fn(str(copy))


# -- the Lambda handler ----------------------------------------------------------------------

@pytest.fixture
def sagemaker_api(moto_sagemaker: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A real boto3 SageMaker client on the moto server; the handler's own client (made
    from the environment, as in Lambda) talks to the same server."""
    import boto3

    from conftest import AWS_ENV

    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", moto_sagemaker)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return boto3.client("sagemaker", endpoint_url=moto_sagemaker, region_name="us-east-1")


def _model(client: Any, name: str) -> str:
    client.create_model(
        ModelName=name,
        PrimaryContainer={"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/"
                                   "sagemaker-scikit-learn:1.2-1-cpu-py3",
                          "ModelDataUrl": f"s3://bucket/{name}/model.tar.gz"},
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sagemaker-role",
    )
    return name


def test_lambda_creates_then_updates_then_changes_nothing(sagemaker_api: Any) -> None:
    from custseg.sagemaker.lambda_handler import handler

    project = f"lam{os.getpid()}"
    first = _model(sagemaker_api, f"{project}-model-1")
    event = {"model_name": first, "project_name": project, "environment": "dev",
             "instance_type": "ml.t2.medium"}
    created = handler(event, None)
    name = f"{project}-endpoint-dev"
    assert (created["action"], created["endpoint_name"]) == ("created", name)
    assert re.fullmatch(rf"{project}-endpoint-config-dev-\d{{8}}-\d{{6}}-\d{{6}}",
                        created["endpoint_config_name"])
    described = sagemaker_api.describe_endpoint(EndpointName=name)
    assert described["EndpointConfigName"] == created["endpoint_config_name"]

    second = _model(sagemaker_api, f"{project}-model-2")
    updated = handler(event | {"model_name": second}, None)
    assert updated["action"] == "updated"
    assert updated["endpoint_name"] == name
    assert updated["previous_endpoint_config_name"] == created["endpoint_config_name"]
    described = sagemaker_api.describe_endpoint(EndpointName=name)
    assert described["EndpointConfigName"] == updated["endpoint_config_name"]
    config = sagemaker_api.describe_endpoint_config(
        EndpointConfigName=updated["endpoint_config_name"])
    assert config["ProductionVariants"][0]["ModelName"] == second
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.t2.medium"

    again = handler(event | {"model_name": second}, None)
    assert again["action"] == "unchanged"
    assert again["endpoint_config_name"] == updated["endpoint_config_name"]
    configs = sagemaker_api.list_endpoint_configs(NameContains=project)["EndpointConfigs"]
    assert len(configs) == 2  # the repeat made none
    endpoints = sagemaker_api.list_endpoints(NameContains=project)["Endpoints"]
    assert [e["EndpointName"] for e in endpoints] == [name]


def test_lambda_refuses_an_incomplete_event_and_an_overlong_name(sagemaker_api: Any) -> None:
    from custseg.sagemaker.lambda_handler import handler

    with pytest.raises(ValueError, match="lacks model_name"):
        handler({"project_name": "p", "environment": "dev", "instance_type": "ml.t2.medium"},
                None)
    with pytest.raises(ValueError, match="shorten project_name"):
        handler({"model_name": "m", "project_name": "p" * 60, "environment": "dev",
                 "instance_type": "ml.t2.medium"}, None)


# -- `custseg models import` -----------------------------------------------------------------

def pack(model_dir: Path, dest: Path, *, dot: bool = True,
         extra: dict[str, bytes] | None = None) -> Path:
    """model.tar.gz as SageMaker packs SM_MODEL_DIR (`./name` members, or bare names)."""
    import io
    import tarfile

    with tarfile.open(dest, "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=f"./{path.name}" if dot else path.name)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dest


def import_project(root: Path, **config: Any) -> Project:
    import yaml

    project = make_project(root)
    cfg = yaml.safe_load(project.config.read_text()) | config
    project.config.write_text(yaml.safe_dump(cfg))
    return project


@pytest.mark.parametrize("dot", [True, False])
def test_an_imported_model_is_a_version_that_predicts_and_reports(
        job: Job, tmp_path: Path, dot: bool) -> None:
    import custseg

    project = import_project(tmp_path / "p")
    archive = pack(job.model_dir, tmp_path / "model.tar.gz", dot=dot)
    result = project.cli("models", "import", str(archive))
    assert result.returncode == 0, result.stderr
    assert "Model clustering-model-model-group/1: PendingManualApproval" in result.stdout
    listed = json.loads(project.cli("models", "list", "--json").stdout)
    assert [(p["version"], p["approval_status"]) for p in listed] == [
        (1, "PendingManualApproval")]
    lineage = listed[0]["lineage"]
    assert lineage["engine"] == "sagemaker"
    assert lineage["trained_by_execution"] == "custseg-test-job"
    assert lineage["imported_from"] == str(archive)
    described = project.cli("models", "describe", "1")
    assert described.returncode == 0, described.stderr
    data = tmp_path / "in.csv"
    data.write_text("Age,Income,Purchases,Gender\n30,50000,10,Male\n62,180000,3,Female\n")
    out = tmp_path / "out.csv"
    predicted = project.cli("predict", "--model", "clustering-model-model-group/1",
                            "--input", str(data), "--output", str(out))
    assert predicted.returncode == 0, predicted.stderr
    expected = custseg.load_model(str(job.model_dir)).predict(
        [{"Age": 30, "Income": 50000, "Purchases": 10, "Gender": "Male"},
         {"Age": 62, "Income": 180000, "Purchases": 3, "Gender": "Female"}])
    import csv

    rows = list(csv.DictReader(out.open()))
    assert [int(r["cluster"]) for r in rows] == [int(c) for c in expected]
    report = project.cli("report", "clustering-model-model-group/1", "-o",
                         str(tmp_path / "report.html"))
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "report.html").stat().st_size > 10_000
    again = project.cli("models", "import", str(archive))  # a second version, same artifact
    assert again.returncode == 0, again.stderr
    listed = json.loads(project.cli("models", "list", "--json").stdout)
    assert [p["version"] for p in listed] == [1, 2]
    assert listed[0]["artifact_uri"] == listed[1]["artifact_uri"]


def test_a_model_is_imported_from_s3(job: Job, tmp_path: Path, moto_server: str,
                                     make_bucket: Any) -> None:
    archive = pack(job.model_dir, tmp_path / "model.tar.gz")
    bucket = make_bucket({"shop/models/job-1/output/model.tar.gz": archive.read_bytes()})
    project = import_project(tmp_path / "p", s3={"endpoint_url": moto_server})
    uri = f"s3://{bucket}/shop/models/job-1/output/model.tar.gz"
    result = project.cli("models", "import", uri, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["lineage"]["imported_from"] == uri


def _tampered(model_dir: Path, dest: Path) -> Path:
    import shutil

    copy = dest.parent / "tampered"
    shutil.copytree(model_dir, copy)
    text = (copy / "model.json").read_text().replace('"custseg-test-job"', '"someone-else"')
    (copy / "model.json").write_text(text)
    return pack(copy, dest)


@pytest.mark.parametrize(("make", "says"), [
    (lambda d, a: _tampered(d, a), "does not match its sha256"),
    (lambda d, a: pack(d, a, extra={"../evil.sh": b"rm -rf /"}), "unexpected member"),
    (lambda d, a: pack(d, a, extra={"model.pkl": b"x"}), "unexpected member 'model.pkl'"),
    (lambda d, a: (a.write_bytes(b"not a tarball"), a)[1], "is not a readable tar.gz"),
])
def test_an_archive_that_is_not_a_sound_artifact_is_refused(
        job: Job, tmp_path: Path, make: Any, says: str) -> None:
    project = import_project(tmp_path / "p")
    archive = make(job.model_dir, tmp_path / "model.tar.gz")
    result = project.cli("models", "import", str(archive))
    assert result.returncode == 5, result.stderr
    assert "Traceback" not in result.stderr
    assert says in " ".join(result.stderr.split())
    listed = project.cli("models", "list", "--json")
    assert json.loads(listed.stdout) == []


def test_an_imported_model_once_approved_is_served_like_sagemaker_would(
        job: Job, tmp_path: Path) -> None:
    from custseg.sagemaker import inference

    project = import_project(tmp_path / "p", deploy={"require_approval": True})
    assert project.cli("models", "import",
                       str(pack(job.model_dir, tmp_path / "model.tar.gz"))).returncode == 0
    approved = project.cli("models", "approve", "1")
    assert approved.returncode == 0, approved.stderr
    proc = subprocess.Popen([str(CUSTSEG), "serve", "-c", str(project.config)],
                            cwd=project.root, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(project.url)
        body, content_type = BODIES["list"]
        status, _, answer = request("POST", f"{project.url}/endpoints/{ENDPOINT}/invocations",
                                    body, {"Content-Type": content_type})
        assert status == 200, answer
        model = inference.model_fn(str(job.model_dir))
        assert answer == inference.output_fn(inference.predict_fn(
            inference.input_fn(body, content_type), model), "application/json")[0]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
