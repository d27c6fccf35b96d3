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
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from test_server_settings import ENDPOINT, RECORD, Project


@pytest.fixture()
def project(tmp_path: Path) -> Iterator[Project]:
    p = Project(tmp_path)
    try:
        yield p
    finally:
        for pid in p.server_pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)


def status(project: Project) -> dict[str, Any]:
    result = project.cli("endpoints", "list", "--json")
    assert result.returncode == 0, result.stderr
    return {r["name"]: r for r in json.loads(result.stdout)}[ENDPOINT]


def wait_status(project: Project, wanted: str, timeout: float = 20) -> dict[str, Any]:
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


# -- the status over HTTP (GET /endpoints, GET /endpoints/{name}) ----------------------------

GROUP = "clustering-model-model-group"


def get_json(project: Project, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{project.port}{path}", timeout=10) as r:
            return int(r.status), json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def post_record(project: Project) -> tuple[int, bytes]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{project.port}/endpoints/{ENDPOINT}/invocations",
        data=json.dumps(RECORD).encode(), headers={"Content-Type": "application/json"},
        method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status), r.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def test_a_failed_endpoint_is_listed_and_described_over_http_with_its_reason(
        project: Project) -> None:
    """Not left out of GET /endpoints nor a 404: Failed, with the reason `endpoints
    describe` gives (SageMaker's DescribeEndpoint: EndpointStatus, FailureReason); the
    callers' 503 says what failed without the server's paths (the log has them)."""
    assert project.cli("run").returncode == 0
    uri = status(project)["history"][-1]["artifact_uri"]
    arrays = Path(uri) / "arrays.npz"
    tampered = bytearray(arrays.read_bytes())
    tampered[100] ^= 0xFF
    arrays.write_bytes(bytes(tampered))
    assert project.cli("serve", "--restart").returncode == 0
    record = wait_status(project, "Failed")
    expected = (f"model artifact {uri}: arrays.npz does not match its sha256 in manifest.json "
                f"(the file was changed or corrupted); retrain or restore it")
    assert record["status"] == "Failed" and record["status_reason"] == expected
    described = project.cli("endpoints", "describe", ENDPOINT)
    assert described.stdout.splitlines()[0] == f"Endpoint {ENDPOINT}: Failed ({expected})"

    code, listed = get_json(project, "/endpoints")
    assert code == 200
    (endpoint,) = listed["endpoints"]
    code, detail = get_json(project, f"/endpoints/{ENDPOINT}")
    assert code == 200
    for shown in (endpoint, detail):
        assert shown["EndpointName"] == shown["name"] == ENDPOINT
        assert shown["EndpointStatus"] == shown["status"] == "Failed"
        assert shown["FailureReason"] == shown["status_reason"] == expected
        assert shown["EndpointConfigName"] == shown["config"] == record["config_name"]
        assert shown["model_version"] == f"{GROUP}/1"
        assert shown["loaded_at"] is None and shown["segments"] is None  # nothing served
    assert detail["record"]["history"][0]["version"] == 1

    code, body = post_record(project)
    assert code == 503
    assert json.loads(body)["message"] == (
        f"endpoint '{ENDPOINT}' has no model: model artifact of {GROUP}/1: arrays.npz does "
        f"not match its sha256 in manifest.json (the file was changed or corrupted); "
        f"retrain or restore it (the server log has the details)")
    assert str(project.root) not in body.decode() and "/store/" not in body.decode()
    log = (project.root / "store" / "server.log").read_text()
    assert f"endpoint '{ENDPOINT}' cannot serve config {record['config_name']}: " \
           f"{expected}" in log  # the full reason, for the operator
    code, ping = get_json(project, "/ping")
    assert code == 503
    assert ping["message"] == "1 endpoint failed to load its model (GET /endpoints says why)"


def test_an_endpoint_being_updated_says_updating_over_http(project: Project) -> None:
    assert project.cli("run").returncode == 0
    code, before = get_json(project, f"/endpoints/{ENDPOINT}")
    assert code == 200 and before["EndpointStatus"] == "InService"
    assert "FailureReason" not in before
    # a deploy under way: its process lives until the test ends it
    code_text = (
        "import sys, time\n"
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
        "print('deploying', flush=True)\n"
        "time.sleep(120)\n")
    deployer = subprocess.Popen([sys.executable, "-c", code_text], cwd=project.root,
                                stdout=subprocess.PIPE, text=True)
    try:
        assert deployer.stdout is not None and deployer.stdout.readline() == "deploying\n"
        code, during = get_json(project, f"/endpoints/{ENDPOINT}")
        assert code == 200
        assert during["EndpointStatus"] == during["status"] == "Updating"
        assert during["EndpointConfigName"] != before["EndpointConfigName"]
        (listed,) = get_json(project, "/endpoints")[1]["endpoints"]
        assert listed["EndpointStatus"] == "Updating"
        assert post_record(project)[0] == 200  # still serving meanwhile
    finally:
        deployer.kill()
        deployer.wait(timeout=10)
    assert wait_status(project, "InService")["status"] == "InService"
    code, after = get_json(project, f"/endpoints/{ENDPOINT}")
    assert after["EndpointStatus"] == "InService"
    assert after["EndpointConfigName"] == during["EndpointConfigName"]
