"""The drift section of an endpoint: the results `custseg monitor` records per endpoint,
newest first, or "no monitoring results yet".

The reading is `drift_results`, one function over `store/drift` (the `drift_reports`
table that `custseg monitor` fills).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from custseg.store.database import Store
from custseg.store.drift import drift_history
from custseg.ui.layout import badge, e, table, when

__all__ = ["drift_results", "drift_section"]

def drift_results(store: Store, endpoint: str, limit: int = 20) -> list[dict[str, Any]]:
    """The monitor's results for `endpoint` as plain records, newest first."""
    return [dataclasses.asdict(r) for r in drift_history(store, endpoint, limit)]


def _figure(value: Any, digits: int = 3) -> str:
    return "-" if value is None else e(f"{float(value):.{digits}f}")


def drift_section(results: list[dict[str, Any]] | None, endpoint: str) -> str:
    """The endpoint page's drift history (markup)."""
    head = "<h2>Drift</h2>"
    if not results:
        return (f'{head}<p class="muted" id="drift">No monitoring results yet: '
                f"<code>custseg monitor {e(endpoint)}</code> compares the captured traffic "
                f"with the training baseline and records its figures here.</p>")
    rows = [[when(r.get("created_at")), e(r.get("model_version", "-")),
             e(r.get("source", "-")), e(f"{int(r.get('records') or 0):,}"),
             badge("drift" if r.get("drift") else "ok"), _figure(r.get("max_psi")),
             _figure(r.get("segment_psi")), _figure(r.get("far_share")),
             e("; ".join(map(str, r.get("alerts") or [])) or "-")] for r in results]
    return head + '<div id="drift">' + table(
        ["checked (UTC)", "model version", "traffic", "records", "verdict", "max feature PSI",
         "segment PSI", "beyond p95 distance", "alerts"], rows) + "</div>"
