"""Deploy benchmark: model switches of a live custseg endpoint under sustained load.

Setup: a store with two model versions of the same endpoint. `custseg run` on
`custseg sample --rows 100000 --segments 3 --seed 0` (cached in `benchmarks/.cache/`)
with `endpoint: {autostart: true, port: P, workers: 2}` trains v1 (k=3), starts the
store's background server (2 uvicorn workers) and deploys v1; a second run with
`-p n_clusters=4` registers v2 and switches the endpoint to it.

What is measured, while wrk sends single records ({"Age": 30, "Income": 50000,
"Purchases": 10, "Gender": "Male"}) at concurrency 8 for the whole test (one thread,
`--timeout 5s`, `benchmarks/wrk_post.lua`; stopped with SIGINT at the end, which makes
wrk print its figures as at the end of a timed run):

* 20 updates alternating between v1 and v2 (v2 is live at the start, so the first goes
  to v1), 1 s apart after each switch is seen. An update is what a deploy does, from
  Python: `custseg.store.endpoints.create_or_update(store, ...)` with the version's artifact
  (`custseg.store.registry.package`), then
  `custseg.pipeline.deploy.wait_until_served(store, endpoint,
  config)`, which returns once every server worker reports serving the new config.
* A poller thread sends single records in a tight loop on a new connection each time (so
  that the kernel hands them to either worker, not always the same one) and records
  when each response arrived and its X-Custseg-Model-Version header.
* Per update, from the start of the `create_or_update` call (perf_counter): the first
  response with the new version (the switch time of the brief), the return of
  `wait_until_served` (the deploy command's own wait), and the last response with the
  old version (after which the poller saw only the new one; requests already in flight
  on the old model may finish after the switch, by design).
* Failed requests over the whole run: wrk's socket errors (connect, read, write, timeout)
  and responses with a status > 399, plus the poller's non-200 responses and exceptions.

Targets: switch (first response with the new version) median < 2 s (SPEC section 9:
"model switch under 2 s after the command"; the max is reported too); zero failed
requests across the 20 updates under load.

Usage: uv run --group bench python benchmarks/bench_deploy.py [--updates 20]
Prints the tables and writes benchmarks/out/bench_deploy-<UTC time>.json and .md.
Exit status 0 when every target passes, 1 otherwise. The background server is stopped
at the end (`custseg endpoints delete`, then its process group is killed if need be).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_serve import (
    CUSTSEG,
    ONE_RECORD,
    TRAIN_ROWS,
    WORKERS,
    BenchError,
    Rows,
    Wrk,
    WrkResult,
    custseg_run,
    free_port,
    group_members,
    machine_info,
    print_report,
    write_config,
    write_outputs,
)
from bench_train import code_version, ensure_csv

PROJECT, ENVIRONMENT = "clustering-model", "dev"  # write_config keeps the defaults
CONNECTIONS = 8
SWITCH_TARGET_S = 2.0
SEEN_TIMEOUT_S = 30.0  # an update whose new version is not seen within this fails the run


# -- the poller --------------------------------------------------------------------------

@dataclass(frozen=True)
class Response:
    at: float  # perf_counter when the response was read
    version: str | None
    status: int
    latency_s: float


class Poller(threading.Thread):
    """POST one record in a tight loop, a new connection per request; keep every answer."""

    def __init__(self, port: int, path: str, body: bytes) -> None:
        super().__init__(daemon=True)
        self.port, self.path, self.body = port, path, body
        self.responses: list[Response] = []
        self.errors: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        headers = {"Content-Type": "application/json", "Connection": "close"}
        while not self._stop_event.is_set():
            start = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("POST", self.path, self.body, headers)
                r = conn.getresponse()
                version = r.getheader("X-Custseg-Model-Version")
                r.read()
                now = time.perf_counter()
                self.responses.append(Response(now, version, r.status, now - start))
                if r.status != 200:
                    self.errors.append(f"HTTP {r.status} at {now:.3f}")
            except (OSError, http.client.HTTPException) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc} at {time.perf_counter():.3f}")
            finally:
                conn.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)

    def first_since(self, since: float, version: str) -> float | None:
        """When the first response with `version` arrived after `since` (scans backwards)."""
        found = None
        for r in reversed(self.responses):
            if r.at < since:
                break
            if r.version == version:
                found = r.at
        return found


# -- updates -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Update:
    index: int
    to_version: str
    from_version: str
    config: str
    started: float  # perf_counter at the create_or_update call
    served_s: float  # wait_until_served returned, seconds after `started`
    first_new_s: float | None = None  # first poller response with the new version
    last_old_s: float | None = None  # last poller response with the old version
    old_after_new: int = 0  # old-version responses after the first new one
    max_latency_s: float | None = None  # slowest poller response arriving in the window


def run_updates(store: Any, endpoint: str, versions: dict[str, Any], start_on: str,
                poller: Poller, n: int, gap_s: float) -> list[Update]:
    from custseg.pipeline.deploy import wait_until_served
    from custseg.store.endpoints import create_or_update

    refs = list(versions)
    live, updates = start_on, []
    for i in range(n):
        target = refs[(refs.index(live) + 1) % len(refs)]
        pkg = versions[target]
        started = time.perf_counter()
        deployment = create_or_update(store, project=PROJECT, environment=ENVIRONMENT,
                                      group=pkg.group, version=pkg.version,
                                      artifact_uri=pkg.artifact_uri,
                                      execution_id=pkg.execution_id)
        wait_until_served(store, deployment.endpoint, deployment.config)
        served = time.perf_counter() - started
        deadline = started + SEEN_TIMEOUT_S
        while poller.first_since(started, target) is None and time.perf_counter() < deadline:
            time.sleep(0.01)
        seen = poller.first_since(started, target)
        print(f"  update {i + 1:2d}: {live} -> {target}  served after {served:.3f} s, first "
              f"seen after " + (f"{seen - started:.3f} s" if seen else "NEVER"), flush=True)
        updates.append(Update(i, target, live, deployment.config, started, served))
        live = target
        time.sleep(gap_s)
    return updates


def analyse(updates: list[Update], poller: Poller, end: float) -> list[Update]:
    """Fill in first-new, last-old and old-after-new from the poller's responses."""
    done = []
    for i, u in enumerate(updates):
        until = updates[i + 1].started if i + 1 < len(updates) else end
        window = [r for r in poller.responses if u.started <= r.at < until]
        new = [r.at for r in window if r.version == u.to_version]
        old = [r.at for r in window if r.version == u.from_version]
        first_new = min(new) if new else None
        done.append(Update(
            **{**asdict(u), "first_new_s": None if first_new is None else first_new - u.started,
               "last_old_s": max(old) - u.started if old else None,
               "old_after_new": sum(1 for t in old if first_new is not None and t > first_new),
               "max_latency_s": max((r.latency_s for r in window), default=None)}))
    return done


# -- report ------------------------------------------------------------------------------

UPDATE_HEADER = ["#", "to", "first response with new version s", "wait_until_served s",
                 "last response with old version s", "old after first new",
                 "poller max latency ms"]
SUMMARY_HEADER = ["measure", "median", "max", "min"]
LOAD_HEADER = ["source", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "socket errors",
               "status > 399 / non-200", "failed"]
VERDICT_HEADER = ["target", "measured", "limit", "verdict"]


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _stats(values: list[float]) -> list[str]:
    if not values:
        return ["-", "-", "-"]
    return [f"{statistics.median(values):.3f}", f"{max(values):.3f}", f"{min(values):.3f}"]


def update_rows(updates: list[Update]) -> Rows:
    return [[str(u.index + 1), "v" + u.to_version.rsplit("/", 1)[-1], _s(u.first_new_s),
             _s(u.served_s), _s(u.last_old_s), str(u.old_after_new),
             "-" if u.max_latency_s is None else f"{u.max_latency_s * 1000:.1f}"]
            for u in updates]


def summary_rows(updates: list[Update]) -> Rows:
    first = [u.first_new_s for u in updates if u.first_new_s is not None]
    old = [u.last_old_s for u in updates if u.last_old_s is not None]
    return [["first response with the new version (s)", *_stats(first)],
            ["wait_until_served returned (s)", *_stats([u.served_s for u in updates])],
            ["last response with the old version (s)", *_stats(old)]]


def _pct(latencies: list[float], q: float) -> str:
    if not latencies:
        return "-"
    return f"{latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000:.2f}"


def load_rows(wrk: WrkResult, poller: Poller, seconds: float, first_update: float) -> Rows:
    """wrk's figures, and the poller's over the run and before the first update."""
    latencies = sorted(r.latency_s for r in poller.responses)
    before = [r for r in poller.responses if r.at < first_update]
    lead = sorted(r.latency_s for r in before)
    lead_s = first_update - min((r.at - r.latency_s for r in before), default=first_update)
    poller_failed = len(poller.errors)
    return [
        [f"wrk, c={CONNECTIONS}", f"{wrk.requests:,}", f"{wrk.rps:,.0f}",
         f"{wrk.p50_us / 1000:.2f}", f"{wrk.p99_us / 1000:.2f}", f"{wrk.max_us / 1000:.2f}",
         str(wrk.socket_errors), str(wrk.status), str(wrk.socket_errors + wrk.status)],
        ["poller (new connection each)", f"{len(poller.responses):,}",
         f"{len(poller.responses) / seconds:,.0f}", _pct(latencies, 0.5), _pct(latencies, 0.99),
         _pct(latencies, 1.0), "-", str(sum(r.status != 200 for r in poller.responses)),
         str(poller_failed)],
        ["  poller, before the first update", f"{len(lead):,}",
         f"{len(lead) / lead_s:,.0f}" if lead_s > 0 else "-", _pct(lead, 0.5),
         _pct(lead, 0.99), _pct(lead, 1.0), "-", "-", "-"],
    ]


def verdicts(updates: list[Update], wrk: WrkResult, poller: Poller) -> list[dict[str, Any]]:
    first = [u.first_new_s for u in updates]
    seen = [x for x in first if x is not None]
    median = statistics.median(seen) if seen else float("inf")
    failed = wrk.socket_errors + wrk.status + len(poller.errors)
    return [
        {"target": "switch: first response with the new version, median",
         "value": f"{median:.3f} s", "limit": f"< {SWITCH_TARGET_S:.0f} s",
         "passed": median < SWITCH_TARGET_S},
        {"target": "switch, max", "value": f"{max(seen):.3f} s" if seen else "-",
         "limit": f"(< {SWITCH_TARGET_S:.0f} s: SPEC)",
         "passed": bool(seen) and max(seen) < SWITCH_TARGET_S},
        {"target": "updates whose new version was seen", "value": f"{len(seen)} of {len(first)}",
         "limit": "all", "passed": len(seen) == len(first)},
        {"target": "failed requests over the run (wrk + poller)", "value": str(failed),
         "limit": "0", "passed": failed == 0},
    ]


# -- main --------------------------------------------------------------------------------

def stop_server(config: Path, endpoint: str, pgid: int | None) -> None:
    """`custseg endpoints delete` (stops the background server); kill what is left."""
    subprocess.run([CUSTSEG, "endpoints", "delete", endpoint, "-c", str(config)],
                   capture_output=True, stdin=subprocess.DEVNULL, timeout=60, check=False)
    if pgid is None:
        return
    deadline = time.monotonic() + 15
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if group_members(pgid):
        print(f"WARNING: the server's process group {pgid} outlived `endpoints delete`: "
              f"killing it", file=sys.stderr)
        with suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="custseg model switches under wrk load")
    parser.add_argument("--updates", type=int, default=20, help="number of updates (20)")
    parser.add_argument("--gap", type=float, default=1.0,
                        help="seconds between a switch being seen and the next update (1)")
    args = parser.parse_args(argv)
    if args.updates < 1 or args.gap < 0:
        parser.error("--updates must be >= 1 and --gap >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install -y wrk)")
    from custseg.serving.server import running_server
    from custseg.store import registry
    from custseg.store.database import Store
    from custseg.store.endpoints import endpoint_name

    started_utc = datetime.now(UTC).isoformat(timespec="seconds")
    context: dict[str, Any] = {
        "command": " ".join(["uv run --group bench python benchmarks/bench_deploy.py", *argv]),
        "started_utc": started_utc, "code": code_version(),
        "loadavg": {"start": os.getloadavg()}, "workers": WORKERS,
        "connections": CONNECTIONS, "gap_s": args.gap,
    }
    csv_path = ensure_csv(TRAIN_ROWS)
    work = Path(tempfile.mkdtemp(prefix="bench_deploy-"))
    endpoint = endpoint_name(PROJECT, ENVIRONMENT)
    port = free_port()
    config = write_config(work, csv_path, port,
                          endpoint={"autostart": True, "port": port, "workers": WORKERS})
    body = work / "single.json"
    body.write_text(json.dumps(ONE_RECORD))
    pgid: int | None = None
    wrk: Wrk | None = None
    poller: Poller | None = None
    try:
        print("training v1 (k=3; starts the server) and v2 (k=4) ...", flush=True)
        first = custseg_run(config)
        store = Store.open(str(work / "store"))
        server = running_server(store)
        if server is None:
            raise BenchError("custseg run did not start the background server")
        pgid = server.pid  # started with start_new_session: its pid is its process group
        second = custseg_run(config, "n_clusters=4")
        group = registry.group_name(PROJECT)
        versions = {p.ref: p for p in (registry.package(store, group, first["model_version"]),
                                       registry.package(store, group, second["model_version"]))}
        path = f"/endpoints/{endpoint}/invocations"
        poller = Poller(port, path, body.read_bytes())
        load_start = time.perf_counter()
        wrk = Wrk(f"{server.url}{path}", body, CONNECTIONS, 3600)
        poller.start()
        time.sleep(2.0)
        updates = run_updates(store, endpoint, versions, list(versions)[1], poller,
                              args.updates, args.gap)
        time.sleep(1.0)
        poller.stop()
        end = time.perf_counter()
        wrk_result = wrk.finish(interrupt=True)
        wrk = None
        seconds = end - load_start
        context["loadavg"]["end_of_measurements"] = os.getloadavg()
        context["code_at_end"] = code_version()
        if context["code_at_end"] != context["code"]:
            print("WARNING: custseg's code changed during the measurements", flush=True)
    finally:
        if wrk is not None:
            wrk.kill()
        if poller is not None and poller.is_alive():
            poller.stop()
        stop_server(config, endpoint, pgid)
        shutil.rmtree(work, ignore_errors=True)
    context["machine"] = machine_info()
    updates = analyse(updates, poller, end)
    vs = verdicts(updates, wrk_result, poller)
    sections = [
        (f"Updates ({args.updates}, seconds from the create_or_update call)", UPDATE_HEADER,
         update_rows(updates)),
        ("Switch times (s)", SUMMARY_HEADER, summary_rows(updates)),
        (f"Load over the whole run ({seconds:.1f} s)", LOAD_HEADER,
         load_rows(wrk_result, poller, seconds, updates[0].started)),
        ("Targets", VERDICT_HEADER,
         [[v["target"], v["value"], v["limit"], "PASS" if v["passed"] else "FAIL"] for v in vs]),
    ]
    print_report(sections)
    report = {"benchmark": "bench_deploy", **context, "seconds_under_load": seconds,
              "versions": {ref: p.artifact_uri for ref, p in versions.items()},
              "updates": [asdict(u) for u in updates], "wrk": asdict(wrk_result),
              "poller": {"responses": len(poller.responses), "errors": poller.errors[:100],
                         "versions_seen": sorted({str(r.version) for r in poller.responses})},
              "verdicts": vs}
    write_outputs("bench_deploy", started_utc, report, sections)
    return 0 if all(v["passed"] for v in vs) else 1


if __name__ == "__main__":
    sys.exit(main())
