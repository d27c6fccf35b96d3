"""`custseg monitor ENDPOINT`: the model the endpoint serves, its training baseline, a
window of traffic (captured since a time, or a file), the drift figures, recorded in the
store (`store/drift`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from custseg.artifact.scorer import Model
from custseg.artifact.storage import load_model
from custseg.config import Config
from custseg.errors import DeployError, ModelError
from custseg.io.capture_files import CaptureFolder
from custseg.monitor.drift import DriftReport, compare
from custseg.monitor.traffic import Traffic, captured_traffic, file_traffic
from custseg.store.database import Store
from custseg.store.drift import record_drift
from custseg.store.endpoints import endpoint_record, endpoint_records

__all__ = ["MonitorResult", "deployed_model", "monitor_endpoint"]


@dataclass(frozen=True)
class MonitorResult:
    endpoint: str
    model_version: str
    source: str
    window_start: str | None
    notes: list[str]
    report: DriftReport
    record_id: int

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "model_version": self.model_version,
                "source": self.source, "window_start": self.window_start,
                "notes": self.notes, "id": self.record_id, **self.report.to_dict()}


def deployed_model(store: Store, endpoint: str, s3_endpoint_url: str | None
                   ) -> tuple[str, Model]:
    """The version the endpoint serves (GROUP/VERSION) and its model."""
    record = endpoint_record(store, endpoint)
    if record is None:
        names = [r["name"] for r in endpoint_records(store)]
        raise DeployError(f"no endpoint {endpoint!r} in the store (endpoints: "
                          f"{', '.join(names) or 'none'})")
    current = next((c for c in record["history"] if c["name"] == record["config_name"]), None)
    if current is None:
        raise DeployError(f"endpoint {endpoint!r} has no current config")
    model = load_model(current["artifact_uri"], s3_endpoint_url=s3_endpoint_url)
    return str(record["model_version"]), model


def baseline_of(model: Model, version: str) -> dict[str, Any]:
    baseline = model.meta.get("baseline")
    if not isinstance(baseline, dict):
        raise ModelError(
            f"model {version} has no training baseline to compare traffic with: it was "
            f"trained by a custseg that did not record one (artifact {model.uri}); train a "
            f"new version (`custseg run`) and deploy it to monitor this endpoint")
    return baseline


def _skipped(cfg: Config, model: Model) -> dict[str, str]:
    """Model inputs that data capture hashes or leaves out: not comparable."""
    capture = cfg.endpoint.capture
    if capture is None:
        return {}
    how = "hashed" if capture.pii_action == "hash" else "left out"
    return {name: f"PII: {how} by data capture" for name in capture.pii
            if name in model.input_columns}


def monitor_endpoint(cfg: Config, store: Store, endpoint: str, *, window: float,
                     data: str | None = None, user: str = "unknown") -> MonitorResult:
    """Compare the endpoint's traffic with its model's baseline and record the report:
    the records captured in the last `window` seconds, or the file `data`."""
    version, model = deployed_model(store, endpoint, cfg.s3.endpoint_url)
    baseline = baseline_of(model, version)
    window_start = None
    if data is not None:
        traffic: Traffic = file_traffic(model, data, cfg.s3.endpoint_url, {})
    else:
        start = datetime.now(UTC) - timedelta(seconds=window)
        window_start = start.isoformat(timespec="seconds")
        folder = CaptureFolder(store.artifacts, endpoint, cfg.s3.endpoint_url)
        traffic = captured_traffic(model, version, folder, start, _skipped(cfg, model))
    report = compare(baseline, traffic.window, cfg.monitor)
    notes = list(traffic.notes)
    if not report.enough:
        notes.append(f"only {report.records:,} records (monitor.min_records: "
                     f"{cfg.monitor.min_records}): figures shown, nothing flagged")
    record_id = record_drift(store, endpoint, version, traffic.source, window_start,
                             report.to_dict(), user)
    return MonitorResult(endpoint, version, traffic.source, window_start, notes, report,
                         record_id)
