"""The seed's pipeline on SageMaker, built with the SageMaker Python SDK v2 from the config.

Train (the scikit-learn framework container running `custseg.sagemaker.train`, with the
metric definitions of `custseg.sagemaker.metrics`) -> CreateModel (the same container
serving `custseg.sagemaker.inference`) -> RegisterModel into `{project}-model-group`,
PendingManualApproval -> DeployEndpoint (a Lambda running
`custseg.sagemaker.lambda_handler`). Pipeline parameters: NClusters, NComponents,
DataFile, and the two instance types.

`definition(cfg)` builds it offline: no AWS call, no credentials. The source code the
containers run (custseg itself, two entry scripts and a `requirements.txt` pinned to the
installed versions) is referred to at `s3://{bucket}/{project}/code/source.tar.gz`,
where the deploy uploads it (`package_source`). The SDK is the optional extra
`sagemaker`, imported only here.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tarfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

from custseg.config import Config
from custseg.errors import ConfigError

__all__ = ["SKLEARN_FRAMEWORK", "definition", "image_uri", "names", "package_source",
           "require_sdk"]

# The scikit-learn framework container, in its Python 3.12 variant. custseg needs Python
# 3.11 or later; the newest sklearn image SDK v2 lists, framework version `1.4-2` (tag
# `1.4-2-cpu-py3`), has Python 3.10. AWS publishes the 3.12 variant as framework version
# `1.4-2-py312` (tag `1.4-2-py312-cpu-py3`) in the same per-region registries; SDK v2
# (2.257.7, the last v2) predates it, so `image_uri` takes the registry from the SDK's
# `1.4-2` entry and writes the variant's tag as the SDK writes tags.
SKLEARN_FRAMEWORK = "1.4-2-py312"
SKLEARN_REGISTRY_ENTRY = "1.4-2"
ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/.+$")
# no telemetry request from the SDK: building the definition calls nothing
SDK_CONFIG = {"SchemaVersion": "1.0",
              "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
INSTALL_HINT = ("the SageMaker target needs the SageMaker Python SDK: install the extra "
                "with `uv sync --extra sagemaker` (or `pip install 'custseg[sagemaker]'`)")


def require_sdk() -> None:
    """Raise ConfigError with the install hint when the extra is not installed."""
    try:
        import sagemaker  # noqa: F401
    except ImportError as exc:
        raise ConfigError(INSTALL_HINT) from exc


def names(cfg: Config) -> dict[str, str]:
    """The AWS names the pipeline uses, from the config's project and environment."""
    p, e = cfg.project_name, cfg.environment
    return {
        "pipeline": f"{p}-pipeline-{e}",
        "model_group": f"{p}-model-group",
        "endpoint": f"{p}-endpoint-{e}",
        "lambda": f"{p}-deploy-endpoint-{e}",
        "source": f"s3://{cfg.bucket_name}/{p}/code/source.tar.gz",
        "output": f"s3://{cfg.bucket_name}/{p}/models",
        "data": f"s3://{cfg.bucket_name}/data",
    }


def _checked(cfg: Config) -> str:
    """The Lambda role's account, once the config's SageMaker keys are checked (else
    ConfigError naming the key)."""
    missing = [k for k in ("bucket_name", "role_arn", "lambda_role_arn") if not getattr(cfg, k)]
    if missing:
        raise ConfigError(f"--target sagemaker needs {', '.join(missing)} in the config "
                          f"(see docs/sagemaker.md for the bucket and the two IAM roles)")
    accounts = []
    for key in ("role_arn", "lambda_role_arn"):
        found = ARN.match(str(getattr(cfg, key)))
        if found is None:
            raise ConfigError(f"{key}: expected an IAM role ARN "
                              f"(arn:aws:iam::ACCOUNT:role/NAME), found {getattr(cfg, key)!r}")
        accounts.append(found.group(1))
    if cfg.engine != "local":
        raise ConfigError(f"engine: {cfg.engine!r} cannot run in a SageMaker training job "
                          f"(it runs custseg's local engine); set engine: local")
    if not isinstance(cfg.n_clusters, int) or not isinstance(cfg.n_components, int):
        raise ConfigError("n_clusters and n_components: the SageMaker pipeline parameters "
                          "NClusters and NComponents are integers; 'auto', a {min, max} "
                          "range or a variance fraction runs locally only for now")
    if not cfg.data_file:
        raise ConfigError("data_file: the SageMaker pipeline reads "
                          f"s3://{cfg.bucket_name}/data/DATA_FILE; set data_file")
    return accounts[1]


def job_config(cfg: Config) -> dict[str, Any]:
    """The config keys the training job honours, as its `custseg-config` hyperparameter."""
    from custseg.sagemaker.train import NOT_IN_JOB

    keep = {k: v for k, v in cfg.parameters().items() if k not in NOT_IN_JOB}
    for key in ("n_clusters", "n_components", "data_file", "project_name", "environment",
                "region", "bucket_name", "role_arn", "lambda_role_arn", "s3",
                "training_instance_type", "inference_instance_type"):
        keep.pop(key, None)  # parameters of their own, or nothing to do with training
    return keep


def definition(cfg: Config) -> dict[str, Any]:
    """The pipeline definition as the SDK writes it, built offline."""
    with warnings.catch_warnings():
        # the SDK's notes on what a pipeline session does (no wait, no logs, fields it
        # leaves to execution time) say nothing about this config
        warnings.simplefilter("ignore", UserWarning)
        pipeline = build(cfg, offline=True)
        text = pipeline.definition()
    return dict(json.loads(text))


def image_uri(region: str) -> str:
    """The training and serving image: the scikit-learn container `SKLEARN_FRAMEWORK`
    (`{version}-cpu-py3`, as `image_uris.retrieve` writes it) in the region's registry."""
    from sagemaker import image_uris

    known = image_uris.retrieve("sklearn", region, SKLEARN_REGISTRY_ENTRY, py_version="py3",
                                instance_type="ml.m5.large", image_scope="training")
    return f"{known.rsplit(':', 1)[0]}:{SKLEARN_FRAMEWORK}-cpu-py3"


def build(cfg: Config, *, offline: bool) -> Any:
    """The SDK's Pipeline. Offline, nothing is called: the Lambda is referred to by ARN
    (a real deploy upserts it from `lambda_handler.py`)."""
    lambda_account = _checked(cfg)
    # the SDK logs its config lookups to stdout, where the definition goes, and notes on
    # pipeline variables at WARNING that say nothing about the config
    for logger in ("sagemaker", "sagemaker.config", "botocore", "boto3"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    require_sdk()
    import boto3
    from sagemaker.inputs import TrainingInput
    from sagemaker.lambda_helper import Lambda
    from sagemaker.model import Model
    from sagemaker.sklearn.estimator import SKLearn
    from sagemaker.workflow.functions import Join
    from sagemaker.workflow.lambda_step import LambdaOutput, LambdaOutputTypeEnum, LambdaStep
    from sagemaker.workflow.model_step import ModelStep
    from sagemaker.workflow.parameters import ParameterInteger, ParameterString
    from sagemaker.workflow.pipeline import Pipeline
    from sagemaker.workflow.pipeline_context import PipelineSession
    from sagemaker.workflow.steps import TrainingStep

    from custseg.sagemaker.metrics import METRIC_DEFINITIONS

    n = names(cfg)
    session = PipelineSession(boto_session=boto3.Session(region_name=cfg.region),
                              default_bucket=cfg.bucket_name, sagemaker_config=SDK_CONFIG)
    assert isinstance(cfg.n_clusters, int) and isinstance(cfg.n_components, int)  # _checked
    n_clusters = ParameterInteger("NClusters", default_value=cfg.n_clusters)
    n_components = ParameterInteger("NComponents", default_value=cfg.n_components)
    data_file = ParameterString("DataFile", default_value=str(cfg.data_file))
    training_type = ParameterString("TrainingInstanceType",
                                    default_value=cfg.training_instance_type)
    inference_type = ParameterString("InferenceInstanceType",
                                     default_value=cfg.inference_instance_type)
    image = image_uri(cfg.region)

    estimator = SKLearn(
        entry_point="train.py", source_dir=n["source"], image_uri=image,
        role=cfg.role_arn, instance_type=training_type, instance_count=1,
        output_path=n["output"], code_location=f"s3://{cfg.bucket_name}/{cfg.project_name}/code",
        base_job_name=f"{cfg.project_name}-train", metric_definitions=METRIC_DEFINITIONS,
        disable_profiler=True, debugger_hook_config=False,
        hyperparameters={"n-clusters": n_clusters, "n-components": n_components,
                         "data-file": data_file,
                         "custseg-config": json.dumps(job_config(cfg), sort_keys=True)},
        sagemaker_session=session,
    )
    train = TrainingStep("Train", step_args=estimator.fit(
        {"training": TrainingInput(Join(on="/", values=[n["data"], data_file]),
                                   content_type="text/csv")}))
    model_data = train.properties.ModelArtifacts.S3ModelArtifacts
    # the framework container's own variables name the entry point and the source: a
    # plain Model needs no repack job (the SDK adds one per step for an entry_point)
    model = Model(
        image_uri=image, model_data=model_data, role=cfg.role_arn, sagemaker_session=session,
        env={"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": n["source"],
             "SAGEMAKER_CONTAINER_LOG_LEVEL": "20", "SAGEMAKER_REGION": cfg.region},
    )
    create = ModelStep("CreateModel", step_args=model.create(instance_type=inference_type))
    register = ModelStep("RegisterModel", step_args=model.register(
        content_types=["application/json", "text/csv"],
        response_types=["application/json", "text/csv"],
        inference_instances=[cfg.inference_instance_type],
        transform_instances=[cfg.inference_instance_type],
        model_package_group_name=n["model_group"],
        approval_status="PendingManualApproval",
    ))
    function_arn = f"arn:aws:lambda:{cfg.region}:{lambda_account}:function:{n['lambda']}"
    handler_file = Path(__file__).with_name("lambda_handler.py")
    function = (Lambda(function_arn=function_arn, session=session) if offline else Lambda(
        function_name=n["lambda"], execution_role_arn=str(cfg.lambda_role_arn),
        script=str(handler_file), handler="lambda_handler.handler", timeout=60,
        session=session))
    deploy = LambdaStep(
        "DeployEndpoint", lambda_func=function,
        inputs={"model_name": create.properties.ModelName,
                "project_name": cfg.project_name, "environment": cfg.environment,
                "instance_type": inference_type},
        outputs=[LambdaOutput(name, LambdaOutputTypeEnum.String)
                 for name in ("action", "endpoint_name", "endpoint_config_name")],
    )
    return Pipeline(name=n["pipeline"],
                    parameters=[n_clusters, n_components, data_file, training_type,
                                inference_type],
                    steps=[train, create, register, deploy], sagemaker_session=session)


def package_source(dest: Path) -> Path:
    """`source.tar.gz`: the installed custseg package, `train.py` and `inference.py`
    (which only call into it), and a `requirements.txt` of its dependencies pinned to
    the installed versions (the lock's, in a synced environment)."""
    import custseg

    package = Path(custseg.__file__).parent
    pins = []
    for requirement in metadata.requires("custseg") or []:
        if "extra ==" in requirement:
            continue
        name = re.split(r"[ ;<>=!~\[]", requirement, maxsplit=1)[0]
        marker = requirement.split(";", 1)[1].strip() if ";" in requirement else ""
        pins.append(f"{name}=={metadata.version(name)}" + (f" ; {marker}" if marker else ""))
    scripts = {
        "train.py": "import sys\n\nfrom custseg.sagemaker.train import main\n\n"
                    "sys.exit(main())\n",
        "inference.py": "from custseg.sagemaker.inference import (  # noqa: F401\n"
                        "    input_fn, model_fn, output_fn, predict_fn)\n",
        "requirements.txt": "\n".join(sorted(pins)) + "\n",
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w:gz") as tar:
        for path in sorted(package.rglob("*.py")):
            tar.add(path, arcname=f"custseg/{path.relative_to(package).as_posix()}")
        for name, text in scripts.items():
            staged = dest.parent / f".{name}"
            staged.write_text(text, encoding="utf-8")
            tar.add(staged, arcname=name)
            staged.unlink()
    return dest
