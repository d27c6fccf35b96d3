"""The overview: the endpoints and their traffic, the versions waiting for review, the
latest executions, and each endpoint's latest drift verdict."""

from __future__ import annotations

from custseg.store.database import Store
from custseg.store.endpoints import endpoint_records
from custseg.store.executions import executions
from custseg.store.registry import ApprovalStatus, packages
from custseg.ui.drift import drift_results
from custseg.ui.endpoints import REFRESH, endpoints_table
from custseg.ui.executions import executions_table
from custseg.ui.layout import Frame, badge, href, link, page, table, when
from custseg.ui.models import live_versions, models_table
from custseg.ui.traffic import Traffic

__all__ = ["overview_page"]


def _drift(store: Store, names: list[str]) -> str:
    rows = []
    for name in names:
        found = drift_results(store, name, limit=1)
        latest = found[0] if found else None
        verdict = ("<span class='muted'>no monitoring results yet</span>" if latest is None
                   else badge("drift" if latest.get("drift") else "ok"))
        rows.append([link(href("endpoints", name), name), verdict,
                     when(latest.get("created_at")) if latest else "-"])
    return "<h2>Drift</h2>" + table(["endpoint", "latest verdict", "checked (UTC)"], rows)


def overview_page(store: Store, frame: Frame, traffic: Traffic) -> str:
    live = [r for r in endpoint_records(store) if r["status"] != "Deleted"]
    pending = [p for p in packages(store) if p.approval_status == ApprovalStatus.PENDING]
    latest = executions(store, 5)
    body = ["<h2>Endpoints</h2>", endpoints_table(live, traffic) if live else
            "<p class='muted'>No endpoints yet.</p>",
            f"<h2>Waiting for review ({len(pending)})</h2>",
            models_table(pending, live_versions(store)) if pending else
            "<p class='muted'>No version waits for review.</p>",
            "<h2>Latest executions</h2>", executions_table(latest) if latest else
            "<p class='muted'>No executions yet: <code>custseg run</code> starts one.</p>",
            f"<p>{link(href('executions'), 'All executions')} · "
            f"{link(href('models'), 'All model versions')}</p>"]
    if live:
        body.append(_drift(store, [r["name"] for r in live]))
    return page("Overview", "".join(body), frame, refresh=REFRESH)
