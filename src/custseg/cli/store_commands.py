"""`custseg executions ...` and `custseg models ...`: reading and changing the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from custseg.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    JsonOpt,
    fail,
    open_config_store,
    print_table,
)
from custseg.errors import CustsegError
from custseg.store.executions import execution, executions

if TYPE_CHECKING:
    from custseg.config import Config

__all__ = ["executions_app", "metric_space", "model_ref", "models_app", "silhouette_note"]

executions_app = typer.Typer(help="Past runs: list, describe, draw.", no_args_is_help=True)
models_app = typer.Typer(
    help="The model registry: list, describe, approve, reject, import.", no_args_is_help=True
)


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


# -- executions ------------------------------------------------------------------------------


@executions_app.command("list")
def executions_list(
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option(help="Most recent N.")] = 20,
) -> None:
    """Past executions, newest first."""
    _, store = open_config_store(config)
    rows = executions(store, limit)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    print_table(
        ["id", "status", "started (UTC)", "Train", "model version"],
        [
            [
                r.id,
                r.status,
                r.started_at[:19].replace("T", " "),
                r.step("Train").status,
                r.step("RegisterModel").outputs.get("ref"),
            ]
            for r in rows
        ],
    )


@executions_app.command("describe")
def executions_describe(
    execution_id: Annotated[str, typer.Argument(help="Execution id.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
) -> None:
    """One execution: parameters, each step's status, timing, error, outputs and why it ran."""
    _, store = open_config_store(config)
    record = execution(store, execution_id)
    if as_json:
        typer.echo(json.dumps(record.to_dict(), indent=2))
        return
    out = typer.echo
    out(f"Execution {record.id}: {record.status}")
    out(f"Pipeline: {record.pipeline_name} v{record.pipeline_version}")
    out(f"Started: {record.started_at}  Ended: {record.ended_at or '-'}")
    out(f"By: {record.user} on {record.host} (pid {record.pid})")
    if record.error:
        out(f"Error: {record.error}")
    for step in record.steps:
        out(f"- {step.name}: {step.status} ({_secs(step.seconds)})")
        if step.cached_from:
            out(f"    cached from execution {step.cached_from}")
        if step.reason:
            out(f"    why: {step.reason}")
        if step.error:
            out(f"    error: {step.error}")
        for key in ("model_uri", "ref", "approval_status", "endpoint_name", "endpoint_config_name"):
            if key in step.outputs:
                out(f"    {key}: {step.outputs[key]}")
        for line in step.outputs.get("warnings") or []:
            out(f"    warning: {line}")
    out("Parameters: " + json.dumps(record.parameters, sort_keys=True))


@executions_app.command("graph")
def executions_graph(
    execution_id: Annotated[str, typer.Argument(help="Execution id.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="SVG file.")] = None,
) -> None:
    """Draw the execution graph (steps coloured by status, with durations) as SVG."""
    from custseg.pipeline.graph import render_svg

    _, store = open_config_store(config)
    record = execution(store, execution_id)
    path = output or Path(f"execution-{record.id}.svg")
    try:
        path.write_text(render_svg(record), encoding="utf-8")
    except OSError as exc:
        raise fail(CustsegError(f"cannot write {path}: {exc}")) from None
    typer.echo(f"Wrote {path}")


# -- models ----------------------------------------------------------------------------------

GroupOpt = Annotated[
    str | None,
    typer.Option("--group", help="Model package group (default: {project_name}-model-group)."),
]


def _group(cfg: Config, group: str | None) -> str:
    from custseg.store.registry import group_name

    return group or group_name(cfg.project_name)


def model_ref(ref: str, group: str) -> tuple[str, int] | None:
    """A model version named on the command line, as (group, version): `GROUP/VERSION`,
    or a bare version number in `group` (the config's model group); None for anything
    else (an execution id, an artifact path or URI). `report`, `predict` and
    `models describe` take a model this way."""
    from custseg.store.registry import parse_ref

    return parse_ref(ref) or ((group, int(ref)) if ref.isdigit() else None)


def silhouette_note(silhouette: dict[str, Any]) -> str:
    """How a recorded silhouette was computed, in the words of `run`'s summary and the
    report: `exact`, or `sampled: N of M rows, 95% CI LOW to HIGH`."""
    if silhouette.get("exact", True) or not silhouette.get("sample_size"):
        return "exact"
    n = silhouette.get("n")
    note = f"sampled: {int(silhouette['sample_size']):,}{f' of {int(n):,}' if n else ''} rows"
    ci = silhouette.get("ci95")
    return note + (f", 95% CI {ci[0]:.4f} to {ci[1]:.4f}" if ci else "")


def metric_space(lineage: dict[str, Any]) -> str | None:
    """The space KMeans ran in and the metrics were computed in (`PCA, 10 components (87%
    of the variance)`), as recorded; from n_components for a model that did not record it."""
    space = (lineage.get("metrics") or {}).get("space")
    if space:
        return str(space)
    p = (lineage.get("parameters") or {}).get("n_components")
    return f"PCA, {p} component{'s' if p != 1 else ''}" if isinstance(p, int) else None


@models_app.command("list")
def models_list(
    config: ConfigOpt = DEFAULT_CONFIG, group: GroupOpt = None, as_json: JsonOpt = False
) -> None:
    """Every version in the model group."""
    from custseg.store.registry import packages

    cfg, store = open_config_store(config)
    found = packages(store, _group(cfg, group))
    if as_json:
        typer.echo(json.dumps([p.to_dict() for p in found], indent=2))
        return
    print_table(
        ["version", "status", "created (UTC)", "k", "silhouette", "rows"],
        [
            [
                p.version,
                p.approval_status.value,
                p.created_at[:16].replace("T", " "),
                p.lineage["metrics"]["k"],
                f"{p.lineage['metrics']['silhouette']['value']:.4f}",
                f"{p.lineage['rows']:,}",
            ]
            for p in found
        ],
    )


@models_app.command("import")
def models_import(
    archive: Annotated[str, typer.Argument(
        help="A SageMaker-trained model.tar.gz: a local file, s3:// (s3.endpoint_url), or "
             "a model package ARN (arn:aws:sagemaker:REGION:ACCOUNT:model-package/NAME/N).")],
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
) -> None:
    """Bring a model trained on SageMaker into the store, as the group's next version."""
    from custseg.config import load_config
    from custseg.sagemaker.model_import import import_model

    cfg = load_config(config)
    store = cfg.open_store()
    pkg = import_model(store, cfg, archive)
    if as_json:
        typer.echo(json.dumps(pkg.to_dict(), indent=2))
        return
    typer.echo(f"Model {pkg.ref}: {pkg.approval_status.value} (imported from {archive})")
    typer.echo(f"Artifact: {pkg.artifact_uri}")
    on_sagemaker = pkg.lineage.get("model_package_approval_status")
    if on_sagemaker:
        typer.echo(f"On SageMaker: {on_sagemaker} (not carried over: approve it here with "
                   f"`custseg models approve {pkg.version}`)")


@models_app.command("describe")
def models_describe(
    version: Annotated[str, typer.Argument(
        help="A version number (in --group) or GROUP/VERSION.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    group: GroupOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A model version with its lineage and approval history."""
    from custseg.errors import RegistryError
    from custseg.store.registry import package

    cfg, store = open_config_store(config)
    ref = model_ref(version, _group(cfg, group))
    if ref is None:
        raise RegistryError(f"expected a version number or GROUP/VERSION, found {version!r} "
                            f"(see `custseg models list`)")
    pkg = package(store, *ref)
    if as_json:
        lin = pkg.lineage
        typer.echo(json.dumps(pkg.to_dict() | {"schema": lin.get("schema"),
                                               "warnings": lin.get("warnings", [])}, indent=2))
        return
    lin = pkg.lineage
    out = typer.echo
    out(f"Model {pkg.ref}: {pkg.approval_status.value}")
    out(f"Artifact: {pkg.artifact_uri}")
    out(f"Execution: {lin['execution_id']} (trained by {lin['trained_by_execution']})")
    if lin.get("imported_from"):
        status = lin.get("model_package_approval_status")
        out(f"Imported from: {lin['imported_from']}"
            + (f" (on SageMaker: {status})" if status else ""))
    out(f"Data: {lin['data_uri']} ({lin['rows']:,} rows, sha256 {lin['data_sha256']})")
    code = lin["code_version"]
    out(
        f"Code: custseg {code['package']}, source sha256 {code.get('source_sha256', '?')[:12]}, "
        f"git {code.get('git_commit') or 'unknown'}"
    )
    details = lin.get("engine_details") or {}
    where = (f" (Spark {details.get('spark_version')} on {details.get('master')})"
             if details.get("spark_version") else "")
    if details.get("spark_version") and details.get("remote"):
        where = (f" (Spark {details.get('spark_version')} over Spark Connect at "
                 f"{details['remote']}, master {details.get('master') or 'unknown'})")
    out(f"Engine: {lin['engine']}{where}; previous version: {lin['previous_version'] or '-'}")
    m = lin["metrics"]
    out(
        f"Metrics: k={m['k']}, silhouette {m['silhouette']['value']:.4f} "
        f"({silhouette_note(m['silhouette'])}), "
        f"Calinski-Harabasz {m['calinski_harabasz']:.2f}, "
        f"Davies-Bouldin {m['davies_bouldin']:.4f}"
    )
    space = metric_space(lin)
    if space:
        out(f"Space: {space}")
    fs = m.get("feature_space")
    if fs:
        out(f"In the feature space: silhouette {fs['silhouette']['value']:.4f} "
            f"({silhouette_note(fs['silhouette'])}), "
            f"Calinski-Harabasz {fs['calinski_harabasz']:.2f}, "
            f"Davies-Bouldin {fs['davies_bouldin']:.4f}")
    sizes = m.get("cluster_sizes", [])
    for i, name in enumerate(lin.get("segment_names") or []):
        size = f" - {sizes[i]:,} customers" if i < len(sizes) else ""
        out(f"  segment {i}: {name}{size}")
    out("Parameters: " + json.dumps(lin["parameters"], sort_keys=True))
    for line in lin.get("warnings") or []:
        out(f"warning: {line}")
    out("History:")
    for h in pkg.history:
        out(
            f"- {h['at']} {h['by']}: {h['from_status'] or '(new)'} -> {h['to_status']}"
            + (f" ({h['comment']})" if h["comment"] else "")
        )


def _set_status(
    version: int, to: str, config: Path, group: str | None, comment: str | None, by: str | None
) -> None:
    from custseg.pipeline.deploy import review
    from custseg.store.registry import ApprovalStatus, current_user

    cfg, store = open_config_store(config)
    pkg, live = review(store, cfg, _group(cfg, group), version, ApprovalStatus(to),
                       by=by or current_user(), comment=comment)
    typer.echo(
        f"Model {pkg.ref}: {pkg.history[-1]['from_status']} -> "
        f"{pkg.approval_status.value} (by {pkg.history[-1]['by']})"
    )
    if live is not None:
        typer.echo(
            f"Endpoint: {live.endpoint_name} -> {live.endpoint_config_name} ({live.action}, "
            f"{live.status}{', ' + live.url if live.url else ''})"
        )
    if pkg.approval_status == ApprovalStatus.REJECTED:
        from custseg.store.endpoints import wanted_configs

        for name, row in wanted_configs(store).items():
            if (row["group_name"], row["version"]) == (pkg.group, pkg.version):
                typer.echo(f"warning: {pkg.ref} stays live on endpoint {name}: rejecting a "
                           f"version does not undeploy it; `custseg endpoints rollback {name}` "
                           f"returns the endpoint to the config it served before", err=True)


CommentOpt = Annotated[str | None, typer.Option("--comment", help="Why (kept in the audit).")]
ByOpt = Annotated[str | None, typer.Option("--by", help="Who (default: the OS user).")]


@models_app.command("approve")
def models_approve(
    version: Annotated[int, typer.Argument(help="Model version.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    group: GroupOpt = None,
    comment: CommentOpt = None,
    by: ByOpt = None,
) -> None:
    """Approve a version (and deploy it when deploy.require_approval is set)."""
    _set_status(version, "Approved", config, group, comment, by)


@models_app.command("reject")
def models_reject(
    version: Annotated[int, typer.Argument(help="Model version.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    group: GroupOpt = None,
    comment: CommentOpt = None,
    by: ByOpt = None,
) -> None:
    """Reject a version."""
    _set_status(version, "Rejected", config, group, comment, by)
