"""`custseg run --target sagemaker --wait`, end to end: the real CLI in a subprocess
against a real moto server whose pipeline executions run their steps
(tests/moto_sagemaker.py: one stage per DescribePipelineExecution, a training job with
final metrics, a registered model package, the deploy Lambda's outputs; failing and
hanging variants chosen by the DataFile parameter)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from test_inference import CUSTSEG
from test_sagemaker_pipeline import SM_CONFIG, needs_sdk, offline_cli

STEPS = ["Train", "CreateModel-CreateModel", "RegisterModel-RegisterModel", "DeployEndpoint"]
FAST = ("--poll-interval", "0.05")


class Deployed:
    """A project whose pipeline is on the moto server, and the real CLI run on it."""

    def __init__(self, root: Path, url: str, project: str) -> None:
        import boto3

        self.root, self.url, self.project = root, url, project
        self.config = root / "pipeline_config.yaml"
        self.sm = boto3.client("sagemaker", endpoint_url=url, region_name="eu-west-1",
                               aws_access_key_id="testing", aws_secret_access_key="testing")

    def command(self, *args: str) -> list[str]:
        return [str(CUSTSEG), *args, "-c", str(self.config)]

    @property
    def env(self) -> dict[str, str]:
        from conftest import AWS_ENV

        return {**os.environ, **AWS_ENV, "AWS_ENDPOINT_URL": self.url}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), cwd=self.root, capture_output=True,
                              text=True, timeout=180, env=self.env, check=False)

    def run_wait(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.cli("run", "--target", "sagemaker", "--wait", *FAST, *args)

    def training_metrics(self, arn: str) -> dict[str, float]:
        steps = self.sm.list_pipeline_execution_steps(PipelineExecutionArn=arn)
        job = next(s["Metadata"]["TrainingJob"]["Arn"] for s in steps["PipelineExecutionSteps"]
                   if "TrainingJob" in s.get("Metadata", {}))
        described = self.sm.describe_training_job(TrainingJobName=job.rsplit("/", 1)[-1])
        return {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]}

    def status(self, arn: str) -> str:
        executions = self.sm.list_pipeline_executions(
            PipelineName=f"{self.project}-pipeline-prod")["PipelineExecutionSummaries"]
        return str(next(e["PipelineExecutionStatus"] for e in executions
                        if e["PipelineExecutionArn"] == arn))


@pytest.fixture(scope="module")
def deployed(moto_sagemaker: str, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    """The pipeline as `deploy --target sagemaker` puts it (its definition from the dry
    run; the S3 and Lambda parts are test_sagemaker_pipeline's)."""
    root = tmp_path_factory.mktemp("wait")
    project = f"wait{os.getpid()}"
    config = SM_CONFIG | {"project_name": project}
    dry = offline_cli(root, "deploy", "--target", "sagemaker", "--dry-run", config=config)
    assert dry.returncode == 0, dry.stderr
    target = Deployed(root, moto_sagemaker, project)
    target.config.write_text(yaml.safe_dump(config))
    target.sm.create_pipeline(PipelineName=f"{project}-pipeline-prod",
                              PipelineDefinition=dry.stdout, RoleArn=SM_CONFIG["role_arn"])
    return target


def _arn(text: str) -> str:
    found = re.search(r"arn:aws:sagemaker:[^ ]+:pipeline/[^ ]+/execution/[a-z0-9]+", text)
    assert found, text
    return found.group(0)


def _one_line(text: str) -> str:
    return " ".join(text.split())


@needs_sdk
def test_wait_prints_each_step_then_the_jobs_metrics_the_package_and_the_endpoint(
        deployed: Deployed) -> None:
    result = deployed.run_wait("-p", "n_clusters=5")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    progress = re.findall(r"^(\S+): (Executing|Succeeded)", result.stderr, re.MULTILINE)
    assert progress == [(s, status) for s in STEPS for status in ("Executing", "Succeeded")]
    arn = _arn(result.stdout)
    assert f"Execution: {arn}: Succeeded" in result.stdout
    metrics = deployed.training_metrics(arn)
    assert set(metrics) == {"silhouette_score", "calinski_harabasz_score",
                            "davies_bouldin_score"}
    assert f"Silhouette Score: {metrics['silhouette_score']:.6f}" in result.stdout
    assert f"Calinski-Harabasz Index: {metrics['calinski_harabasz_score']:.6f}" in result.stdout
    assert f"Davies-Bouldin Index: {metrics['davies_bouldin_score']:.6f}" in result.stdout
    packages = deployed.sm.list_model_packages(
        ModelPackageGroupName=f"{deployed.project}-model-group")["ModelPackageSummaryList"]
    newest = max(packages, key=lambda p: p["ModelPackageVersion"])["ModelPackageArn"]
    assert f"Model package: {newest} (PendingManualApproval)" in result.stdout
    assert f"custseg models import {newest}" in result.stdout
    assert f"Endpoint: {deployed.project}-endpoint-prod -> " \
           f"{deployed.project}-endpoint-config-prod-" in result.stdout
    given = deployed.sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)
    assert {"Name": "NClusters", "Value": "5"} in given["PipelineParameters"]


@needs_sdk
def test_wait_json_is_one_document_with_the_steps_metrics_package_and_endpoint(
        deployed: Deployed) -> None:
    result = deployed.run_wait("--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["status"] == "Succeeded"
    assert list(document["steps"]) == STEPS
    assert all(s["status"] == "Succeeded" and s["seconds"] is not None
               for s in document["steps"].values())
    assert document["metrics"] == deployed.training_metrics(document["execution_arn"])
    assert document["model_package_arn"].startswith(
        f"arn:aws:sagemaker:eu-west-1:123456789012:model-package/{deployed.project}-model-group/")
    assert document["model_approval_status"] == "PendingManualApproval"
    assert document["endpoint"]["endpoint_name"] == f"{deployed.project}-endpoint-prod"
    assert document["endpoint"]["action"] == "created"
    assert document["parameters"]["DataFile"] == "customers.csv"


@needs_sdk
@pytest.mark.parametrize(("step", "code", "says"), [
    ("Train", 3, "ExitCode 3 ErrorMessage \"Error: data_file: no file "
                 "simulate-failure-Train.csv in the training channel\""),
    ("RegisterModel-RegisterModel", 7, "simulated failure of step RegisterModel-RegisterModel"),
    ("DeployEndpoint", 8, "simulated failure of step DeployEndpoint"),
])
def test_a_failed_execution_exits_with_the_failing_steps_code_and_reason(
        deployed: Deployed, step: str, code: int, says: str) -> None:
    result = deployed.run_wait("-p", f"data_file=simulate-failure-{step}.csv")
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    error = _one_line(result.stderr.split("error:")[-1])
    arn = _arn(error)
    assert f"execution {arn} failed at step {step} (Failed): " in error
    assert says in error
    assert result.stdout == ""  # as a failed local run: the error line only
    assert deployed.status(arn) == "Failed"
    assert re.search(rf"^{re.escape(step)}: Failed", result.stderr, re.MULTILINE)


@needs_sdk
def test_a_failed_execution_with_json_still_prints_the_document(deployed: Deployed) -> None:
    result = deployed.run_wait("--json", "-p", "data_file=simulate-failure-Train.csv")
    assert result.returncode == 3, result.stderr
    document = json.loads(result.stdout)
    assert document["status"] == "Failed"
    assert document["failure_reason"] == "Step failure: One or multiple steps failed."
    assert list(document["steps"]) == ["Train"]
    assert "ExitCode 3" in document["steps"]["Train"]["failure_reason"]
    assert document["metrics"] == {}
    assert document["model_package_arn"] is None


@needs_sdk
def test_a_wait_that_times_out_says_the_execution_goes_on(deployed: Deployed) -> None:
    started = time.monotonic()
    result = deployed.cli("run", "--target", "sagemaker", "--wait", "--timeout", "1",
                          "--poll-interval", "0.2", "-p", "data_file=simulate-hang.csv")
    assert result.returncode == 124, result.stderr
    assert time.monotonic() - started < 60
    assert "Traceback" not in result.stderr
    error = _one_line(result.stderr.split("error:")[-1])
    arn = _arn(error)
    assert f"execution {arn} is still Executing after 1 s (--timeout): it keeps running " \
           f"on SageMaker" in error
    assert deployed.status(arn) == "Executing"


@needs_sdk
def test_ctrl_c_stops_following_and_names_the_execution_that_goes_on(
        deployed: Deployed) -> None:
    proc = subprocess.Popen(
        deployed.command("run", "--target", "sagemaker", "--wait", "--poll-interval", "0.2",
                         "-p", "data_file=simulate-hang.csv"),
        cwd=deployed.root, env=deployed.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    assert proc.stderr is not None
    seen = []
    try:
        for line in proc.stderr:  # following once the first step is reported
            seen.append(line)
            if line.startswith("Train: Executing"):
                break
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = "".join(seen) + rest
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    arn = _arn("".join(seen))
    assert f"the execution keeps running on SageMaker: {arn}" in _one_line(stderr)
    assert deployed.status(arn) == "Executing"


@pytest.mark.parametrize(("args", "says"), [
    (["--wait"], "use them with --target sagemaker"),
    (["--target", "local", "--timeout", "5m"], "use them with --target sagemaker"),
    (["--target", "sagemaker", "--timeout", "5m"], "apply to --wait: add --wait"),
    (["--target", "sagemaker", "--wait", "--timeout", "soon"],
     "--timeout: expected a positive duration"),
])
def test_wait_options_out_of_place_are_refused_before_anything_starts(
        tmp_path: Path, args: list[str], says: str) -> None:
    result = offline_cli(tmp_path, "run", *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert says in _one_line(result.stderr)
    assert result.stdout == ""


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("1.5m", 90),
                                               ("2h", 7200)])
def test_durations(text: str, seconds: float) -> None:
    from custseg.cli.sagemaker_run import parse_duration

    assert parse_duration(text, "--timeout") == seconds


ARN = "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/shop-pipeline-prod/execution/abc"


@pytest.mark.parametrize(("status", "steps", "code", "says"), [
    ("Succeeded", [("Train", "Succeeded", None)], 0, None),
    ("Failed", [("Train", "Failed", "AlgorithmError: ExecuteUserScriptError:\nExitCode 2\n"
                 "ErrorMessage \"Error: n_clusters: expected an integer >= 2\"")], 2,
     "failed at step Train (Failed): AlgorithmError"),
    ("Failed", [("Train", "Failed", "ClientError: instance type not available")], 4,
     "failed at step Train (Failed): ClientError: instance type not available"),
    ("Failed", [("Train", "Succeeded", None),
                ("CreateModel-CreateModel", "Failed", "ValidationException: bad image")], 5,
     "at step CreateModel-CreateModel (Failed): ValidationException: bad image"),
    ("Stopped", [("Train", "Stopped", None)], 4,
     "stopped at step Train (Stopped): execution stopped by a user"),
    ("Failed", [], 8, "failed: execution stopped by a user"),
    ("Executing", [("Train", "Executing", None)], 124, "is still Executing after 60 s"),
])
def test_how_an_execution_ended_maps_to_the_local_runs_exit_codes(
        status: str, steps: list[tuple[str, str, str | None]], code: int,
        says: str | None) -> None:
    from custseg.sagemaker.follow import Followed, StepState, error_for

    followed = Followed(ARN, status, "execution stopped by a user",
                        [StepState(n, s, failure_reason=r) for n, s, r in steps], 60.0)
    error = error_for(followed, 60.0)
    if says is None:
        assert error is None
        return
    assert error is not None
    assert error.exit_code == code
    assert says in " ".join(str(error).split())
