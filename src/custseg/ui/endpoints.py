"""The endpoint pages: every endpoint with its status, model version and live traffic, and
one endpoint with its configs over time, its workers, its request rate and latency, the
rollback button and its drift history.

Rolling back goes through `pipeline.deploy.roll_back`, what `custseg endpoints rollback`
runs: the previous config, with the same checked switch as a deploy.
"""

from __future__ import annotations

from typing import Any

from custseg.errors import DeployError
from custseg.pipeline.deploy import roll_back
from custseg.store.database import Store
from custseg.store.endpoints import endpoint_record, endpoint_records
from custseg.ui.drift import drift_results, drift_section
from custseg.ui.layout import Frame, badge, e, form, href, link, page, table, when
from custseg.ui.traffic import EndpointTraffic, Traffic

__all__ = ["REFRESH", "endpoint_page", "endpoints_page", "endpoints_table", "roll_back_endpoint"]

REFRESH = 10  # seconds between the endpoint pages' reloads (the live figures)


def _ms(seconds: float | None, prefix: str = "") -> str:
    if seconds is None:
        return "-"
    if seconds == float("inf"):
        return "&gt; 2.5 s"
    return e(f"{prefix}{seconds * 1000:.1f} ms")


def _rate(value: float | None) -> str:
    return "-" if value is None else e(f"{value:.2f}/s")


def _version_link(ref: str | None) -> str:
    if not ref or "/" not in ref:
        return "-"
    group, _, version = ref.rpartition("/")
    return link(href("models", group, version), ref)


def endpoints_table(records: list[dict[str, Any]], traffic: Traffic) -> str:
    rows = []
    for r in records:
        t = traffic.figures(r["name"])
        rows.append([link(href("endpoints", r["name"]), r["name"]), badge(r["status"]),
                     _version_link(r["model_version"]), _rate(t.rate),
                     _ms(t.window_mean if t.window_mean is not None else t.mean_latency),
                     when(r["updated_at"])])
    return table(["endpoint", "status", "model version", "requests", "mean latency",
                  "changed (UTC)"], rows)


def endpoints_page(store: Store, frame: Frame, traffic: Traffic) -> str:
    records = [r for r in endpoint_records(store) if r["status"] != "Deleted"]
    body = (endpoints_table(records, traffic) if records else
            "<p class='muted'>No endpoints yet: <code>custseg run</code> deploys one.</p>")
    return page("Endpoints", body, frame, here="/endpoints", refresh=REFRESH)


def _traffic(t: EndpointTraffic) -> str:
    if t.span is None:
        window = (f"<p class='muted'>The rate shows from the next look (this page reloads "
                  f"every {REFRESH} s).</p>")
    else:
        window = ""
    figures = [("requests", _rate(t.rate)), ("errors", _rate(t.error_rate)),
               ("mean latency", _ms(t.window_mean)), ("p50 latency", _ms(t.p50, "≤ ")),
               ("p95 latency", _ms(t.p95, "≤ "))]
    cards = "".join(f"<div class='metric'><span class='muted'>{e(name)}</span><b>{value}</b>"
                    f"</div>" for name, value in figures)
    span = "" if t.span is None else e(f"over the last {t.span:.0f} s; ")
    since = e(f"since the server started: {t.total_requests:,} requests, "
              f"{t.total_errors:,} errors")
    if t.mean_latency is not None:
        since += ", mean latency " + _ms(t.mean_latency)
    return (f"<h2>Traffic</h2><div class='metrics' id='traffic'>{cards}</div>"
            f"<p class='muted'>{span}{since}</p>{window}")


def _history(record: dict[str, Any]) -> str:
    rows = []
    for h in reversed(record["history"]):
        mark = ("current" if h["name"] == record["config_name"] else
                "previous" if h["name"] == record["previous_config_name"] else "")
        rows.append([e(h["name"]), _version_link(f"{h['group_name']}/{h['version']}"),
                     link(href("executions", h["execution_id"]), h["execution_id"])
                     if h["execution_id"] else "-", when(h["created_at"]),
                     badge(mark) if mark else ""])
    return "<h2>Version history</h2>" + table(
        ["config", "model version", "execution", "created (UTC)", ""], rows)


def _workers(record: dict[str, Any]) -> str:
    rows = [[e(w["host_id"]), e(w["pid"]), e(w["config_name"] or "-"), badge(w["status"]),
             e(w["reason"] or ""), when(w["updated_at"])] for w in record["workers"]]
    return "<h2>Workers</h2>" + table(["host", "pid", "config", "status", "reason",
                                       "reported (UTC)"], rows) if rows else ""


def _rollback(record: dict[str, Any], frame: Frame) -> str:
    if len(record["history"]) < 2:
        return ""
    inner = ("<p class='muted'>Back to the config served before, with the same checked "
             "switch as a deploy (<code>custseg endpoints rollback</code>).</p>"
             "<button type='submit' id='rollback'>Roll back</button>")
    return "<h2>Rollback</h2>" + form(href("endpoints", record["name"], "rollback"),
                                      frame.csrf, inner, "review")


def endpoint_page(store: Store, frame: Frame, traffic: Traffic, name: str) -> str | None:
    """The endpoint's page; None when there is no such endpoint."""
    record = endpoint_record(store, name)
    if record is None:
        return None
    reason = f" <span class='muted'>{e(record['status_reason'])}</span>" \
        if record["status_reason"] else ""
    facts = table(["", ""], [
        ["status", badge(record["status"]) + reason],
        ["model version", f"<span id='model-version'>"
                          f"{_version_link(record['model_version'])}</span>"],
        ["config", e(record["config_name"])],
        ["previous config", e(record["previous_config_name"] or "-")],
        ["created (UTC)", when(record["created_at"])],
        ["changed (UTC)", when(record["updated_at"])]])
    body = (facts + _traffic(traffic.figures(name)) + _history(record) + _workers(record)
            + _rollback(record, frame) + drift_section(drift_results(store, name), name))
    return page(f"Endpoint {name}", body, frame, here="/endpoints", refresh=REFRESH)


def roll_back_endpoint(store: Store, name: str) -> str:
    """Roll endpoint `name` back: what happened, in words."""
    if endpoint_record(store, name) is None:
        raise DeployError(f"no endpoint {name!r}")
    done = roll_back(store, name)
    return f"Endpoint {name}: {done.previous_config} -> {done.config}"
