"""`custseg run --target sagemaker [--wait]`: start an execution there, and follow it.

Without `--wait` the execution's ARN is printed and the command returns. With it, each
step's status is printed to stderr as it changes; at the end stdout gets what a local
run prints (the steps, the seed's three metric lines, the model, the endpoint), or with
`--json` one JSON document, also when the execution failed or the wait timed out. A
failure exits with the failing step's code (custseg.sagemaker.follow); Ctrl-C leaves the
execution running on SageMaker, says so with its ARN and exits 130.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer

from custseg.cli.common import err_console, parse_duration

if TYPE_CHECKING:
    from custseg.config import Config
    from custseg.pipeline.targets import SageMakerTarget
    from custseg.sagemaker.follow import Followed, StepState

__all__ = ["parse_duration", "run_on_sagemaker"]

LABELS = {"silhouette_score": "Silhouette Score",
          "calinski_harabasz_score": "Calinski-Harabasz Index",
          "davies_bouldin_score": "Davies-Bouldin Index"}
COLOURS = {"Succeeded": "green", "Failed": "red", "Stopped": "red", "Stopping": "yellow"}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _print_step(step: StepState) -> None:
    colour = COLOURS.get(step.status, "cyan")
    took = f" ({_duration(step.seconds)})" if step.ended else ""
    why = f": {' '.join(step.failure_reason.split())}" if step.failure_reason else ""
    err_console().print(f"{step.name}: [{colour}]{step.status}[/]{took}{why}", soft_wrap=True,
                        markup=True)


def _print_started(started: dict[str, Any]) -> None:
    typer.echo(f"Started {started['pipeline']} on SageMaker: {started['execution_arn']} "
               f"({started['status']})")
    typer.echo("Parameters: " + ", ".join(f"{k}={v}" for k, v in started["parameters"].items()))


def _print_summary(followed: Followed) -> None:
    out = typer.echo
    out(f"Execution: {followed.arn}: {followed.status} ({_duration(followed.seconds)})")
    for step in followed.steps:
        out(f"{step.name}: {step.status} ({_duration(step.seconds)})")
    for name, label in LABELS.items():
        value = followed.metrics.get(name)
        out(f"{label}: {value:.6f}" if value is not None else f"{label}: not reported")
    if followed.training_job:
        out(f"Training job: {followed.training_job}")
    if followed.model_package_arn:
        out(f"Model package: {followed.model_package_arn} "
            f"({followed.model_approval_status or 'approval status unknown'})")
        out(f"  into the local store: custseg models import {followed.model_package_arn}")
    endpoint = followed.endpoint.get("endpoint_name")
    if endpoint:
        action = followed.endpoint.get("action", "deployed")
        config = followed.endpoint.get("endpoint_config_name", "?")
        out(f"Endpoint: {endpoint} -> {config} ({action}; InService once SageMaker has "
            f"started it: aws sagemaker describe-endpoint --endpoint-name {endpoint})")


def run_on_sagemaker(where: SageMakerTarget, cfg: Config, *, wait: bool, interval: float,
                     timeout: float, as_json: bool) -> None:
    """Start an execution; with `wait`, follow it to its end and exit as it ended."""
    started = where.start(cfg)
    if not wait:
        if as_json:
            typer.echo(json.dumps(started, indent=2))
        else:
            _print_started(started)
        return
    arn = started["execution_arn"]
    err_console().print(f"Started {started['pipeline']} on SageMaker: {arn}; following it "
                        f"(every {interval:g} s, at most {_duration(timeout)}; Ctrl-C stops "
                        f"following, not the execution)", soft_wrap=True, markup=False)
    try:
        followed = where.wait(cfg, arn, interval=interval, timeout=timeout,
                              on_change=_print_step)
    except KeyboardInterrupt:
        err_console().print(f"[bold red]interrupted:[/] stopped following; the execution keeps "
                            f"running on SageMaker: {arn} (stop it with `aws sagemaker "
                            f"stop-pipeline-execution --pipeline-execution-arn {arn}`)",
                            soft_wrap=True)
        raise typer.Exit(130) from None
    from custseg.sagemaker.follow import error_for

    error = error_for(followed, timeout)
    if as_json:
        typer.echo(json.dumps(started | followed.to_json(), indent=2, default=str))
    elif error is None:
        _print_summary(followed)
    if error is not None:
        raise error
