"""`custseg monitor ENDPOINT`: drift of captured (or given) traffic against the training
baseline, as a table, JSON or an HTML section; exit 1 with `--fail-on-drift` when a
threshold is crossed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from custseg.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    JsonOpt,
    open_config_store,
    parse_duration,
)
from custseg.errors import ConfigError

if TYPE_CHECKING:
    from custseg.monitor.check import MonitorResult

__all__ = ["monitor"]

DRIFT_EXIT = 1


def _data_uri(data: str) -> str:
    """A local --data path as given (relative to the current folder), or a URI."""
    return data if "://" in data else str(Path(data).expanduser().resolve())


def _cell(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _print(result: MonitorResult) -> None:
    from rich.console import Console
    from rich.table import Table

    r = result.report
    console = Console(highlight=False)
    console.print(f"Endpoint {result.endpoint} ({result.model_version}): {r.records:,} "
                  f"records from {result.source}")
    for note in result.notes:
        console.print(f"note: {note}")
    table = Table(header_style="bold")
    for name in ("feature", "kind", "PSI", "missing", "missing (training)", "unseen",
                 "wrong type", "drift"):
        table.add_column(name)
    for f in r.features:
        table.add_row(f.feature, f.kind, _cell(f.psi), _share(f.missing_share),
                      _share(f.training_missing_share), _share(f.unseen_share),
                      _share(f.invalid_share), ", ".join(f.drift) or (f.note or ""))
    console.print(table)
    if r.segments:
        s = r.segments
        p = "-" if s["p_value"] is None else f"{s['p_value']:.2g}"
        console.print(f"Segment shares: PSI {s['psi']:.3f}, chi-square p {p}; "
                      + ", ".join(f"{i}: {a:.1%} (training {b:.1%})" for i, (a, b) in
                                  enumerate(zip(s["shares"], s["training_shares"],
                                                strict=False))))
    if r.distance:
        console.print(f"Distance: {r.distance['far_share']:.1%} of records beyond the "
                      f"training 95th percentile (5% expected)")
    if r.schema["missing_columns"] or r.schema["extra_columns"]:
        console.print(f"Fields missing: {', '.join(r.schema['missing_columns']) or '-'}; "
                      f"not used by the model: {', '.join(r.schema['extra_columns']) or '-'}")
    if r.alerts:
        console.print("[bold red]Drift:[/]", markup=True)
        for alert in r.alerts:
            console.print(f"- {alert}")
    else:
        console.print("No drift past the thresholds.")


def monitor(
    endpoint: Annotated[str, typer.Argument(help="Endpoint name.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    since: Annotated[str | None, typer.Option(
        help="Window of captured traffic: 30m, 24h, 7d... (default: monitor.since).")] = None,
    data: Annotated[str | None, typer.Option(
        help="A CSV or Parquet file (local or s3://) to judge instead of captured traffic."
    )] = None,
    as_json: JsonOpt = False,
    html: Annotated[Path | None, typer.Option("--html", help="Write the report as HTML.")
                    ] = None,
    fail_on_drift: Annotated[bool, typer.Option(
        "--fail-on-drift", help="Exit 1 when any figure crosses its threshold.")] = False,
) -> None:
    """Drift of an endpoint's traffic against its model's training baseline."""
    from custseg.monitor.check import monitor_endpoint
    from custseg.store.registry import current_user

    if since is not None and data is not None:
        raise ConfigError("pass --since (captured traffic) or --data (a file), not both")
    cfg, store = open_config_store(config)
    window = parse_duration(since or cfg.monitor.since,
                            "--since" if since is not None else "monitor.since")
    result = monitor_endpoint(cfg, store, endpoint, window=window,
                              data=None if data is None else _data_uri(data),
                              user=current_user())
    payload: dict[str, Any] = result.to_dict()
    if html is not None:
        from custseg.monitor.html import drift_page

        html.write_text(drift_page(payload), encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
    else:
        _print(result)
        if html is not None:
            typer.echo(f"Wrote {html}")
    if fail_on_drift and result.report.drift:
        raise typer.Exit(code=DRIFT_EXIT)
