"""A running endpoint server must serve with the config's settings: an API key added or
rotated while it runs is never silently ignored. Real processes: `custseg run` starting
the background server, `custseg serve --restart`, HTTP requests on a free port."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pytest
import yaml

from custseg.core.sample import generate_customers

CUSTSEG = Path(sys.executable).parent / "custseg"
ENDPOINT = "clustering-model-endpoint-dev"
RECORD = {"Age": 30, "Income": 50000, "Purchases": 10, "Gender": "Male"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        table, _ = generate_customers(800, segments=3, seed=2)
        pacsv.write_csv(table, root / "customers.csv")
        self.config: dict[str, Any] = {"data_uri": "customers.csv", "store": "store",
                                       "endpoint": {"port": self.port, "workers": 1}}
        self.write()

    def write(self) -> None:
        (self.root / "pipeline_config.yaml").write_text(yaml.safe_dump(self.config))

    def cli(self, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CUSTSEG), *args, "-c", "pipeline_config.yaml"],
                              cwd=self.root, capture_output=True, text=True, timeout=180,
                              env={**os.environ, "CUSTSEG__ENDPOINT__AUTOSTART": "true",
                                   **(env or {})}, check=False)

    def invoke(self, key: str | None = None) -> int:
        headers = {"Content-Type": "application/json", **({"X-Api-Key": key} if key else {})}
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/endpoints/{ENDPOINT}/invocations",
            data=json.dumps(RECORD).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def served_version(self) -> str:
        """The model version that answers a request (its X-Custseg-Model-Version)."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/endpoints/{ENDPOINT}/invocations",
            data=json.dumps(RECORD).encode(), headers={"Content-Type": "application/json"},
            method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return str(r.headers["X-Custseg-Model-Version"])

    def server_pids(self) -> list[int]:
        db = self.root / "store" / "custseg.db"
        if not db.exists():
            return []
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return [int(r[0]) for r in conn.execute("SELECT pid FROM servers")]


@pytest.fixture()
def project(tmp_path: Path) -> Iterator[Project]:
    p = Project(tmp_path)
    pids: set[int] = set()
    try:
        yield p
    finally:
        pids |= set(p.server_pids())
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)


def test_an_api_key_added_or_rotated_while_the_server_runs_is_never_ignored(
        project: Project) -> None:
    first = project.cli("run")
    assert first.returncode == 0, first.stderr
    assert project.invoke() == 200  # no key configured yet

    project.config["endpoint"]["api_key_env"] = "SEG_TEST_KEY"
    project.write()
    keyed = {"SEG_TEST_KEY": "first-key-123"}
    refused = project.cli("run", env=keyed)
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr
    assert "API key: none in the server, one in the config" in refused.stderr
    assert "custseg serve --restart" in refused.stderr
    assert "first-key-123" not in refused.stderr + refused.stdout
    assert "InService" not in refused.stdout  # never reported as serving the config

    restarted = project.cli("serve", "--restart", env=keyed)
    assert restarted.returncode == 0, restarted.stderr
    assert "Restarted the endpoint server" in restarted.stdout
    assert project.invoke() == 401
    assert project.invoke("first-key-123") == 200

    again = project.cli("run", env=keyed)
    assert again.returncode == 0, again.stderr
    assert '-H "X-Api-Key: $SEG_TEST_KEY"' in again.stdout  # the examples carry the key
    assert 'CustomAttributes="api_key=" + os.environ["SEG_TEST_KEY"]' in again.stdout

    rotated = project.cli("run", env={"SEG_TEST_KEY": "second-key-456"})
    assert rotated.returncode != 0
    assert "API key: changed" in rotated.stderr
    assert project.invoke("first-key-123") == 200  # the old server still runs, unchanged
    assert "second-key-456" not in rotated.stderr


def test_another_worker_count_is_named_and_the_refused_deploy_changes_nothing(
        project: Project) -> None:
    """The refused deploy's model does not go live (nor its endpoint config), by `run`
    or by approving a held-back version."""
    assert project.cli("run").returncode == 0
    assert project.served_version().endswith("/1")
    project.config["endpoint"]["workers"] = 2
    project.write()
    result = project.cli("run", "--no-cache")
    assert result.returncode != 0
    assert "workers 1 -> 2" in result.stderr
    assert project.served_version().endswith("/1")
    described = project.cli("endpoints", "describe", ENDPOINT)
    assert "model-group/1" in described.stdout and "model-group/2" not in described.stdout

    project.config["deploy"] = {"require_approval": True}
    project.write()
    held = project.cli("run", "--no-cache", "-p", "random_state=5")
    assert held.returncode == 0, held.stderr
    approved = project.cli("models", "approve", "3")
    assert approved.returncode != 0
    assert "workers 1 -> 2" in approved.stderr
    assert "Traceback" not in approved.stderr
    assert project.served_version().endswith("/1")


def test_a_second_project_on_a_taken_port_serves_on_the_next_and_says_why(
        tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = Project(tmp_path / "a"), Project(tmp_path / "b")
    second.port = first.port
    second.config["endpoint"]["port"] = first.port
    second.write()
    try:
        assert first.cli("run").returncode == 0
        result = second.cli("run")
        assert result.returncode == 0, result.stderr
        assert (f"port {first.port} is taken by another custseg endpoint server"
                in result.stdout)
        url = next(line.split()[1] for line in result.stdout.splitlines()
                   if line.startswith("URL: "))
        actual = int(url.split(":")[2].split("/")[0])
        assert actual != first.port
        second.port = actual
        assert second.invoke() == 200 and first.invoke() == 200
        again = second.cli("run", "--no-cache")  # the port it asked for is recorded
        assert again.returncode == 0, again.stderr
    finally:
        for p in (first, second):
            for pid in p.server_pids():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGTERM)


def test_two_first_runs_at_once_start_one_server(project: Project) -> None:
    procs = [subprocess.Popen([str(CUSTSEG), "run", "-c", "pipeline_config.yaml"],
                              cwd=project.root, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "CUSTSEG__ENDPOINT__AUTOSTART": "true"})
             for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    pids = project.server_pids()
    assert len(pids) == 1
    serving = subprocess.run(["pgrep", "-f", "custseg.serving.server "], capture_output=True,
                             text=True, check=False).stdout.split()
    groups = set()
    for pid in map(int, serving):  # every server process of this store, by its folder
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/cwd") == str((project.root / "store").resolve()):
                groups.add(os.getpgid(pid))
    assert groups == {pids[0]}  # one server (its workers share its process group)
    assert project.invoke() == 200


def test_the_body_limit_holds_for_small_limits(project: Project) -> None:
    """`endpoint.max_body_bytes` below what the protocol answers itself: still 413."""
    project.config["endpoint"]["max_body_bytes"] = 1024
    project.write()
    assert project.cli("run").returncode == 0
    url = f"http://127.0.0.1:{project.port}/invocations"

    def post(records: int) -> tuple[int, str]:
        req = urllib.request.Request(url, data=json.dumps([RECORD] * records).encode(),
                                     headers={"Content-Type": "application/json"},
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()

    assert post(10)[0] == 200  # about 700 bytes
    status, body = post(20)  # about 1,400
    assert status == 413 and "over the 1,024-byte limit" in body


def test_a_worker_collects_in_small_young_generations_whatever_imported_it(
        tmp_path: Path) -> None:
    """A spawned worker imports the command line again (whose process raises the
    collector's threshold for short commands): making its app sets the worker's own,
    small one, so that no request waits behind a long young collection."""
    from custseg.serving.settings import ServerSettings
    from custseg.store.database import Store

    Store.open(str(tmp_path / "custseg.db"), str(tmp_path / "artifacts"))  # an empty store
    path = ServerSettings(store=str(tmp_path / "custseg.db"),
                          artifacts=str(tmp_path / "artifacts"), workers=1).write(
        tmp_path / "settings.json")
    code = ("import gc, os, custseg.cli\n"
            "from custseg.cli.startup import GC_THRESHOLD\n"
            "from custseg.serving.app import WORKER_GC_THRESHOLD, create_app\n"
            "raised = gc.get_threshold()[0] == GC_THRESHOLD\n"
            f"os.environ['CUSTSEG_SERVER_SETTINGS'] = {str(path)!r}\n"
            "create_app()\n"
            "print(raised, gc.get_threshold() == WORKER_GC_THRESHOLD)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.stdout.split() == ["True", "True"], result.stderr
