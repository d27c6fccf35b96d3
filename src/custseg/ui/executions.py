"""The pipelines and executions pages: each pipeline's deployed definition and every run
with its status and model version; one run with its parameters, each step's status and
timing, and the execution graph (`pipeline/graph`'s SVG, inline)."""

from __future__ import annotations

import json

from custseg.pipeline.graph import render_svg
from custseg.store.database import Store
from custseg.store.executions import (
    ExecutionRow,
    StepRow,
    execution,
    executions,
    latest_pipeline,
)
from custseg.ui.layout import Frame, badge, e, href, link, page, table, when

__all__ = ["execution_page", "executions_page", "executions_table", "seconds"]


def seconds(value: float | None) -> str:
    return "-" if value is None else e(f"{value:.2f} s")


def _model_link(record: ExecutionRow) -> str:
    ref = next((s.outputs.get("ref") for s in record.steps if s.name == "RegisterModel"), None)
    if not ref or "/" not in str(ref):
        return "-"
    group, _, version = str(ref).rpartition("/")
    return link(href("models", group, version), ref)


def _total(record: ExecutionRow) -> float | None:
    timed = [s.seconds for s in record.steps if s.seconds is not None]
    return sum(timed) if timed else None


def executions_table(records: list[ExecutionRow]) -> str:
    rows = [[link(href("executions", r.id), r.id), badge(r.status), when(r.started_at),
             seconds(_total(r)), _model_link(r), e(r.user)] for r in records]
    return table(["execution", "status", "started (UTC)", "steps took", "model version",
                  "by"], rows)


def _pipelines(store: Store, records: list[ExecutionRow]) -> str:
    """The deployed definition of each pipeline these executions ran."""
    rows = []
    for name in sorted({r.pipeline_name for r in records}):
        latest = latest_pipeline(store, name)
        if latest is None:
            continue
        steps = " → ".join(s["name"] for s in latest.definition.get("steps", []))
        defaults = e(json.dumps(latest.definition.get("parameters", {}), sort_keys=True))
        rows.append([e(name), e(f"v{latest.version}"), e(latest.sha256[:12]), e(steps),
                     f"<code>{defaults}</code>"])
    return table(["pipeline", "definition", "sha256", "steps", "parameters (defaults)"],
                 rows) if rows else ""


def executions_page(store: Store, frame: Frame) -> str:
    records = executions(store, 100)
    body = (f"<h2>Pipelines</h2>{_pipelines(store, records)}<h2>Executions</h2>"
            f"{executions_table(records)}" if records else
            "<p class='muted'>No executions yet: <code>custseg run</code> starts one.</p>")
    return page("Pipelines and executions", body, frame, here="/executions")


def _step_row(step: StepRow) -> list[str]:
    why = step.error or step.reason or ""
    if step.cached_from:
        why = f"cached from {step.cached_from}" + (f"; {why}" if why else "")
    return [e(step.name), badge(step.status), when(step.started_at), when(step.ended_at),
            seconds(step.seconds), e(why or "-")]


def execution_page(store: Store, frame: Frame, execution_id: str) -> str:
    record = execution(store, execution_id)
    facts = table(["", ""], [
        ["status", badge(record.status)],
        ["pipeline", e(f"{record.pipeline_name} v{record.pipeline_version}")],
        ["started (UTC)", when(record.started_at)], ["ended (UTC)", when(record.ended_at)],
        ["by", e(f"{record.user} on {record.host} (pid {record.pid})")],
        ["model version", _model_link(record)],
        *([["error", e(record.error)]] if record.error else [])])
    steps = table(["step", "status", "started (UTC)", "ended (UTC)", "took", "why / error"],
                  [_step_row(s) for s in record.steps])
    params = e(json.dumps(record.parameters, indent=2, sort_keys=True))
    body = (f"{facts}<h2>Graph</h2><div class='graph' id='graph'>{render_svg(record)}</div>"
            f"<h2>Steps</h2>{steps}<h2>Parameters</h2><pre>{params}</pre>")
    return page(f"Execution {record.id}", body, frame, here="/executions")
