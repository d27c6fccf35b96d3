"""The training job's entry point: `python -m custseg.sagemaker.train` inside SageMaker.

SageMaker's scikit-learn container runs it with the hyperparameters as `--name value`
arguments (and in `/opt/ml/input/config/hyperparameters.json`), the training channel's
files in `SM_CHANNEL_TRAINING` and an empty `SM_MODEL_DIR`. It trains exactly as
`custseg run` does (the local engine: schema inference, transforms, choice of k,
metrics, profiles), writes the same artifact (sha256 manifest, no pickle) into
`SM_MODEL_DIR`, `metrics.json` into `SM_OUTPUT_DATA_DIR`, and prints the three metric
lines of `custseg.sagemaker.metrics` for the TrainingStep's metric definitions.

Hyperparameters: `n-clusters`, `n-components`, `data-file` (the pipeline parameters),
and `custseg-config`, the rest of the config as one JSON object. A bad value, an unknown
hyperparameter or a config key that cannot be honoured here fails the job with a
one-line reason in `/opt/ml/output/failure` (SageMaker's FailureReason) and on stderr.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from custseg.errors import ConfigError, CustsegError

__all__ = ["HYPERPARAMETERS", "config_from_hyperparameters", "main", "read_hyperparameters"]

# hyperparameter -> config key
HYPERPARAMETERS = {
    "n-clusters": "n_clusters",
    "n-components": "n_components",
    "data-file": "data_file",
    "custseg-config": None,
}
# config keys that describe the local machine, not the training: the job decides them
NOT_IN_JOB = ("data_uri", "store", "store_password_env", "artifacts", "engine", "spark",
              "endpoint", "deploy")


def read_hyperparameters(argv: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    """The hyperparameters, from `--name value` arguments, else from hyperparameters.json
    (whose values the SDK writes JSON-encoded). Raises ConfigError for anything else."""
    found: dict[str, str] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.removeprefix("--").partition("=")
        if not arg.startswith("--") or name not in HYPERPARAMETERS:
            raise ConfigError(f"training job argument {arg!r}: expected --NAME VALUE with NAME "
                              f"one of {', '.join(HYPERPARAMETERS)}")
        if not eq:
            if i + 1 >= len(args):
                raise ConfigError(f"training job argument {arg!r} has no value")
            value = args[i + 1]
            i += 1
        found[name] = value
        i += 1
    config_dir = Path(environ.get("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config"))
    file = config_dir / "hyperparameters.json"
    if file.is_file():
        try:
            stored = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {file}: {exc}") from exc
        for name, raw in stored.items():
            if name.startswith("sagemaker_") or name in found:
                continue
            if name not in HYPERPARAMETERS:
                raise ConfigError(f"hyperparameter {name!r} in {file}: expected one of "
                                  f"{', '.join(HYPERPARAMETERS)}")
            found[name] = _decoded(raw)
    return found


def _decoded(raw: Any) -> str:
    """A hyperparameters.json value: the SDK JSON-encodes framework hyperparameters."""
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            return raw
        return value if isinstance(value, str) else raw
    return json.dumps(raw)


def config_from_hyperparameters(hyper: Mapping[str, str], channel: str) -> Any:
    """The Config the job trains with: `custseg-config`, then the three pipeline
    parameters over it, the data read from `channel`."""
    from custseg.config import config_from_dict, parse_override

    data: dict[str, Any] = {}
    if "custseg-config" in hyper:
        try:
            data = json.loads(hyper["custseg-config"])
        except ValueError as exc:
            raise ConfigError(f"hyperparameter custseg-config is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError("hyperparameter custseg-config: expected a JSON object of "
                              f"config keys, found {type(data).__name__}")
    honoured = {k: v for k, v in data.items() if k in NOT_IN_JOB}
    if honoured.get("engine", "local") != "local":
        raise ConfigError(f"custseg-config: engine {honoured['engine']!r} cannot run in a "
                          f"SageMaker training job (it trains with the local engine)")
    data = {k: v for k, v in data.items() if k not in NOT_IN_JOB} | {"data_uri": channel}
    overrides: dict[str, Any] = {}
    for name, key in HYPERPARAMETERS.items():
        if key is not None and name in hyper:
            raw = hyper[name]  # a number, `auto` or `{min: 2, max: 8}`, read as `-p` reads it
            overrides[key] = raw if key == "data_file" else parse_override(f"{key}={raw}")[1]
    return config_from_dict(data, overrides, config_dir=Path(channel),
                            source="(training job hyperparameters)")


class _LogReporter:
    """Progress as plain lines on stderr (CloudWatch keeps them), one per stage."""

    def __init__(self) -> None:
        self.last: str | None = None

    def stage(self, name: str, fraction: float) -> None:
        if name != self.last:
            self.last = name
            print(f"custseg: {name}", file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        print(f"custseg: {message}", file=sys.stderr, flush=True)


def _write_artifact(model: Any, model_dir: Path) -> None:
    from custseg.artifact.format import artifact_files

    if (model_dir / "manifest.json").exists():
        raise CustsegError(f"SM_MODEL_DIR {model_dir} already holds a model artifact")
    model_dir.mkdir(parents=True, exist_ok=True)
    files = artifact_files(model)
    for name in (*(n for n in files if n != "manifest.json"), "manifest.json"):
        (model_dir / name).write_bytes(files[name])  # the manifest last: it marks completion


def train(argv: Sequence[str], environ: Mapping[str, str]) -> dict[str, Any]:
    """Run the job; returns the model's metrics."""
    from custseg.engines.base import TrainRequest
    from custseg.engines.local import LocalEngine
    from custseg.pipeline.steps import code_version
    from custseg.sagemaker.metrics import metric_lines

    missing = [v for v in ("SM_CHANNEL_TRAINING", "SM_MODEL_DIR") if not environ.get(v)]
    if missing:
        raise ConfigError(f"{' and '.join(missing)} not set: this entry point runs inside a "
                          f"SageMaker training job (or a simulated /opt/ml layout)")
    cfg = config_from_hyperparameters(read_hyperparameters(argv, environ),
                                      environ["SM_CHANNEL_TRAINING"])
    job = json.loads(environ.get("SM_TRAINING_ENV", "{}") or "{}").get("job_name")
    request = TrainRequest(execution_id=str(job or "sagemaker-training-job"), data_sha256=None,
                           previous=None, code_version=code_version().to_json())
    model = LocalEngine().train(cfg, request, _LogReporter())
    _write_artifact(model, Path(environ["SM_MODEL_DIR"]))
    metrics: dict[str, Any] = model.meta["metrics"]
    if environ.get("SM_OUTPUT_DATA_DIR"):
        out = Path(environ["SM_OUTPUT_DATA_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    for line in metric_lines(metrics):
        print(line, flush=True)
    return metrics


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """The entry point: 0 when the artifact is written, else the error's exit code with
    its one-line reason on stderr and in SageMaker's failure file."""
    # the edge of a training job: SageMaker hands everything over in SM_* variables
    env = os.environ if environ is None else environ
    try:
        train(sys.argv[1:] if argv is None else argv, env)
    except CustsegError as exc:
        print(f"Error: {exc}", file=sys.stderr, flush=True)
        failure = Path(env.get("SM_OUTPUT_DIR", "/opt/ml/output")) / "failure"
        try:
            failure.parent.mkdir(parents=True, exist_ok=True)
            failure.write_text(str(exc)[:1000], encoding="utf-8")
        except OSError:
            pass  # not in a job (no /opt/ml): stderr has the reason
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
