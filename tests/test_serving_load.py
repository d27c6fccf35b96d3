"""The endpoint server under awkward clients: a big batch does not stall one-record
requests on the same worker, and a body that never arrives is timed out. A real
`custseg serve` process with one worker on a free port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyarrow.csv as pacsv
import pytest
import yaml

from custseg.core.sample import generate_customers

CUSTSEG = Path(sys.executable).parent / "custseg"
RECORD = {"Age": 30, "Income": 50000, "Purchases": 10, "Gender": "Male"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("load")
    table, _ = generate_customers(1000, segments=3, seed=3)
    pacsv.write_csv(table, root / "customers.csv")
    port = free_port()
    (root / "pipeline_config.yaml").write_text(yaml.safe_dump({
        "data_uri": "customers.csv", "store": "store",
        "endpoint": {"port": port, "workers": 1, "autostart": False}}))
    run = subprocess.run([str(CUSTSEG), "run"], cwd=root, capture_output=True, text=True,
                         timeout=180, check=False)
    assert run.returncode == 0, run.stderr
    proc = subprocess.Popen([str(CUSTSEG), "serve"], cwd=root, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "/ping", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def post(url: str, body: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(url + "/invocations", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return int(r.status), r.read()


def test_batches_scored_off_the_event_loop_and_single_records_interleave_correctly(
        one_worker: str) -> None:
    """Two clients send 80,000-record batches (scored in a thread) while a third sends
    single records to the same worker: every answer is complete and right. (How long the
    single records wait is measured by benchmarks/bench_mixed.py, not asserted here.)"""
    records = [{**RECORD, "Age": 20 + i % 50, "Income": 20_000 + 1_000 * (i % 200)}
               for i in range(80_000)]
    batch = json.dumps(records).encode()  # 5.4 MB, under the 6 MB limit
    expected = json.loads(post(one_worker, batch)[1])["predictions"]
    errors: list[str] = []

    def send_batches() -> None:
        for _ in range(3):
            status, body = post(one_worker, batch)
            if status != 200 or json.loads(body)["predictions"] != expected:
                errors.append(f"batch: {status}")

    senders = [threading.Thread(target=send_batches) for _ in range(2)]
    for t in senders:
        t.start()
    singles = 0
    while any(t.is_alive() for t in senders):
        i = singles % 1000
        status, body = post(one_worker, json.dumps(records[i]).encode())
        assert status == 200
        got = json.loads(body)["predictions"][0]
        assert (got["cluster"], got["segment"]) == (expected[i]["cluster"],
                                                    expected[i]["segment"])
        assert got["distance"] == pytest.approx(expected[i]["distance"], rel=1e-9)
        singles += 1
    for t in senders:
        t.join()
    assert not errors
    assert singles > 0


def test_a_body_that_never_arrives_gets_408(one_worker: str) -> None:
    host, port = one_worker.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                  b"\r\nContent-Length: 100\r\n\r\n{\"Age\": 3")
        started = time.monotonic()
        reply = s.recv(4096)
        waited = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
    assert b"did not arrive within" in reply
    assert waited < 25


def test_connections_that_send_nothing_or_half_the_headers_are_closed(one_worker: str) -> None:
    host, port = one_worker.removeprefix("http://").split(":")
    silent = socket.create_connection((host, int(port)), timeout=30)
    partial = socket.create_connection((host, int(port)), timeout=30)
    partial.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Le")
    started = time.monotonic()
    try:
        assert silent.recv(100) == b""  # closed by the server, not by our timeout
        assert partial.recv(100) == b""
    finally:
        silent.close()
        partial.close()
    assert time.monotonic() - started < 25
    status, _ = post(one_worker, json.dumps(RECORD).encode())  # others are served as ever
    assert status == 200


def test_a_slow_body_that_keeps_arriving_is_served(one_worker: str) -> None:
    """The window is per gap, not per request: a body sent in pieces 6 s apart (12 s in
    all, over the 10 s window) is answered."""
    host, port = one_worker.removeprefix("http://").split(":")
    body = json.dumps(RECORD).encode()
    third = len(body) // 3
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                  b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        for piece in (body[:third], body[third : 2 * third], body[2 * third :]):
            time.sleep(6)
            s.sendall(piece)
        reply = b""
        while b"}]}" not in reply:  # the head and the body may come in two reads
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply[:100]
    assert b'"cluster"' in reply
