"""The `custseg` command line (typer). The function signatures are the CLI contract.

Every command exits 0 on success; a user error prints a one-line cause to stderr and
exits with its CustsegError branch's code (config 2, data 3, train 4, model 5).
Heavy modules are imported inside the commands so that `custseg --help` stays fast.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from custseg.cli.common import DEFAULT_CONFIG, ConfigOpt, err_console, fail, open_config_store
from custseg.cli.schema import print_candidates, print_schema_lines, print_warnings
from custseg.errors import CustsegError
from custseg.pipeline.records import Deployed, Registered, Trained

if TYPE_CHECKING:
    from rich.console import Console

    from custseg.pipeline.runner import Execution

__all__ = ["app", "main"]

app = typer.Typer(
    name="custseg",
    help="Customer segmentation: CSV to a versioned, live segmentation model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class _RichReporter:
    """Shows each stage of a run as a line with a spinner and its elapsed time.

    Transient, and started only at the first stage: on failure stderr holds only the
    error line. Notes (cache hits, deployments) are printed with the summary.
    """

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<24}"),
            BarColumn(bar_width=24),
            TimeElapsedColumn(),
            console=console,
            transient=True,  # on failure, stderr holds only the error line
        )
        self.current: Any = None
        self.name: str | None = None
        self.started = False

    def __enter__(self) -> _RichReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish()
        if self.started:
            self.progress.stop()

    def _finish(self) -> None:
        if self.current is not None:
            self.progress.update(self.current, completed=1.0)
            self.progress.stop_task(self.current)

    def note(self, message: str) -> None:
        return None  # kept in Execution.notes, printed with the summary

    def stage(self, name: str, fraction: float) -> None:
        if not self.started:
            self.progress.start()
            self.started = True
        group = name.split(" k=")[0]
        if group != self.name:
            self._finish()
            self.name = group
            self.current = self.progress.add_task(name, total=1.0)
        self.progress.update(self.current, description=name, completed=fraction)


class _QuietReporter:
    """The reporter when stderr is not a terminal (a pipe, a file, CI): rich's transient
    progress would draw nothing there, so rich (30 ms of imports) is not loaded for it."""

    def __enter__(self) -> _QuietReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def note(self, message: str) -> None:
        return None  # kept in Execution.notes, printed with the summary

    def stage(self, name: str, fraction: float) -> None:
        return None


def _reporter() -> _RichReporter | _QuietReporter:
    """Stage lines on a terminal; nothing elsewhere (where rich would draw nothing)."""
    return _RichReporter(err_console()) if sys.stderr.isatty() else _QuietReporter()


def _parse_overrides(params: list[str]) -> dict[str, Any]:
    from custseg.config import parse_override

    return dict(parse_override(p) for p in params)


def _print_summary(execution: Execution, s3_endpoint_url: str | None = None,
                   api_key_env: str | None = None) -> None:
    m = execution.metrics or {}
    sil = m.get("silhouette", {})
    note = (
        "exact"
        if sil.get("exact")
        else f"sampled: {sil.get('sample_size'):,} of {sil.get('n'):,} rows, "
        f"95% CI {sil['ci95'][0]:.4f} to {sil['ci95'][1]:.4f}"
    )
    out = typer.echo
    for note_line in execution.notes:
        out(note_line)
    for name, rec in execution.steps.items():
        secs = f"{rec.seconds:.2f} s" if rec.seconds is not None else "-"
        extra = f" from execution {rec.cached_from}" if rec.cached_from else ""
        out(f"{name}: {rec.status.value} ({secs}){extra}")
    trained = execution.steps["Train"].outputs
    assert isinstance(trained, Trained)  # run() raised otherwise
    if trained.schema.get("columns"):
        print_schema_lines(trained.schema["columns"])
    selection = trained.selection or {}
    model = execution.model
    if selection.get("swept") and model is not None:
        print_candidates(model.meta["candidates"], m.get("k", 0), selection.get("sentence", ""))
    out(f"Silhouette Score: {sil.get('value'):.6f} ({note})")
    out(f"Calinski-Harabasz Index: {m.get('calinski_harabasz'):.6f}")
    out(f"Davies-Bouldin Index: {m.get('davies_bouldin'):.6f}")
    fs = m.get("feature_space")
    if fs:
        fsil = fs["silhouette"]
        how = "exact" if fsil["exact"] else f"sampled: {fsil['sample_size']:,} rows"
        out(f"In the feature space: silhouette {fsil['value']:.6f} ({how}), "
            f"Calinski-Harabasz {fs['calinski_harabasz']:.6f}, "
            f"Davies-Bouldin {fs['davies_bouldin']:.6f} (above: {m.get('space', 'PCA space')})")
    out(f"Inertia: {m.get('inertia'):.6f}")
    print_warnings(execution.warnings)
    sizes = m.get("cluster_sizes", [])
    total = sum(sizes) or 1
    names = execution.segment_names or [str(i) for i in range(len(sizes))]
    swept = selection.get("swept", True)
    how_k = f"chosen by {m.get('selection_metric')}" if swept else "fixed"
    out(f"Segments (k={m.get('k')}, {how_k}):")
    for i, (size, name) in enumerate(zip(sizes, names, strict=False)):
        out(f"  {i}: {name} - {size:,} customers ({100 * size / total:.1f}%)")
    out(f"Execution: {execution.id}")
    out(f"Model: {execution.model_uri}")
    registered = execution.steps["RegisterModel"].outputs
    if isinstance(registered, Registered):
        out(f"Model version: {registered.ref} ({registered.approval_status})")
    step = execution.steps["DeployEndpoint"]
    d = step.outputs
    if isinstance(d, Deployed):
        out(f"Endpoint: {d.endpoint_name} -> {d.endpoint_config_name} ({d.action}, {d.status})")
        if d.note:
            out(f"  {d.note}")
        if d.url:
            _print_examples(d.url, d.endpoint_name, execution.model_uri, s3_endpoint_url,
                            api_key_env)
    elif step.reason:
        out(f"Endpoint: not deployed ({step.reason})")


def _print_examples(
    url: str, endpoint: str, model_uri: str | None, s3_endpoint_url: str | None,
    api_key_env: str | None = None,
) -> None:
    """Ready-to-paste calls of the live endpoint, with a record the model accepts."""
    from custseg.artifact.storage import load_model

    record: dict[str, Any] = {"Age": 30, "Income": 50000, "Purchases": 10, "Gender": "Male"}
    if model_uri:
        t = load_model(model_uri, s3_endpoint_url=s3_endpoint_url).transform
        record = {c: round(float(m), 2) for c, m in zip(t.numeric, t.medians, strict=True)}
        record |= dict(zip(t.categorical, t.modes, strict=True))
    body = json.dumps(record)
    out = typer.echo
    out(f"URL: {url}/endpoints/{endpoint}/invocations")
    key_header = f' -H "X-Api-Key: ${api_key_env}"' if api_key_env else ""
    key_attribute = (f', CustomAttributes="api_key=" + os.environ["{api_key_env}"]'
                     if api_key_env else "")
    out(
        f"  curl -s {url}/endpoints/{endpoint}/invocations -H 'Content-Type: application/json'"
        f"{key_header} -d '{body}'"
    )
    out(
        f'  boto3.client("sagemaker-runtime", endpoint_url="{url}", region_name="us-east-1", '
        f'aws_access_key_id="x", aws_secret_access_key="x").invoke_endpoint('
        f'EndpointName="{endpoint}", ContentType="application/json", Body=json.dumps({body})'
        f'{key_attribute})'
    )


TargetOpt = Annotated[str, typer.Option(
    "--target", help="Where the pipeline runs: local, or sagemaker (run starts an execution "
                     "there and prints its ARN; --wait follows it).")]


@app.command()
def run(
    config: ConfigOpt = DEFAULT_CONFIG,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "-p", "--param", help="Override a parameter for this run: NAME=VALUE (repeatable)."
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Retrain even when a cached result matches.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the execution as JSON.")] = False,
    target: TargetOpt = "local",
    wait: Annotated[bool, typer.Option(
        "--wait", help="--target sagemaker: follow the execution to its end, printing each "
                       "step's status, then its metrics, model package and endpoint.")] = False,
    timeout: Annotated[str | None, typer.Option(
        "--timeout", metavar="DURATION",
        help="With --wait: stop following after this long (90s, 30m, 2h; default 2h); the "
             "execution goes on.")] = None,
    poll_interval: Annotated[float | None, typer.Option(
        "--poll-interval", metavar="SECONDS", min=0.05,
        help="With --wait: seconds between two looks at the execution (default 15).")] = None,
) -> None:
    """Run the pipeline: Train -> CreateModel -> RegisterModel and DeployEndpoint."""
    from custseg.cli.sagemaker_run import parse_duration, run_on_sagemaker
    from custseg.config import load_config
    from custseg.errors import ConfigError
    from custseg.pipeline.targets import SageMakerTarget, target_for

    where = target_for(target)
    if not isinstance(where, SageMakerTarget) and (wait or timeout or poll_interval):
        raise ConfigError("--wait, --timeout and --poll-interval follow an execution on "
                          "SageMaker: use them with --target sagemaker (a local run is "
                          "always followed to its end)")
    if not wait and (timeout or poll_interval):
        raise ConfigError("--timeout and --poll-interval apply to --wait: add --wait")
    try:
        base = load_config(config)
        cfg = load_config(config, _parse_overrides(param or [])) if param else base
        data_hash = None
        if not isinstance(where, SageMakerTarget):  # both while numpy and pyarrow load
            from custseg.io.sources import fingerprint_in_background
            from custseg.pipeline.code_version import compute_in_background

            data_hash = fingerprint_in_background(cfg.data_location,
                                                  s3_endpoint_url=cfg.s3.endpoint_url)
            compute_in_background()
        if isinstance(where, SageMakerTarget):
            run_on_sagemaker(where, cfg, wait=wait, interval=poll_interval or 15.0,
                             timeout=parse_duration(timeout or "2h", "--timeout"),
                             as_json=as_json)
            return
        with _reporter() as reporter:
            execution = where.run(cfg, reporter, no_cache=no_cache, base=base,
                                  data_hash=data_hash)
    except KeyboardInterrupt:
        recorded = ("the execution may have started on SageMaker: `aws sagemaker "
                    "list-pipeline-executions` lists it" if isinstance(where, SageMakerTarget)
                    else "the execution is recorded as Failed")
        err_console().print(f"[bold red]error:[/] interrupted; {recorded}", soft_wrap=True)
        raise typer.Exit(130) from None
    if as_json:
        typer.echo(json.dumps(_execution_json(execution), indent=2))
    else:
        _print_summary(execution, cfg.s3.endpoint_url, cfg.endpoint.api_key_env)
        typer.echo(f"Report: {execution.report}")


@app.command()
def deploy(
    config: ConfigOpt = DEFAULT_CONFIG,
    target: TargetOpt = "local",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the pipeline definition JSON instead of upserting it "
                          "(--target sagemaker; offline, no AWS credentials).")] = False,
) -> None:
    """Validate the config and upsert the pipeline definition (a new version when changed)."""
    from custseg.config import load_config
    from custseg.errors import ConfigError
    from custseg.pipeline.targets import SageMakerTarget, target_for

    where = target_for(target)
    cfg = load_config(config)
    if dry_run:
        if not isinstance(where, SageMakerTarget):
            raise ConfigError(f"--dry-run prints the SageMaker pipeline definition: use it "
                              f"with --target sagemaker (the {target} target has none)")
        typer.echo(json.dumps(where.definition(cfg), indent=2))
        return
    version, created, changes = where.deploy(cfg)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "pipeline": cfg.project_name,
                    "version": version,
                    "created": created,
                    "changes": changes,
                }
            )
        )
    elif not created:
        typer.echo(f"Pipeline {cfg.project_name} v{version} is up to date (unchanged)")
    elif version == 1:
        typer.echo(f"Pipeline {cfg.project_name} v1 created")
    else:
        typer.echo(
            f"Pipeline {cfg.project_name} v{version} created; changed: " + ", ".join(changes)
        )


def _execution_json(execution: Execution) -> dict[str, Any]:
    return {
        "id": execution.id,
        "status": execution.status.value,
        "pipeline_version": execution.pipeline_version,
        "metrics": execution.metrics,
        "model_uri": execution.model_uri,
        "model_version": execution.model_version,
        "endpoint": execution.endpoint,
        "parameters": execution.parameters,
        "notes": execution.notes,
        "warnings": execution.warnings,
        "report": execution.report,
        "steps": {
            n: {
                "status": s.status.value,
                "started": s.started,
                "ended": s.ended,
                "seconds": s.seconds,
                "error": s.error,
                "outputs": s.outputs.to_json() if s.outputs is not None else {},
                "cached_from": s.cached_from,
                "reason": s.reason,
            }
            for n, s in execution.steps.items()
        },
    }


@app.command()
def report(
    ref: Annotated[str, typer.Argument(help="An execution id, a model version, or GROUP/VERSION.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="HTML file.")] = None,
    profiles_csv: Annotated[
        Path | None,
        typer.Option(
            "--profiles-csv",
            metavar="FILE",
            help="Also write the segment profiles as CSV (one row per segment and feature).",
        ),
    ] = None,
) -> None:
    """Write the segment report (self-contained HTML) of an execution or model version."""
    from custseg.artifact.storage import load_model
    from custseg.cli.store_commands import model_ref
    from custseg.errors import StoreError
    from custseg.pipeline.report import default_path, write_report
    from custseg.store.executions import execution
    from custseg.store.registry import group_name, package

    cfg, store = open_config_store(config)
    parsed = model_ref(ref, group_name(cfg.project_name))
    if parsed is not None:
        pkg = package(store, *parsed)
        uri, title = pkg.artifact_uri, f"Segments of model {pkg.ref}"
        subtitle = f"execution {pkg.execution_id}, {pkg.approval_status.value}"
    else:
        record = execution(store, ref)
        uri = str(record.step("Train").outputs.get("model_uri") or "")
        if not uri:
            raise StoreError(f"execution {record.id} produced no model ({record.status})")
        title = f"Segments of execution {record.id}"
        subtitle = f"pipeline {record.pipeline_name} v{record.pipeline_version}"
    model = load_model(uri, s3_endpoint_url=cfg.s3.endpoint_url)
    path = write_report(model, output or default_path(store.folder, title), title,
                        subtitle, profiles_csv)
    typer.echo(f"Wrote {path}")
    if profiles_csv is not None:
        typer.echo(f"Wrote {profiles_csv}")


@app.command()
def predict(
    model: Annotated[
        str, typer.Option("--model", help="A model: a version number (in the config's "
                                          "model group), GROUP/VERSION, or an artifact "
                                          "path/URI.")
    ],
    input_uri: Annotated[str, typer.Option("--input", help="CSV or Parquet, local or s3://.")],
    output_uri: Annotated[str, typer.Option("--output", help="CSV or Parquet, local or s3://.")],
    rejects: Annotated[
        str | None,
        typer.Option(
            "--rejects", help="Where rows that fail validation go (default: OUTPUT.rejects.EXT)."
        ),
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first bad row.")] = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Score a whole file in constant memory: its columns plus cluster, segment, distance."""
    import os

    import custseg
    from custseg.cli.store_commands import model_ref
    from custseg.config import load_config
    from custseg.errors import ConfigError
    from custseg.io.predict import predict_file, rejects_path
    from custseg.store.registry import group_name, parse_ref

    cfg = load_config(config) if config.is_file() else None
    endpoint_url = cfg.s3.endpoint_url if cfg else None
    # as `report` takes it; a folder of that name is an artifact (as in custseg.load_model)
    folder = os.path.exists(model)
    version = None if folder else (
        model_ref(model, group_name(cfg.project_name)) if cfg else parse_ref(model))
    if version is None and not folder and model.isdigit():
        raise ConfigError(f"--model {model}: a version number is looked up in the model "
                          f"group of the config, and there is no {config}; pass -c CONFIG")
    ref = f"{version[0]}/{version[1]}" if version else model
    store = cfg.store_location if cfg and version else None
    loaded = custseg.load_model(ref, store, s3_endpoint_url=endpoint_url)
    if rejects is None:
        rejects = rejects_path(output_uri)
    size = _size(input_uri, endpoint_url)
    from rich.progress import Progress

    with Progress(console=err_console(), transient=True) as bar:
        task = bar.add_task("Scoring", total=size)
        summary = predict_file(
            loaded,
            input_uri,
            output_uri,
            rejects_uri=rejects,
            strict=strict,
            s3_endpoint_url=endpoint_url,
            progress=lambda done: bar.update(task, completed=done),
        )
    typer.echo(f"Scored {summary.scored:,} of {summary.rows:,} rows into {summary.output}")
    if summary.rejects:
        typer.echo(f"Rejected {summary.rejected:,} rows (reasons in {summary.rejects})")


def _size(uri: str, s3_endpoint_url: str | None) -> int | None:
    try:
        if uri.startswith("s3://"):
            from custseg.io.data import s3_filesystem

            return int(s3_filesystem(s3_endpoint_url).size(uri.removeprefix("s3://")))
        return Path(uri).stat().st_size
    except Exception:  # only the progress bar's total: unknown is fine
        return None


@app.command()
def sample(
    output: Annotated[
        Path, typer.Option("-o", "--output", help="CSV file to write (.csv or .csv.gz).")
    ],
    rows: Annotated[int, typer.Option("--rows", min=1, help="Number of customers.")] = 5000,
    segments: Annotated[int, typer.Option("--segments", min=1, help="Latent segments.")] = 3,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed.")] = 0,
) -> None:
    """Write realistic synthetic customers with known latent segments."""
    from custseg.io.sample_io import write_sample

    write_sample(output, rows=rows, segments=segments, seed=seed, console=err_console())
    typer.echo(f"Wrote {rows:,} customers in {segments} segments to {output}")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except CustsegError as exc:  # the one handler: a user error is one line and its code
        raise SystemExit(fail(exc).exit_code) from None
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    finally:
        gc.freeze()  # what is alive now lives until the exit: shutdown need not collect it


# the other command groups use the helpers above
from custseg.cli.endpoints import endpoints_app, serve, ui  # noqa: E402
from custseg.cli.monitor import monitor  # noqa: E402
from custseg.cli.schema import schema  # noqa: E402
from custseg.cli.store_commands import executions_app, models_app  # noqa: E402

app.command()(schema)
app.add_typer(executions_app, name="executions")
app.add_typer(models_app, name="models")
app.add_typer(endpoints_app, name="endpoints")
app.command()(serve)
app.command()(ui)
app.command()(monitor)

if __name__ == "__main__":
    main()
