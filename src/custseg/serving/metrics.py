"""Prometheus metrics of the endpoint server, for the whole server: each worker counts
its own requests, records and latencies (per endpoint and model version), and shares a
snapshot in `<store>/metrics/<pid>.json` (written after each look at the store, when
changed); `/metrics`, whichever worker answers it, sums its live counters with the
other live workers' snapshots."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable
from itertools import accumulate
from pathlib import Path
from typing import Any

from custseg.store.database import process_alive

__all__ = ["BUCKETS", "CaptureCounts", "Metrics", "drift_metrics", "merged_metrics"]

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class CaptureCounts:
    """Data capture's records per endpoint and outcome: captured, dropped (the queue was
    full) and failed (a file that could not be written); added to by the request path
    and the capture thread, under one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self.changes = 0

    def add(self, endpoint: str, outcome: str, n: int) -> None:
        with self._lock:
            key = (endpoint, outcome)
            self._counts[key] = self._counts.get(key, 0) + n
            self.changes += 1

    def items(self) -> list[tuple[str, str, int]]:
        with self._lock:
            return [(e, o, n) for (e, o), n in self._counts.items()]


class Metrics:
    """Counters and a latency histogram, per endpoint and version; unseen categories per
    endpoint, version and feature; data capture's records per endpoint and outcome."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.records: dict[tuple[str, str], int] = defaultdict(int)
        # requests per latency bucket (not cumulative: /metrics adds them up)
        self.buckets: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(BUCKETS))
        self.sums: dict[tuple[str, str], float] = defaultdict(float)
        self.counts: dict[tuple[str, str], int] = defaultdict(int)
        self.unseen: dict[tuple[str, str, str], int] = defaultdict(int)
        self.capture = CaptureCounts()
        self.workers = 1
        self._observed = 0
        self._dumped = 0

    def observe(
        self, endpoint: str, version: str, status: int, seconds: float, records: int
    ) -> None:
        self._observed += 1
        self.requests[(endpoint, version, status)] += 1
        if status == 200:
            key = (endpoint, version)
            self.records[key] += records
            self.sums[key] += seconds
            self.counts[key] += 1
            i = bisect_left(BUCKETS, seconds)  # the first bound >= seconds
            if i < len(BUCKETS):  # kept per bucket; cumulative when rendered
                self.buckets[key][i] += 1

    def cumulative_buckets(self, endpoint: str, version: str) -> list[int]:
        """Requests at or under each bound of `BUCKETS` (as /metrics shows them)."""
        return list(accumulate(self.buckets.get((endpoint, version), [0] * len(BUCKETS))))

    def observe_unseen(self, endpoint: str, version: str, features: list[str],
                       counts: list[int]) -> None:
        """Categories the model never saw, per categorical feature, in a scored request."""
        self._observed += 1
        for feature, n in zip(features, counts, strict=True):
            if n:
                self.unseen[(endpoint, version, feature)] += n

    # -- sharing between workers ---------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "unseen": [[e, v, f, n] for (e, v, f), n in self.unseen.items()],
            "capture": [list(item) for item in self.capture.items()],
            "requests": [[e, v, s, n] for (e, v, s), n in self.requests.items()],
            "records": [[e, v, n] for (e, v), n in self.records.items()],
            "buckets": [[e, v, list(c)] for (e, v), c in self.buckets.items()],
            "sums": [[e, v, x] for (e, v), x in self.sums.items()],
            "counts": [[e, v, n] for (e, v), n in self.counts.items()],
        }

    def snapshot_if_changed(self) -> dict[str, Any] | None:
        changes = self._observed + self.capture.changes
        if changes == self._dumped:
            return None
        self._dumped = changes
        return self.snapshot()

    @staticmethod
    def dump(snapshot: dict[str, Any], folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(snapshot), encoding="utf-8")
        os.replace(tmp, path)

    def add(self, snapshot: dict[str, Any]) -> None:
        for e, v, s, n in snapshot.get("requests", []):
            self.requests[(e, v, int(s))] += int(n)
        for e, v, n in snapshot.get("records", []):
            self.records[(e, v)] += int(n)
        for e, v, counts in snapshot.get("buckets", []):
            mine = self.buckets[(e, v)]
            for i, n in enumerate(counts[: len(BUCKETS)]):
                mine[i] += int(n)
        for e, v, x in snapshot.get("sums", []):
            self.sums[(e, v)] += float(x)
        for e, v, n in snapshot.get("counts", []):
            self.counts[(e, v)] += int(n)
        for e, v, f, n in snapshot.get("unseen", []):
            self.unseen[(e, v, f)] += int(n)
        for e, outcome, n in snapshot.get("capture", []):
            self.capture.add(e, outcome, int(n))

    # -- the exposition format -----------------------------------------------------------
    def render(self) -> bytes:
        lines = [
            "# HELP custseg_workers Worker processes whose counters are summed here.",
            "# TYPE custseg_workers gauge",
            f"custseg_workers {self.workers}",
            "# HELP custseg_requests_total Invocations by endpoint, model version and "
            "HTTP status.",
            "# TYPE custseg_requests_total counter",
        ]
        for (ep, ver, status), n in sorted(self.requests.items()):
            lines.append(f'custseg_requests_total{{endpoint="{ep}",version="{ver}",'
                         f'status="{status}"}} {n}')
        lines += ["# HELP custseg_records_total Records scored.",
                  "# TYPE custseg_records_total counter"]
        for (ep, ver), n in sorted(self.records.items()):
            lines.append(f'custseg_records_total{{endpoint="{ep}",version="{ver}"}} {n}')
        lines += ["# HELP custseg_request_seconds Invocation latency.",
                  "# TYPE custseg_request_seconds histogram"]
        for (ep, ver), counts in sorted(self.buckets.items()):
            labels = f'endpoint="{ep}",version="{ver}"'
            for bound, n in zip(BUCKETS, accumulate(counts), strict=True):
                lines.append(f'custseg_request_seconds_bucket{{{labels},le="{bound}"}} {n}')
            total = self.counts[(ep, ver)]
            lines.append(f'custseg_request_seconds_bucket{{{labels},le="+Inf"}} {total}')
            lines.append(f"custseg_request_seconds_sum{{{labels}}} {self.sums[(ep, ver)]}")
            lines.append(f"custseg_request_seconds_count{{{labels}}} {total}")
        lines += ["# HELP custseg_unseen_categories_total Categories the model never saw "
                  "(scored as all zeros), by endpoint, version and feature.",
                  "# TYPE custseg_unseen_categories_total counter"]
        for (ep, ver, feature), n in sorted(self.unseen.items()):
            lines.append(f'custseg_unseen_categories_total{{endpoint="{ep}",version="{ver}",'
                         f'feature="{_label(feature)}"}} {n}')
        lines += ["# HELP custseg_capture_records_total Records of sampled requests: captured "
                  "(written to capture files), dropped (the capture queue was full), failed "
                  "(a file could not be written).",
                  "# TYPE custseg_capture_records_total counter"]
        for ep, outcome, n in sorted(self.capture.items()):
            lines.append(f'custseg_capture_records_total{{endpoint="{ep}",'
                         f'outcome="{outcome}"}} {n}')
        return ("\n".join(lines) + "\n").encode()


def _label(value: str) -> str:
    """A Prometheus label value: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def merged_metrics(own: Metrics, folder: Path) -> Metrics:
    """This worker's live counters plus every other live worker's last snapshot; the
    snapshots of workers that are gone are removed."""
    total = Metrics()
    total.add(own.snapshot())
    me = os.getpid()
    for path in folder.glob("*.json") if folder.is_dir() else []:
        try:
            pid = int(path.stem)
        except ValueError:
            continue
        if pid == me:
            continue
        if not process_alive(pid):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        try:
            total.add(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # being replaced right now: the next scrape has it
        total.workers += 1
    return total


_DRIFT_GAUGES: list[tuple[str, str, Callable[[Any], Any]]] = [
    ("custseg_drift_flagged", "1 when the last `custseg monitor` report crossed a threshold.",
     lambda r: int(r.drift)),
    ("custseg_drift_records", "Records the last report judged.", lambda r: r.records),
    ("custseg_drift_max_feature_psi", "The largest feature PSI of the last report.",
     lambda r: r.max_psi),
    ("custseg_drift_segment_psi", "Segment-share PSI of the last report.",
     lambda r: r.segment_psi),
    ("custseg_drift_far_share", "Share of records beyond the training 95th percentile "
     "distance in the last report (5% expected).", lambda r: r.far_share),
]


def drift_metrics(records: list[Any]) -> bytes:
    """The last drift figures of each endpoint (`store.drift.DriftRecord`s), as gauges."""
    lines: list[str] = []
    for name, help_text, value in _DRIFT_GAUGES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for r in records:
            v = value(r)
            if v is not None:
                lines.append(f'{name}{{endpoint="{_label(r.endpoint)}",'
                             f'version="{_label(r.model_version)}"}} {v}')
    lines += ["# HELP custseg_drift_feature_psi Each feature's PSI in the last report.",
              "# TYPE custseg_drift_feature_psi gauge"]
    for r in records:
        for f in r.report.get("features", []):
            if f.get("psi") is not None:
                lines.append(f'custseg_drift_feature_psi{{endpoint="{_label(r.endpoint)}",'
                             f'feature="{_label(f["feature"])}"}} {f["psi"]}')
    return ("\n".join(lines) + "\n").encode()
