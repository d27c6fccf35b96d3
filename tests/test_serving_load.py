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


# -- the protocol's own path for small invocations (serving/http_protocol.py) --------------

def _responses(s: socket.socket, n: int) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """`n` responses read off a connection: status line, headers, body."""
    data, out = b"", []
    while len(out) < n:
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk, f"connection closed after {len(out)} responses"
            data += chunk
        head, data = data.split(b"\r\n\r\n", 1)
        status, *lines = head.split(b"\r\n")
        headers = dict(line.split(b": ", 1) for line in lines)
        if status.startswith(b"HTTP/1.1 100"):
            continue
        length = int(headers[b"content-length"])
        while len(data) < length:
            chunk = s.recv(65536)
            assert chunk
            data += chunk
        out.append((status, headers, data[:length]))
        data = data[length:]
    return out


def _sized(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _chunked(path: str, body: bytes) -> bytes:
    """The same request with its body in chunks: the ASGI path answers it."""
    half = len(body) // 2
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:half], body[half:]) if p)
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n").encode() + chunks + b"0\r\n\r\n"


@pytest.mark.parametrize(("path", "body", "status"), [
    ("/invocations", json.dumps(RECORD).encode(), 200),
    ("/invocations", json.dumps([RECORD, {**RECORD, "Age": 61}]).encode(), 200),
    ("/invocations", json.dumps([{**RECORD, "Age": 20 + i % 50} for i in range(3000)]
                                ).encode(), 200),  # 200 kB, in many reads
    ("/invocations", json.dumps({**RECORD, "Age": "old"}).encode(), 400),
    ("/invocations", b"{not json", 400),
    ("/endpoints/nope/invocations", json.dumps(RECORD).encode(), 404),
    ("/endpoints/a_b/invocations", json.dumps(RECORD).encode(), 400),
])
def test_small_invocations_answered_by_the_protocol_match_the_asgi_path(
        one_worker: str, path: str, body: bytes, status: int) -> None:
    host, port = one_worker.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(_sized(path, body))
        (fast,) = _responses(s, 1)
        s.sendall(_chunked(path, body))
        (asgi,) = _responses(s, 1)
    assert fast[0].split(b" ")[1] == str(status).encode()
    for got in (fast, asgi):
        got[1].pop(b"date")
    assert fast == asgi  # status line, headers (but the date) and body, byte for byte


def test_the_protocol_answers_what_the_app_would_score_on_the_event_loop() -> None:
    from custseg.serving.app import OFFLOAD_BYTES
    from custseg.serving.http_protocol import FAST_BYTES

    assert FAST_BYTES == OFFLOAD_BYTES  # bigger bodies are the app's, scored in a thread


def test_pipelined_requests_are_answered_in_order(one_worker: str) -> None:
    host, port = one_worker.removeprefix("http://").split(":")
    first, second = json.dumps(RECORD).encode(), json.dumps({**RECORD, "Age": 61}).encode()
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(_sized("/invocations", first) + b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
                  + _chunked("/invocations", second) + _sized("/invocations", second)
                  + _sized("/invocations", first))
        replies = _responses(s, 5)
    assert [r[0] for r in replies] == [b"HTTP/1.1 200 OK"] * 5
    assert replies[1][2] == b""  # the ping
    a, b = (json.loads(replies[i][2])["predictions"] for i in (0, 2))
    assert json.loads(replies[3][2])["predictions"] == b
    assert json.loads(replies[4][2])["predictions"] == a


def test_expect_continue_and_http_1_0_are_answered(one_worker: str) -> None:
    host, port = one_worker.removeprefix("http://").split(":")
    body = json.dumps(RECORD).encode()
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                  f"\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(body)
        (reply,) = _responses(s, 1)
        assert reply[0] == b"HTTP/1.1 200 OK"
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(_sized("/invocations", body).replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        (reply,) = _responses(s, 1)
        assert reply[0] == b"HTTP/1.1 200 OK" and reply[1][b"connection"] == b"close"
        assert s.recv(100) == b""  # and closed


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(one_worker: str) -> None:
    host, port = one_worker.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(_sized("/invocations", json.dumps(RECORD).encode()))
        assert _responses(s, 1)[0][0] == b"HTTP/1.1 200 OK"
        answered = time.monotonic()
        assert s.recv(100) == b""  # closed by the server
        idle = time.monotonic() - answered
    assert 4.5 < idle < 16  # uvicorn's 5 s keep-alive, checked by the connection's timer
