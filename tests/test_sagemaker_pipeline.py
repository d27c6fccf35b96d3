"""The SageMaker pipeline without AWS: `deploy --target sagemaker --dry-run` through the real
CLI with no credentials (the definition parsed and checked, its Train step's
hyperparameters fed to the real training entry point), the packaged source run as the
container runs it, and `deploy --target sagemaker` against a real moto server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from custseg.core.sample import generate_customers
from test_inference import CUSTSEG, RECORD
from test_sagemaker import opt_ml

# -- the pipeline definition (`deploy --target sagemaker --dry-run`) -------------------------

def _sdk_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("sagemaker") is not None


needs_sdk = pytest.mark.skipif(
    not _sdk_installed() and os.environ.get("CUSTSEG_REQUIRE_SAGEMAKER") != "1",
    reason="the sagemaker extra is not installed (uv sync --extra sagemaker)")

SM_CONFIG = {
    "project_name": "shop", "environment": "prod", "region": "eu-west-1",
    "bucket_name": "shop-ml", "role_arn": "arn:aws:iam::123456789012:role/shop-sagemaker",
    "lambda_role_arn": "arn:aws:iam::123456789012:role/shop-deploy-lambda",
    "n_clusters": 4, "n_components": 2, "data_file": "customers.csv",
    "training_instance_type": "ml.m5.xlarge", "inference_instance_type": "ml.t2.large",
    "data_uri": "data", "tuning": {"n_init": 3, "metric": "davies_bouldin"},
}


def offline_cli(root: Path, *args: str, config: dict[str, Any] | None = None,
                python: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real CLI with no AWS credentials anywhere it could find them."""
    import yaml

    (root / "pipeline_config.yaml").write_text(yaml.safe_dump(config or SM_CONFIG))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"AWS_CONFIG_FILE": str(root / "none"), "AWS_SHARED_CREDENTIALS_FILE":
            str(root / "none"), "AWS_EC2_METADATA_DISABLED": "true", "HOME": str(root)}
    command = [*(python or [str(CUSTSEG)]), *args, "-c", str(root / "pipeline_config.yaml")]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=180,
                          env=env, check=False)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not _sdk_installed():
        pytest.fail("CUSTSEG_REQUIRE_SAGEMAKER=1 but the sagemaker extra is not installed")
    result = offline_cli(tmp_path_factory.mktemp("dry"), "deploy", "--target", "sagemaker",
                         "--dry-run")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return ([node["Get"]] if set(node) == {"Get"} else []) + [
            r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


@needs_sdk
def test_the_definition_has_the_seeds_steps_parameters_and_references(
        pipeline: dict[str, Any]) -> None:
    parameters = {p["Name"]: (p["Type"], p["DefaultValue"]) for p in pipeline["Parameters"]}
    assert parameters == {
        "NClusters": ("Integer", 4), "NComponents": ("Integer", 2),
        "DataFile": ("String", "customers.csv"),
        "TrainingInstanceType": ("String", "ml.m5.xlarge"),
        "InferenceInstanceType": ("String", "ml.t2.large")}
    steps = {s["Name"]: s for s in pipeline["Steps"]}
    assert [(s["Name"], s["Type"]) for s in pipeline["Steps"]] == [
        ("Train", "Training"), ("CreateModel-CreateModel", "Model"),
        ("RegisterModel-RegisterModel", "RegisterModel"), ("DeployEndpoint", "Lambda")]
    # every reference names a declared parameter or an earlier step
    seen: set[str] = set()
    for step in pipeline["Steps"]:
        for ref in _refs(step):
            kind, name = ref.split(".")[:2]
            assert (kind == "Parameters" and name in parameters) or (
                kind == "Steps" and name in seen), (step["Name"], ref)
        seen.add(step["Name"])
    artifacts = {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    create = steps["CreateModel-CreateModel"]["Arguments"]
    assert create["PrimaryContainer"]["ModelDataUrl"] == artifacts
    assert create["ExecutionRoleArn"] == SM_CONFIG["role_arn"]
    register = steps["RegisterModel-RegisterModel"]["Arguments"]
    assert register["ModelPackageGroupName"] == "shop-model-group"
    assert register["ModelApprovalStatus"] == "PendingManualApproval"
    container = register["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == artifacts
    train = steps["Train"]["Arguments"]
    for c in (container, create["PrimaryContainer"]):
        assert c["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
        assert c["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == \
            "s3://shop-ml/shop/code/source.tar.gz"
        assert c["Image"] == train["AlgorithmSpecification"]["TrainingImage"]
    deploy = steps["DeployEndpoint"]
    assert deploy["FunctionArn"] == \
        "arn:aws:lambda:eu-west-1:123456789012:function:shop-deploy-endpoint-prod"
    assert deploy["Arguments"] == {
        "model_name": {"Get": "Steps.CreateModel-CreateModel.ModelName"},
        "project_name": "shop", "environment": "prod",
        "instance_type": {"Get": "Parameters.InferenceInstanceType"}}
    assert train["RoleArn"] == SM_CONFIG["role_arn"]
    assert train["ResourceConfig"]["InstanceType"] == {"Get": "Parameters.TrainingInstanceType"}
    assert train["AlgorithmSpecification"]["TrainingImage"].startswith(
        "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:")
    channel = train["InputDataConfig"][0]
    assert channel["ChannelName"] == "training"
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == {"Std:Join": {
        "On": "/", "Values": ["s3://shop-ml/data", {"Get": "Parameters.DataFile"}]}}


SKLEARN_312 = "sagemaker-scikit-learn:1.4-2-py312-cpu-py3"


@needs_sdk
def test_the_images_are_the_sklearn_containers_python_312_variant(
        pipeline: dict[str, Any]) -> None:
    """The newest scikit-learn image SDK v2 lists (1.4-2, `1.4-2-cpu-py3`) has Python
    3.10, below custseg's Requires-Python; training and serving use the same registry's
    Python 3.12 variant, framework version 1.4-2-py312, tagged as the SDK tags images."""
    from importlib import metadata

    from packaging.specifiers import SpecifierSet
    from sagemaker import image_uris

    from custseg.sagemaker.pipeline import SKLEARN_FRAMEWORK

    sdk = image_uris.retrieve("sklearn", "eu-west-1", "1.4-2", py_version="py3",
                              instance_type="ml.m5.xlarge", image_scope="training")
    registry = "141502667606.dkr.ecr.eu-west-1.amazonaws.com"
    assert sdk == f"{registry}/sagemaker-scikit-learn:1.4-2-cpu-py3"
    steps = {s["Name"]: s["Arguments"] for s in pipeline["Steps"]}
    images = {steps["Train"]["AlgorithmSpecification"]["TrainingImage"],
              steps["CreateModel-CreateModel"]["PrimaryContainer"]["Image"],
              steps["RegisterModel-RegisterModel"]["InferenceSpecification"]["Containers"][0][
                  "Image"]}
    assert images == {f"{registry}/{SKLEARN_312}"}
    try:  # an SDK that lists the variant (v3 does) must agree
        listed = image_uris.retrieve("sklearn", "eu-west-1", SKLEARN_FRAMEWORK, py_version="py3",
                                     instance_type="ml.m5.xlarge", image_scope="training")
    except ValueError:  # SDK v2 does not
        listed = f"{registry}/{SKLEARN_312}"
    assert listed == f"{registry}/{SKLEARN_312}"
    found = re.fullmatch(r"\d+\.\d+-\d+-py(\d)(\d+)", SKLEARN_FRAMEWORK)
    assert found, SKLEARN_FRAMEWORK
    requires = SpecifierSet(metadata.metadata("custseg")["Requires-Python"])
    assert f"{found.group(1)}.{found.group(2)}" in requires
    assert "3.10" not in requires  # why not the SDK's own 1.4-2 image


@needs_sdk
@pytest.mark.parametrize(("region", "account"), [("us-east-1", "683313688378"),
                                                 ("eu-central-1", "492215442770")])
def test_the_image_is_in_each_regions_registry(region: str, account: str) -> None:
    from custseg.sagemaker.pipeline import image_uri

    assert image_uri(region) == f"{account}.dkr.ecr.{region}.amazonaws.com/{SKLEARN_312}"


def _resolve(value: Any, parameters: dict[str, Any]) -> Any:
    """A hyperparameter as SageMaker resolves it with the parameters' defaults."""
    if isinstance(value, dict) and set(value) == {"Get"}:
        return str(parameters[value["Get"].removeprefix("Parameters.")])
    if isinstance(value, dict) and "Std:Join" in value:
        join = value["Std:Join"]
        return join["On"].join(_resolve(v, parameters) for v in join["Values"])
    return value


@needs_sdk
def test_the_training_step_runs_the_entry_point_with_its_hyperparameters(
        pipeline: dict[str, Any], tmp_path: Path) -> None:
    """The Train step's hyperparameters, resolved as SageMaker does, written to
    hyperparameters.json of a simulated job: the entry point trains what the config
    says, and the step's metric regexes read its log."""
    from custseg.sagemaker.metrics import METRIC_DEFINITIONS

    train = pipeline["Steps"][0]["Arguments"]
    defaults = {p["Name"]: p["DefaultValue"] for p in pipeline["Parameters"]}
    hyper = {k: _resolve(v, defaults) for k, v in train["HyperParameters"].items()}
    assert train["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
    assert json.loads(hyper["sagemaker_program"]) == "train.py"
    table, _ = generate_customers(800, segments=4, seed=5)
    root = tmp_path / "ml"
    env = {**os.environ, **opt_ml(root, table, {})}
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyper))
    result = subprocess.run([sys.executable, "-m", "custseg.sagemaker.train"],
                            capture_output=True, text=True, timeout=300, env=env, check=False)
    assert result.returncode == 0, result.stderr
    import custseg

    model = custseg.load_model(str(root / "model"))
    assert model.k == 4 and model.projection.n_components == 2
    assert model.meta["parameters"]["tuning"] == {**model.meta["parameters"]["tuning"],
                                                   "n_init": 3, "metric": "davies_bouldin"}
    for definition in METRIC_DEFINITIONS:
        assert len(re.findall(definition["Regex"], result.stdout)) == 1, result.stdout


@pytest.mark.parametrize(("change", "says"), [
    ({"bucket_name": None}, "needs bucket_name in the config"),
    ({"role_arn": "shop-role"}, "role_arn: expected an IAM role ARN"),
    ({"n_clusters": "auto"}, "NClusters and NComponents"),
    ({"engine": "spark"}, "engine: 'spark'"),
])
def test_a_config_the_pipeline_cannot_honour_is_refused(
        tmp_path: Path, change: dict[str, Any], says: str) -> None:
    result = offline_cli(tmp_path, "deploy", "--target", "sagemaker", "--dry-run",
                         config=SM_CONFIG | change)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert says in " ".join(result.stderr.split())
    assert result.stdout == ""


def test_dry_run_is_for_the_sagemaker_target(tmp_path: Path) -> None:
    result = offline_cli(tmp_path, "deploy", "--dry-run")
    assert result.returncode == 2
    assert "use it with --target sagemaker" in " ".join(result.stderr.split())


def test_without_the_extra_the_cli_names_it(tmp_path: Path) -> None:
    blocked = [sys.executable, "-c", "import sys; sys.modules['sagemaker'] = None; "
               "from custseg.cli import main; sys.argv[0] = 'custseg'; main()"]
    result = offline_cli(tmp_path, "deploy", "--target", "sagemaker", "--dry-run",
                         python=blocked)
    assert result.returncode == 2, result.stderr
    assert "uv sync --extra sagemaker" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_the_packaged_source_runs_as_the_container_runs_it(tmp_path: Path) -> None:
    """source.tar.gz unpacked: its train.py trains from the packaged custseg, its
    inference.py serves, and requirements.txt pins the installed versions."""
    import tarfile
    from importlib import metadata

    from custseg.sagemaker.pipeline import package_source

    archive = package_source(tmp_path / "source.tar.gz")
    code = tmp_path / "code"
    with tarfile.open(archive) as tar:
        tar.extractall(code, filter="data")
    pins = dict(line.split(" ;")[0].split("==") for line in
                (code / "requirements.txt").read_text().splitlines())
    assert pins["numpy"] == metadata.version("numpy")
    assert pins["scikit-learn"] == metadata.version("scikit-learn")
    assert "sagemaker" not in pins
    table, _ = generate_customers(500, segments=3, seed=6)
    env = {**os.environ, **opt_ml(tmp_path / "ml", table, {})}
    result = subprocess.run([sys.executable, "train.py", "--n-clusters", "3"], cwd=code,
                            capture_output=True, text=True, timeout=300, env=env, check=False)
    assert result.returncode == 0, result.stderr
    probe = ("import inference, json, sys; m = inference.model_fn(sys.argv[1]); "
             "print(inference.output_fn(inference.predict_fn(inference.input_fn("
             "sys.argv[2], 'application/json'), m), 'application/json')[0].decode()); "
             "print(sys.modules['custseg'].__file__)")
    served = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "ml" / "model"),
                             json.dumps(RECORD)], cwd=code, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(code)},
                            check=False)
    assert served.returncode == 0, served.stderr
    answer, where = served.stdout.splitlines()
    assert json.loads(answer)["predictions"][0]["cluster"] in range(3)
    assert where.startswith(str(code))


# -- `custseg deploy --target sagemaker` against a moto server -------------------------------

@needs_sdk
def test_deploy_uploads_the_source_upserts_the_lambda_and_the_pipeline(
        moto_sagemaker: str, tmp_path: Path) -> None:
    import boto3

    from conftest import AWS_ENV

    clients = {s: boto3.client(s, endpoint_url=moto_sagemaker, region_name="eu-west-1",
                               aws_access_key_id="testing", aws_secret_access_key="testing")
               for s in ("s3", "iam", "lambda", "sagemaker")}
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole"}]})
    role = clients["iam"].create_role(RoleName=f"deploy-{os.getpid()}",
                                      AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    clients["s3"].create_bucket(Bucket="shop-ml",
                                CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    config = SM_CONFIG | {"lambda_role_arn": role, "project_name": f"shop{os.getpid()}"}
    project = config["project_name"]

    def deploy(cfg: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        import yaml

        (tmp_path / "pipeline_config.yaml").write_text(yaml.safe_dump(cfg))
        env = {**os.environ, **AWS_ENV, "AWS_ENDPOINT_URL": moto_sagemaker}
        return subprocess.run([str(CUSTSEG), "deploy", "--target", "sagemaker", "--json", "-c",
                               str(tmp_path / "pipeline_config.yaml")], cwd=tmp_path,
                              capture_output=True, text=True, timeout=180, env=env, check=False)

    first = deploy(config)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) | {"pipeline": None} == {
        "pipeline": None, "version": 1, "created": True, "changes": []}
    source = clients["s3"].get_object(Bucket="shop-ml", Key=f"{project}/code/source.tar.gz")
    assert source["ContentLength"] > 10_000
    function = clients["lambda"].get_function(FunctionName=f"{project}-deploy-endpoint-prod")
    assert function["Configuration"]["Handler"] == "lambda_handler.handler"
    pipeline = clients["sagemaker"].describe_pipeline(PipelineName=f"{project}-pipeline-prod")
    stored = json.loads(pipeline["PipelineDefinition"])
    assert [s["Name"] for s in stored["Steps"]] == [
        "Train", "CreateModel-CreateModel", "RegisterModel-RegisterModel", "DeployEndpoint"]
    assert stored["Steps"][3]["FunctionArn"] == function["Configuration"]["FunctionArn"]

    again = deploy(config)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["created"] is False and json.loads(again.stdout)[
        "version"] == 1

    changed = deploy(config | {"n_clusters": 5})
    assert changed.returncode == 0, changed.stderr
    result = json.loads(changed.stdout)
    assert (result["version"], result["created"], result["changes"]) == (
        2, True, ["parameter NClusters"])
    stored = json.loads(clients["sagemaker"].describe_pipeline(
        PipelineName=f"{project}-pipeline-prod")["PipelineDefinition"])
    assert stored["Parameters"][0] == {"Name": "NClusters", "Type": "Integer", "DefaultValue": 5}


@needs_sdk
def test_deploy_without_credentials_says_what_it_needs(tmp_path: Path) -> None:
    result = offline_cli(tmp_path, "deploy", "--target", "sagemaker")
    assert result.returncode == 2, result.stderr
    assert "needs AWS credentials" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


@needs_sdk
def test_run_starts_an_execution_of_the_deployed_pipeline_with_the_configs_parameters(
        moto_sagemaker: str, tmp_path: Path) -> None:
    import boto3
    import yaml

    from conftest import AWS_ENV

    sm = boto3.client("sagemaker", endpoint_url=moto_sagemaker, region_name="eu-west-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    project = f"run{os.getpid()}"
    config = SM_CONFIG | {"project_name": project}

    def cli(cfg: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "pipeline_config.yaml").write_text(yaml.safe_dump(cfg))
        env = {**os.environ, **AWS_ENV, "AWS_ENDPOINT_URL": moto_sagemaker}
        return subprocess.run([str(CUSTSEG), *args, "-c", str(tmp_path / "pipeline_config.yaml")],
                              cwd=tmp_path, capture_output=True, text=True, timeout=180,
                              env=env, check=False)

    missing = cli(config, "run", "--target", "sagemaker")
    assert missing.returncode == 2
    assert "is not on SageMaker: run `custseg deploy --target sagemaker` first" in " ".join(
        missing.stderr.split())
    # the pipeline as deploy puts it (without the S3 and Lambda parts of test_deploy_...)
    (tmp_path / "pipeline_config.yaml").write_text(yaml.safe_dump(config))
    dry = cli(config, "deploy", "--target", "sagemaker", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    sm.create_pipeline(PipelineName=f"{project}-pipeline-prod", PipelineDefinition=dry.stdout,
                       RoleArn=SM_CONFIG["role_arn"])

    started = cli(config, "run", "--target", "sagemaker", "-p", "n_clusters=6", "--json")
    assert started.returncode == 0, started.stderr
    result = json.loads(started.stdout)
    assert result["parameters"]["NClusters"] == "6"
    given = sm.list_pipeline_parameters_for_execution(
        PipelineExecutionArn=result["execution_arn"])["PipelineParameters"]
    assert {p["Name"]: p["Value"] for p in given} == {
        "NClusters": "6", "NComponents": "2", "DataFile": "customers.csv",
        "TrainingInstanceType": "ml.m5.xlarge", "InferenceInstanceType": "ml.t2.large"}
    executions = sm.list_pipeline_executions(PipelineName=f"{project}-pipeline-prod")
    assert [e["PipelineExecutionArn"] for e in executions["PipelineExecutionSummaries"]] == [
        result["execution_arn"]]

    stale = cli(config | {"tuning": {"n_init": 7}}, "run", "--target", "sagemaker")
    assert stale.returncode == 2
    assert "differs from the config (step Train)" in " ".join(stale.stderr.split())
    assert "Traceback" not in stale.stderr
