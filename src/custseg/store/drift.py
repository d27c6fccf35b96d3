"""`custseg monitor`'s reports, per endpoint over time: recorded with their headline
figures (for `/metrics` and the dashboard's history) and the whole report as JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from custseg.store.database import Store, now

__all__ = ["DriftRecord", "drift_history", "latest_drift", "record_drift"]


@dataclass(frozen=True)
class DriftRecord:
    id: int
    endpoint: str
    model_version: str
    source: str
    window_start: str | None
    records: int
    drift: bool
    max_psi: float | None
    segment_psi: float | None
    far_share: float | None
    alerts: list[str]
    report: dict[str, Any]
    created_at: str
    created_by: str


_COLUMNS = ("id, endpoint_name, model_version, source, window_start, records, drift, "
            "max_psi, segment_psi, far_share, alerts, report, created_at, created_by")


def _record(row: Any) -> DriftRecord:
    return DriftRecord(
        id=int(row["id"]), endpoint=row["endpoint_name"], model_version=row["model_version"],
        source=row["source"], window_start=row["window_start"], records=int(row["records"]),
        drift=bool(row["drift"]), max_psi=row["max_psi"], segment_psi=row["segment_psi"],
        far_share=row["far_share"], alerts=json.loads(row["alerts"]),
        report=json.loads(row["report"]), created_at=row["created_at"],
        created_by=row["created_by"])


def record_drift(store: Store, endpoint: str, model_version: str, source: str,
                 window_start: str | None, report: dict[str, Any], user: str) -> int:
    """Store a report (`monitor.drift.DriftReport.to_dict()`); its id."""
    psis = [f["psi"] for f in report["features"] if f.get("psi") is not None]
    segments, distance = report.get("segments") or {}, report.get("distance") or {}
    values = (endpoint, model_version, source, window_start, int(report["records"]),
              int(bool(report["drift"])), max(psis) if psis else None, segments.get("psi"),
              distance.get("far_share"), json.dumps(report["alerts"]), json.dumps(report),
              now(), user)
    with store.write() as conn:  # writers queue: the newest id is this one
        conn.execute(
            "INSERT INTO drift_reports (endpoint_name, model_version, source, window_start, "
            "records, drift, max_psi, segment_psi, far_share, alerts, report, created_at, "
            "created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
        row = conn.execute("SELECT MAX(id) AS id FROM drift_reports").fetchone()
    return int(row["id"])


def drift_history(store: Store, endpoint: str, limit: int = 100) -> list[DriftRecord]:
    """An endpoint's reports, newest first."""
    with store.read() as conn:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM drift_reports WHERE endpoint_name = ? "
                            f"ORDER BY id DESC LIMIT ?", (endpoint, limit)).fetchall()
    return [_record(r) for r in rows]


def latest_drift(store: Store) -> list[DriftRecord]:
    """Each endpoint's newest report."""
    with store.read() as conn:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM drift_reports WHERE id IN (SELECT MAX(id) FROM "
            f"drift_reports GROUP BY endpoint_name) ORDER BY endpoint_name").fetchall()
    return [_record(r) for r in rows]
