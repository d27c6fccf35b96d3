"""The endpoint server's workers (serving/workers): each listens on its own socket with
SO_REUSEPORT, so connections spread over all of them; a worker that dies is replaced;
stopping the server stops them all. A real `custseg serve` with 2 workers on a free port,
real processes killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyarrow.csv as pacsv
import pytest
import yaml

from custseg.core.sample import generate_customers

CUSTSEG = Path(sys.executable).parent / "custseg"
RECORD = json.dumps({"Age": 30, "Income": 50000, "Purchases": 10, "Gender": "Male"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def wait_until(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/ping", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    table, _ = generate_customers(600, segments=3, seed=1)
    pacsv.write_csv(table, tmp_path / "customers.csv")
    port = free_port()
    (tmp_path / "pipeline_config.yaml").write_text(yaml.safe_dump({
        "data_uri": "customers.csv", "store": "store",
        "endpoint": {"port": port, "workers": 2, "autostart": False}}))
    subprocess.run([str(CUSTSEG), "run"], cwd=tmp_path, check=True, capture_output=True,
                   timeout=180)
    proc = subprocess.Popen([str(CUSTSEG), "serve"], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}")
                   and len(workers(proc.pid, port)) == 2)
        yield proc, port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def listening_sockets(pid: int, port: int) -> int:
    """How many listening sockets on `port` the process `pid` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[1].endswith(f":{port:04X}") and parts[3] == "0A" and parts[9] in inodes:
                    count += 1
    return count


def workers(pid: int, port: int) -> set[int]:
    """The children of the server process that listen on its port."""
    return {w for w in children(pid) if listening_sockets(w, port)}


def test_each_worker_listens_on_its_own_socket_and_a_dead_worker_is_replaced(
        server: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, port = server
    listening = workers(proc.pid, port)
    assert len(listening) == 2
    assert all(listening_sockets(w, port) == 1 for w in listening)  # one socket each
    assert listening_sockets(proc.pid, port) == 0  # the supervisor holds, never listens
    victim = min(listening)
    os.kill(victim, signal.SIGKILL)
    # the kernel resets what was queued at the dead worker's socket in the first
    # milliseconds; once the supervisor has reaped it, every request is answered (by the
    # other worker, while a new one starts)
    wait_until(lambda: victim not in children(proc.pid))
    for _ in range(20):
        with urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations", data=RECORD.encode(),
                headers={"Content-Type": "application/json"}), timeout=10) as r:
            assert r.status == 200
    wait_until(lambda: len(workers(proc.pid, port)) == 2)
    assert victim not in children(proc.pid)


def test_stopping_the_server_stops_every_worker(
        server: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, port = server
    listening = workers(proc.pid, port)
    assert len(listening) == 2
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    wait_until(lambda: not any(Path(f"/proc/{w}").exists() for w in listening), timeout=20)
    with socket.socket() as s:  # the port is free again (as custseg checks it)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def alive(pid: int) -> bool:
    """Running, not a zombie left for its new parent to reap."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_workers_stop_when_their_supervisor_is_killed(
        server: tuple[subprocess.Popen[bytes], int]) -> None:
    """SIGKILL (or the OOM killer) on the supervisor: its workers stop, rather than
    serve on as orphans with settings no store records, holding the port."""
    proc, port = server
    listening = workers(proc.pid, port)
    assert len(listening) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    wait_until(lambda: not any(alive(w) for w in listening), timeout=20)
    assert not answers(f"http://127.0.0.1:{port}")
