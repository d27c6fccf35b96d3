"""Endpoint statuses say what is really served: a deploy whose process died, a model
that no longer loads, no server at all, a deleted endpoint. Real `custseg` processes,
a real background server and its workers, the store's SQLite file."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_server_settings import ENDPOINT, Project


@pytest.fixture()
def project(tmp_path: Path) -> Iterator[Project]:
    p = Project(tmp_path)
    try:
        yield p
    finally:
        for pid in p.server_pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)


def status(project: Project) -> dict[str, str]:
    result = project.cli("endpoints", "list", "--json")
    assert result.returncode == 0, result.stderr
    return {r["name"]: r for r in json.loads(result.stdout)}[ENDPOINT]


def wait_status(project: Project, wanted: str, timeout: float = 20) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        record = status(project)
        if record["status"] == wanted or time.monotonic() > deadline:
            return record
        time.sleep(0.2)


def test_no_server_is_out_of_service_and_a_started_server_puts_it_in_service(
        project: Project) -> None:
    assert project.cli("run", env={"CUSTSEG__ENDPOINT__AUTOSTART": "false"}).returncode == 0
    record = status(project)
    assert record["status"] == "OutOfService"  # not "Creating" forever
    assert "no endpoint server runs" in record["status_reason"]
    assert project.cli("serve", "--restart").returncode == 0
    assert wait_status(project, "InService")["status"] == "InService"


def test_a_deploy_whose_process_died_is_reconciled_from_the_workers(project: Project) -> None:
    assert project.cli("run").returncode == 0
    before = status(project)
    assert before["status"] == "InService"
    # a new config, deployed by a process that dies before it sees the switch
    code = (
        "import os, sys\n"
        "from custseg.config import load_config\n"
        "from custseg.store.endpoints import create_or_update\n"
        "from custseg.store.registry import group_name, packages\n"
        "from custseg.store.database import Store\n"
        "cfg = load_config('pipeline_config.yaml')\n"
        "store = Store.open(cfg.store_location, cfg.artifacts_location)\n"
        "latest = packages(store, group_name(cfg.project_name))[-1]\n"
        "create_or_update(store, project=cfg.project_name, environment=cfg.environment,\n"
        "                 group=latest.group, version=latest.version,\n"
        "                 artifact_uri=latest.artifact_uri, execution_id=None)\n"
        "os.kill(os.getpid(), 9)\n")
    died = subprocess.run([sys.executable, "-c", code], cwd=project.root, check=False)
    assert died.returncode == -9
    record = wait_status(project, "InService")
    assert record["status"] == "InService"  # not "Updating": the new config serves
    assert record["config_name"] != before["config_name"]
    assert record["previous_config_name"] == before["config_name"]


def test_a_model_that_no_longer_loads_is_failed_not_in_service(project: Project) -> None:
    assert project.cli("run").returncode == 0
    model_dir = next((project.root / "store" / "artifacts" / "executions").glob("*/model"))
    shutil.rmtree(model_dir)
    assert project.cli("serve", "--restart").returncode == 0
    record = wait_status(project, "Failed")
    assert record["status"] == "Failed"
    assert "no model artifact" in record["status_reason"] or "missing" in \
        record["status_reason"]
    assert project.invoke() == 503


def test_a_deleted_endpoint_says_so_and_is_created_anew(project: Project) -> None:
    assert project.cli("run").returncode == 0
    assert project.cli("endpoints", "delete", ENDPOINT).returncode == 0
    invoked = project.cli("endpoints", "invoke", ENDPOINT, "--body", json.dumps(
        {"Age": 30, "Income": 50000, "Purchases": 10, "Gender": "Male"}))
    assert invoked.returncode != 0
    assert f"endpoint '{ENDPOINT}' was deleted" in invoked.stderr
    again = project.cli("run")
    assert again.returncode == 0, again.stderr
    assert "(created, InService)" in again.stdout
