"""Zero-downtime deploys through `custseg run`: a background server, switches under load,
verification failures that keep the old model, rollback and delete. Real processes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from test_inference import ENDPOINT, RECORD, Project, make_project, post_json, request


@pytest.fixture()
def project(tmp_path: Path) -> Iterator[Project]:
    """A project whose `custseg run` starts a background server (stopped at the end)."""
    proj = make_project(tmp_path, autostart=True)
    try:
        yield proj
    finally:
        proj.cli("endpoints", "delete", ENDPOINT)


def served_versions(project: Project, n: int = 40) -> set[str]:
    versions = set()
    for _ in range(n):  # a new connection each time: requests spread over the workers
        status, headers, _ = post_json(f"{project.url}/invocations", RECORD)
        assert status == 200
        versions.add(headers["x-custseg-model-version"])
    return versions


class Load:
    """Single-record requests in a loop from a thread, counting failures and versions."""

    def __init__(self, url: str) -> None:
        self.url, self.stop = url, threading.Event()
        self.ok = self.failed = 0
        self.versions: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                status, headers, _ = post_json(f"{self.url}/invocations", RECORD)
            except OSError:
                self.failed += 1
                continue
            if status == 200:
                self.ok += 1
                self.versions.append(headers["x-custseg-model-version"])
            else:
                self.failed += 1

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def test_run_ends_with_a_live_endpoint_and_updates_switch_every_worker(project: Project
                                                                        ) -> None:
    first = project.cli("run")
    assert first.returncode == 0, first.stderr
    assert f"URL: {project.url}/endpoints/{ENDPOINT}/invocations" in first.stdout
    assert "curl -s" in first.stdout and "boto3.client" in first.stdout
    assert served_versions(project) == {"clustering-model-model-group/1"}
    with Load(project.url) as load:
        time.sleep(0.5)
        second = project.cli("run", "-p", "n_clusters=4")
        assert second.returncode == 0, second.stderr
        # the run returns only once every worker serves the new version
        assert served_versions(project) == {"clustering-model-model-group/2"}
        time.sleep(0.3)
    assert load.failed == 0 and load.ok > 20
    switch = load.versions.index("clustering-model-model-group/2")
    assert set(load.versions[switch:]) == {"clustering-model-model-group/2"} or \
        load.versions[-1] == "clustering-model-model-group/2"
    described = json.loads(project.cli("endpoints", "describe", ENDPOINT, "--json").stdout)
    assert described["status"] == "InService"
    assert described["model_version"] == "clustering-model-model-group/2"
    assert described["previous_config_name"] == described["history"][0]["name"]


def test_a_model_that_fails_verification_leaves_the_old_one_serving(project: Project) -> None:
    narrow = {"numeric": ["Age", "Income"], "categorical": ["Gender"], "ignore": ["CustomerID"]}
    config = yaml.safe_load(project.config.read_text())
    project.config.write_text(yaml.safe_dump({**config, "features": narrow}))
    assert project.cli("run").returncode == 0
    # the new model needs Purchases, which callers of the current model do not send
    wide = {**narrow, "numeric": ["Age", "Income", "Purchases"]}
    project.config.write_text(yaml.safe_dump({**config, "features": wide}))
    with Load(project.url) as load:
        result = project.cli("run")
    assert result.returncode != 0
    assert "stays on its previous model" in result.stderr
    assert "needs field 'Purchases'" in result.stderr
    assert load.failed == 0
    assert served_versions(project, 10) == {"clustering-model-model-group/1"}
    described = json.loads(project.cli("endpoints", "describe", ENDPOINT, "--json").stdout)
    assert described["model_version"] == "clustering-model-model-group/1"
    assert "needs field 'Purchases'" in described["status_reason"]
    executions = json.loads(project.cli("executions", "list", "--json").stdout)
    assert executions[0]["status"] == "Failed"
    steps = {s["name"]: s["status"] for s in executions[0]["steps"]}
    assert steps["DeployEndpoint"] == "Failed" and steps["RegisterModel"] == "Succeeded"


@pytest.mark.parametrize("autostart", [False, True])
def test_a_deploy_with_no_server_running_is_checked_all_the_same(
        tmp_path: Path, autostart: bool) -> None:
    """No server serves the store when the retrain is deployed (autostart off, or the
    server down): the schema check runs at deploy time, and the endpoint stays on its
    model, rather than a later server start serving a model every caller fails on."""
    project = make_project(tmp_path, autostart=False)
    narrow = {"numeric": ["Age", "Income"], "categorical": ["Gender"], "ignore": ["CustomerID"]}
    config = yaml.safe_load(project.config.read_text())
    project.config.write_text(yaml.safe_dump({**config, "features": narrow}))
    assert project.cli("run").returncode == 0
    wide = {**narrow, "numeric": ["Age", "Income", "Purchases"]}
    project.config.write_text(yaml.safe_dump({**config, "features": wide}))
    try:
        result = project.cli("run", "-p", f"endpoint.autostart={str(autostart).lower()}")
        assert result.returncode == 8, result.stderr
        assert "Traceback" not in result.stderr
        assert ("endpoint clustering-model-endpoint-dev stays on its previous model: schema "
                "check: the new model needs field 'Purchases'") in result.stderr
        described = json.loads(project.cli("endpoints", "describe", ENDPOINT, "--json").stdout)
        assert described["model_version"] == "clustering-model-model-group/1"
    finally:
        project.cli("endpoints", "delete", ENDPOINT)


def test_a_model_with_a_date_column_deploys_to_a_running_server(project: Project) -> None:
    """The workers' smoke prediction sends each column's median as callers do: a date
    column's as a date in its format (it sent the days, and every such deploy failed)."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.csv as pacsv

    data = project.root / "customers.csv"
    table = pacsv.read_csv(data)
    start = dt.date(2024, 1, 1)
    days = [(i * 37) % 400 for i in range(table.num_rows)]
    table = table.append_column("LastOrder", pa.array(
        [(start + dt.timedelta(days=d)).strftime("%d/%m/%Y") for d in days]))
    pacsv.write_csv(table, data)
    result = project.cli("run")
    assert result.returncode == 0, result.stderr
    status, _, body = post_json(f"{project.url}/invocations",
                                {**RECORD, "LastOrder": "15/03/2024"})
    assert status == 200, body
    described = json.loads(project.cli("models", "describe", "1", "--json").stdout)
    roles = {c["name"]: c["role"] for c in described["schema"]["columns"]}
    assert roles["LastOrder"] == "date"


def test_rollback_and_delete(project: Project) -> None:
    assert project.cli("run").returncode == 0
    assert project.cli("run", "-p", "n_clusters=4").returncode == 0
    assert served_versions(project, 10) == {"clustering-model-model-group/2"}
    rolled = project.cli("endpoints", "rollback", ENDPOINT)
    assert rolled.returncode == 0, rolled.stderr
    assert served_versions(project) == {"clustering-model-model-group/1"}
    listed = json.loads(project.cli("endpoints", "list", "--json").stdout)
    assert listed[0]["model_version"] == "clustering-model-model-group/1"
    deleted = project.cli("endpoints", "delete", ENDPOINT)
    assert deleted.returncode == 0 and "server stopped" in deleted.stdout
    with pytest.raises(OSError):
        request("GET", project.url + "/ping")


def test_a_rollback_refused_once_goes_through_once_its_artifact_is_mended(
        project: Project) -> None:
    """The running workers refuse a rollback to a damaged artifact; once the artifact is
    whole again, the same rollback is tried afresh (it was refused for good, until the
    server restarted)."""
    assert project.cli("run").returncode == 0
    assert project.cli("run", "-p", "n_clusters=4").returncode == 0
    listed = json.loads(project.cli("models", "list", "--json").stdout)
    first = next(m for m in listed if m["version"] == 1)
    arrays = Path(first["artifact_uri"]) / "arrays.npz"
    whole = arrays.read_bytes()
    arrays.write_bytes(whole[:200] + bytes([whole[200] ^ 1]) + whole[201:])
    refused = project.cli("endpoints", "rollback", ENDPOINT)
    assert refused.returncode == 8
    assert "does not match its sha256" in refused.stderr
    assert served_versions(project, 10) == {"clustering-model-model-group/2"}
    arrays.write_bytes(whole)
    rolled = project.cli("endpoints", "rollback", ENDPOINT)
    assert rolled.returncode == 0, rolled.stderr
    assert served_versions(project) == {"clustering-model-model-group/1"}
