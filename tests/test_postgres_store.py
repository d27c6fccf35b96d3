"""The shared PostgreSQL store, against a real PostgreSQL server started by the test session
(`postgres_server` in conftest): the same schema and behaviour as the SQLite store, writers
from several processes queueing, hosts that judge only their own processes, two endpoint
servers of two "hosts" (`CUSTSEG_HOST_ID`) taking one deploy, a run killed with SIGKILL,
and a password that is refused in the URL and appears nowhere."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import CUSTSEG, FEATURES, PG_PASSWORD_ENV, PostgresServer, write_customers
from custseg.errors import DeployError, RegistryError, StoreError
from custseg.store import endpoints, executions, registry
from custseg.store.database import SCHEMA_VERSION, Store
from test_inference import RECORD, free_port, post_json, wait_for

GROUP = "clustering-model-model-group"
AUTOSTART = {"CUSTSEG__ENDPOINT__AUTOSTART": "true"}  # conftest turns it off by default
ENDPOINT = "clustering-model-endpoint-dev"


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL store keeps this host's server files and reports under
    ~/.local/state/custseg: a home of the test's own (CLI subprocesses inherit it)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _open_pg(server: PostgresServer, url: str, artifacts: Path, host: str | None = None
             ) -> Store:
    return Store.open(url, str(artifacts), password=server.password, host=host)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Store]:
    """Factory: `backend(host=None)` opens one store (the same each call) on SQLite or
    on a fresh PostgreSQL database, as the given host."""
    if request.param == "sqlite":
        return lambda host=None: Store.open(str(tmp_path / "s"), host=host)
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.database()
    return lambda host=None: _open_pg(server, url, tmp_path / "artifacts", host)


# -- the same schema and behaviour on both databases -----------------------------------------

def test_the_schema_is_the_sqlite_schema(postgres_server: PostgresServer, tmp_path: Path
                                         ) -> None:
    url = postgres_server.database()
    _open_pg(postgres_server, url, tmp_path / "a")
    _open_pg(postgres_server, url, tmp_path / "a")  # reopening migrates nothing
    pg: dict[str, set[str]] = {}
    for row in postgres_server.query(
            url, "SELECT table_name, column_name FROM information_schema.columns "
                 "WHERE table_schema = 'public'"):
        pg.setdefault(row["table_name"], set()).add(row["column_name"])
    assert postgres_server.query(url, "SELECT version FROM schema_version") == [
        {"version": SCHEMA_VERSION}]
    del pg["schema_version"]
    Store.open(str(tmp_path / "s"))
    conn = sqlite3.connect(tmp_path / "s" / "custseg.db")
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                         "AND name NOT LIKE 'sqlite_%'")]
    lite = {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")} for t in tables}
    conn.close()
    assert pg == lite
    assert {"host_id", "pid"} <= pg["endpoint_workers"] and "host_id" in pg["servers"]


@pytest.mark.parametrize("scheme", ["postgres", "postgresql+psycopg"])
def test_the_other_url_schemes_name_the_same_store(postgres_server: PostgresServer,
                                                   tmp_path: Path, scheme: str) -> None:
    url = postgres_server.database()
    registry.register(_open_pg(postgres_server, url, tmp_path), "g", execution_id=None,
                      artifact_uri="/m", lineage={}, status=registry.ApprovalStatus.PENDING,
                      user="ann")
    other = Store.existing(scheme + "://" + url.split("://", 1)[1], str(tmp_path),
                           password=postgres_server.password)
    assert [p.version for p in registry.packages(other, "g")] == [1]


def test_registry_versions_approval_and_its_audit(backend: Callable[..., Store]) -> None:
    store = backend()
    versions = [registry.register(store, "g", execution_id=None, artifact_uri=f"/m/{i}",
                                  lineage={"i": i}, status=registry.ApprovalStatus.PENDING,
                                  user="ann") for i in range(3)]
    assert versions == [1, 2, 3]
    pkg = registry.set_approval(store, "g", 2, registry.ApprovalStatus.APPROVED, by="bob",
                                comment="looks right")
    assert pkg.approval_status is registry.ApprovalStatus.APPROVED
    assert pkg.lineage == {"i": 1, "previous_version": 1}
    assert [(h["from_status"], h["to_status"], h["by"]) for h in pkg.history] == [
        (None, "PendingManualApproval", "ann"), ("PendingManualApproval", "Approved", "bob")]
    with pytest.raises(RegistryError, match="cannot become PendingManualApproval"):
        registry.set_approval(store, "g", 2, registry.ApprovalStatus.PENDING, by="bob")
    with pytest.raises(RegistryError, match=r"no version 9 \(versions: 1, 2, 3\)"):
        registry.package(store, "g", 9)
    assert [p.version for p in registry.packages(store, "g")] == [1, 2, 3]


def test_executions_steps_and_the_step_cache(backend: Callable[..., Store]) -> None:
    store = backend()
    pipeline = executions.upsert_pipeline(store, "p", {"steps": 2}, "sha")[0]
    executions.create_execution(store, "20240101-aa", ("p", pipeline), {"k": 3},
                                ["Train", "RegisterModel"], "ann")
    executions.update_step(store, "20240101-aa", "Train", status="Succeeded", seconds=1.25,
                           outputs={"model": "/m"}, cache_key="key1")
    executions.finish_execution(store, "20240101-aa", "Succeeded")
    record = executions.execution(store, "20240101-a")  # a unique prefix
    assert (record.status, record.user, record.host) == ("Succeeded", "ann", store.host)
    assert [(s.name, s.status, s.seconds) for s in record.steps] == [
        ("Train", "Succeeded", 1.25), ("RegisterModel", "Skipped", None)]
    cached = executions.cached_step(store, "Train", "key1")
    assert cached is not None and cached.outputs == {"model": "/m"}
    assert executions.cached_step(store, "Train", "other") is None
    with pytest.raises(StoreError, match="no execution 'zz'"):
        executions.execution(store, "zz")


def _drift_report(records: int, psi: float, alerts: list[str]) -> dict[str, Any]:
    return {"records": records, "drift": bool(alerts), "alerts": alerts,
            "features": [{"feature": "Income", "psi": psi}, {"feature": "Gender", "psi": None}],
            "segments": {"psi": 0.01}, "distance": {"far_share": 0.06}}


def test_drift_reports_are_kept_per_endpoint_over_time(backend: Callable[..., Store]) -> None:
    from custseg.store.drift import drift_history, latest_drift, record_drift

    store = backend()
    first = record_drift(store, "a", "g/1", "capture", "2026-01-01T00:00:00+00:00",
                         _drift_report(500, 0.05, []), "ann")
    second = record_drift(store, "a", "g/2", "file.csv", None,
                          _drift_report(800, 0.4, ["Income: PSI 0.400"]), "bob")
    other = record_drift(store, "b", "g/1", "capture", None, _drift_report(90, 0.01, []), "ann")
    assert first < second < other
    history = drift_history(store, "a")
    assert [(r.id, r.model_version, r.records, r.drift, r.max_psi) for r in history] == [
        (second, "g/2", 800, True, 0.4), (first, "g/1", 500, False, 0.05)]
    assert history[0].alerts == ["Income: PSI 0.400"] and history[0].far_share == 0.06
    assert history[1].window_start == "2026-01-01T00:00:00+00:00"
    assert history[0].report["features"][1] == {"feature": "Gender", "psi": None}
    assert [(r.endpoint, r.id) for r in latest_drift(store)] == [("a", second), ("b", other)]


def test_endpoint_create_update_rollback_delete(backend: Callable[..., Store]) -> None:
    store = backend()
    for i in (1, 2):
        registry.register(store, "g", execution_id=None, artifact_uri=f"/m/{i}", lineage={},
                          status=registry.ApprovalStatus.APPROVED, user="ann")
    first = endpoints.create_or_update(store, project="p", environment="dev", group="g",
                                       version=1, artifact_uri="/m/1", execution_id=None)
    second = endpoints.create_or_update(store, project="p", environment="dev", group="g",
                                        version=2, artifact_uri="/m/2", execution_id=None)
    assert (first.action, second.action, second.previous_config) == (
        "created", "updated", first.config)
    back = endpoints.rollback(store, "p-endpoint-dev")
    assert back.config == first.config
    assert endpoints.wanted_configs(store)["p-endpoint-dev"]["version"] == 1
    endpoints.delete(store, "p-endpoint-dev")
    assert endpoints.wanted_configs(store) == {}
    with pytest.raises(DeployError, match="no endpoint"):
        endpoints.delete(store, "p-endpoint-dev")


def test_a_connection_the_server_closed_is_replaced_without_an_error(
        postgres_server: PostgresServer, tmp_path: Path) -> None:
    url = postgres_server.database()
    store = _open_pg(postgres_server, url, tmp_path)
    executions.upsert_pipeline(store, "p", {}, "a")  # this thread's connection, kept open
    with postgres_server.admin() as admin:  # what a server restart does to it
        killed = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = %s AND usename = 'custseg'",
                               (url.rsplit("/", 1)[1],)).fetchall()
    assert killed
    time.sleep(0.2)
    assert executions.upsert_pipeline(store, "p", {"n": 2}, "b") == (2, True)
    assert executions.latest_pipeline(store, "p") is not None


# -- hosts: a pid means something only on its own host ---------------------------------------

def test_worker_and_server_rows_are_keyed_by_host(backend: Callable[..., Store]) -> None:
    here, there = backend(host="host-a"), backend(host="host-b")
    pid = os.getpid()  # the same pid on two hosts: two workers
    endpoints.report_worker(here, "*", pid, None, "Up", None)
    endpoints.report_worker(there, "*", pid, None, "Up", None)
    assert sorted(endpoints.switch_view(here, "e")[1]) == [("host-a", pid), ("host-b", pid)]
    endpoints.forget_worker(here, pid)
    assert endpoints.switch_view(here, "e")[1] == [("host-b", pid)]
    from custseg.store.servers import forget_server, record_server, server_rows

    record_server(here, pid=pid, host="127.0.0.1", port=1, workers=1, settings={})
    record_server(there, pid=pid, host="127.0.0.1", port=2, workers=1, settings={})
    assert [r["port"] for r in server_rows(here)] == [1]  # a host sees its own servers
    forget_server(here, pid)
    assert [r["port"] for r in server_rows(there)] == [2]


def test_another_hosts_workers_are_judged_by_their_heartbeat(
        backend: Callable[..., Store]) -> None:
    here, there = backend(host="host-a"), backend(host="host-b")
    gone = _dead_pid()  # dead here; on host-b it is some live worker
    endpoints.report_worker(there, "*", gone, None, "Up", None)
    endpoints.report_worker(here, "*", gone, None, "Up", None)
    assert endpoints.switch_view(here, "e")[1] == [("host-b", gone)]  # not by this pid
    with here.write() as conn:  # host-b stops beating
        conn.execute("UPDATE endpoint_workers SET updated_at = ? WHERE host_id = 'host-b'",
                     ("2020-01-01T00:00:00.000+00:00",))
    assert endpoints.switch_view(here, "e")[1] == []


def test_a_host_reaps_only_its_own_interrupted_runs(backend: Callable[..., Store]) -> None:
    there = backend(host="host-b")
    executions.upsert_pipeline(there, "p", {}, "sha")
    executions.create_execution(there, "e1", ("p", 1), {}, ["Train"], "ann")
    with there.write() as conn:
        conn.execute("UPDATE executions SET pid = ?, pid_start = NULL WHERE id = 'e1'",
                     (_dead_pid(),))
    here = backend(host="host-a")  # opening reaps: not host-b's runs
    assert executions.execution(here, "e1").status == "Executing"
    backend(host="host-b")
    record = executions.execution(here, "e1")
    assert record.status == "Failed" and (record.error or "").startswith("interrupted")


# -- several processes at once ---------------------------------------------------------------

def _register_many(url: str, artifacts: str, password: str, n: int, barrier: Any,
                   results: Any) -> None:
    try:
        store = Store.open(url, artifacts, password=password)
        barrier.wait()
        got = [registry.register(store, "g", execution_id=None, artifact_uri=f"/m/{i}",
                                 lineage={}, status=registry.ApprovalStatus.PENDING,
                                 user="me") for i in range(n)]
        results.put(got)
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_writing_at_once_queue_on_the_advisory_lock(
        postgres_server: PostgresServer, tmp_path: Path) -> None:
    url = postgres_server.database()
    ctx = multiprocessing.get_context("spawn")
    n, per_process = 4, 10
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_register_many, args=(
        url, str(tmp_path), postgres_server.password, per_process, barrier, queue))
        for _ in range(n)]
    for p in procs:
        p.start()
    got = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert not [g for g in got if isinstance(g, str)], got
    assert sorted(v for g in got for v in g) == list(range(1, n * per_process + 1))
    assert postgres_server.query(url, "SELECT COUNT(*) AS n FROM approvals") == [
        {"n": n * per_process}]


# -- the CLI on a PostgreSQL store -----------------------------------------------------------

class PgProject:
    """A project folder whose config names a PostgreSQL store (its password in
    PG_PASSWORD_ENV) and a local artifact folder; runs the real `custseg` script."""

    def __init__(self, root: Path, url: str, server: PostgresServer, **config: Any) -> None:
        self.root, self.url, self.server = root, url, server
        self.port = free_port()
        self.config = {"data_uri": "data/", "store": url, "store_password_env": PG_PASSWORD_ENV,
                       "artifacts": str(root / "artifacts"), "features": FEATURES,
                       "endpoint": {"autostart": False, "port": self.port, "workers": 1},
                       **config}
        self.config_path = self.write_config(self.config)

    def write_config(self, config: dict[str, Any], name: str = "pipeline_config.yaml"
                     ) -> Path:
        path = self.root / name
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return path

    def command(self, *args: str | Path, config: Path | None = None) -> list[str]:
        return [str(CUSTSEG), *map(str, args), "-c", str(config or self.config_path)]

    def cli(self, *args: str | Path, host: str | None = None, config: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        extra = {"CUSTSEG_HOST_ID": host} if host else {}
        return subprocess.run(self.command(*args, config=config), cwd=self.root,
                              capture_output=True, text=True, timeout=180, check=False,
                              env={**os.environ, **extra, **(env or {})})

    def ok(self, *args: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        result = self.cli(*args, **kwargs)
        assert result.returncode == 0, f"custseg {' '.join(map(str, args))}:\n{result.stderr}"
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def popen(self, *args: str | Path, host: str | None = None, config: Path | None = None,
              ) -> subprocess.Popen[str]:
        extra = {"CUSTSEG_HOST_ID": host} if host else {}
        return subprocess.Popen(self.command(*args, config=config), cwd=self.root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **extra})

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return self.server.query(self.url, sql, params)


@pytest.fixture
def pg_project(postgres_server: PostgresServer, tmp_path: Path) -> Callable[..., PgProject]:
    """Factory: `pg_project(rows=600, **config)` -> a project on a fresh PG database."""

    def make(rows: int = 600, **config: Any) -> PgProject:
        write_customers(tmp_path / "data" / "customers.csv", rows=rows)
        return PgProject(tmp_path, postgres_server.database(), postgres_server, **config)

    return make


def test_two_runs_at_once_from_two_processes(pg_project: Callable[..., PgProject]) -> None:
    project = pg_project()
    runs = [project.popen("run", "--json", "-p", f"n_clusters={k}") for k in (3, 4)]
    outputs = [run.communicate(timeout=180) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    results = [json.loads(out) for out, _ in outputs]
    assert sorted(r["model_version"] for r in results) == [1, 2]
    rows = project.query("SELECT e.id, e.status, COUNT(s.name) AS steps FROM executions e "
                         "JOIN steps s ON s.execution_id = e.id GROUP BY e.id, e.status")
    assert sorted((r["status"], r["steps"]) for r in rows) == [("Succeeded", 4)] * 2
    packages = project.query("SELECT version, execution_id FROM model_packages ORDER BY version")
    assert [p["version"] for p in packages] == [1, 2]
    assert {p["execution_id"] for p in packages} == {r["id"] for r in results}
    assert len(project.query("SELECT * FROM endpoint_configs")) == 2
    listed = json.loads(project.ok("executions", "list", "--json").stdout)
    assert sorted(e["id"] for e in listed) == sorted(r["id"] for r in results)


def test_a_run_killed_with_sigkill_is_marked_interrupted_by_its_own_host(
        pg_project: Callable[..., PgProject]) -> None:
    # thousands of KMeans restarts over a k sweep: a run that takes long enough to kill
    project = pg_project(rows=50_000, n_clusters={"min": 2, "max": 10},
                         tuning={"n_init": 5000})
    run = project.popen("run", host="host-a")
    deadline = time.monotonic() + 60
    while not _training(project):
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, "the run never started training"
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    [execution] = project.query("SELECT id, status FROM executions")
    assert execution["status"] == "Executing"  # nobody recorded its end
    # another host cannot judge the pid: the run stays as it is
    other = json.loads(project.ok("executions", "list", "--json", host="host-b").stdout)
    assert [e["status"] for e in other] == ["Executing"]
    # its own host sees the process is gone and marks the run interrupted
    mine = json.loads(project.ok("executions", "describe", execution["id"], "--json",
                                 host="host-a").stdout)
    assert mine["status"] == "Failed" and mine["error"].startswith("interrupted")
    assert {s["name"]: s["status"] for s in mine["steps"]} == {
        "Train": "Failed", "CreateModel": "Skipped", "RegisterModel": "Skipped",
        "DeployEndpoint": "Skipped"}
    assert project.query("SELECT * FROM model_packages") == []  # nothing half-registered
    again = project.ok("run", "--json", "-p", "n_clusters=3", host="host-a")  # still usable
    assert json.loads(again.stdout)["model_version"] == 1


def _has_schema(project: PgProject) -> bool:
    return bool(project.query("SELECT to_regclass('steps') IS NOT NULL AS ok")[0]["ok"])


def _training(project: PgProject) -> bool:
    return _has_schema(project) and bool(project.query(
        "SELECT 1 FROM steps WHERE name = 'Train' AND status = 'Executing'"))


@pytest.fixture
def two_hosts(pg_project: Callable[..., PgProject]) -> Iterator[tuple[PgProject, list[Any]]]:
    """A project with approval required, its endpoint served by two `custseg serve`
    processes of two hosts (CUSTSEG_HOST_ID host-a and host-b, each its own config and
    port), both on the same PostgreSQL store; stopped at the end."""
    project = pg_project(deploy={"require_approval": True})
    project.ok("run", host="host-a")
    project.ok("models", "approve", "1", host="host-a")  # no server yet: recorded only
    servers: list[Any] = []
    try:
        for host in ("host-a", "host-b"):
            port = free_port()
            config = project.write_config(
                {**project.config, "endpoint": {"autostart": False, "port": port,
                                                "workers": 2}}, f"{host}.yaml")
            proc = project.popen("serve", host=host, config=config)
            servers.append((host, config, f"http://127.0.0.1:{port}", proc))
        for *_, url, _proc in servers:
            wait_for(url)
        deadline = time.monotonic() + 30  # /ping answers from the first worker up
        while len(project.query("SELECT 1 FROM endpoint_workers WHERE endpoint_name = '*'")
                  ) < 4:
            assert time.monotonic() < deadline, "the workers did not all start"
            time.sleep(0.1)
        yield project, servers
    finally:
        for *_, proc in servers:
            proc.send_signal(signal.SIGTERM)
        for *_, proc in servers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _served_version(url: str) -> str:
    status, headers, body = post_json(f"{url}/invocations", RECORD)
    assert status == 200, body
    return headers["x-custseg-model-version"]


def test_an_approval_on_one_host_is_served_by_the_servers_of_both(
        two_hosts: tuple[PgProject, list[Any]]) -> None:
    project, servers = two_hosts
    assert {_served_version(url) for *_, url, _ in servers} == {f"{GROUP}/1"}
    project.ok("run", "-p", "n_clusters=4", host="host-a")  # version 2: pending
    assert {_served_version(url) for *_, url, _ in servers} == {f"{GROUP}/1"}
    # approved from host-b (its own config): the deploy waits for every worker of both
    _, config_b, _, _ = servers[1]
    result = project.ok("models", "approve", "2", host="host-b", config=config_b)
    assert f"{ENDPOINT} -> " in result.stdout and "(updated, InService" in result.stdout
    for *_, url, _ in servers:  # at once, no retry: the deploy returned after both switched
        assert {_served_version(url) for _ in range(10)} == {f"{GROUP}/2"}
    # a third host with no server of its own: its approval waits for the others' workers
    project.ok("run", "-p", "n_clusters=5", host="host-c")
    result = project.ok("models", "approve", "3", host="host-c")
    assert "(updated, InService" in result.stdout, result.stdout
    for *_, url, _ in servers:
        assert {_served_version(url) for _ in range(10)} == {f"{GROUP}/3"}
    record = json.loads(project.ok("endpoints", "describe", ENDPOINT, "--json").stdout)
    assert record["status"] == "InService"
    assert sorted({w["host_id"] for w in record["workers"]}) == ["host-a", "host-b"]
    assert len([w for w in record["workers"] if w["status"] == "InService"]) == 4


def test_workers_keep_beating_so_that_other_hosts_count_them(
        two_hosts: tuple[PgProject, list[Any]]) -> None:
    project, _ = two_hosts
    sql = "SELECT host_id, pid, updated_at FROM endpoint_workers WHERE endpoint_name = '*'"
    before = {(r["host_id"], r["pid"]): r["updated_at"] for r in project.query(sql)}
    assert sorted(h for h, _ in before) == ["host-a", "host-a", "host-b", "host-b"]
    time.sleep(endpoints.HEARTBEAT + 1.5)
    after = {(r["host_id"], r["pid"]): r["updated_at"] for r in project.query(sql)}
    assert after.keys() == before.keys()
    assert all(after[k] > before[k] for k in before), (before, after)


def test_a_postgresql_store_with_artifacts_on_s3(pg_project: Callable[..., PgProject],
                                                 moto_server: str,
                                                 make_bucket: Callable[..., str]) -> None:
    """The shared layout: the store in PostgreSQL, the models in S3 (a moto server)."""
    bucket = make_bucket()
    project = pg_project(artifacts=f"s3://{bucket}/models", s3={"endpoint_url": moto_server})
    out = json.loads(project.ok("run", "--json").stdout)
    assert out["model_uri"].startswith(f"s3://{bucket}/models/executions/{out['id']}/")
    [pkg] = project.query("SELECT artifact_uri FROM model_packages")
    assert pkg["artifact_uri"] == out["model_uri"]
    code = ("import sys, custseg; m = custseg.load_model(sys.argv[1], s3_endpoint_url=sys.argv[2]);"
            " print(m.k)")
    loaded = subprocess.run([sys.executable, "-c", code, f"{GROUP}/1", moto_server],
                            cwd=project.root, capture_output=True, text=True, timeout=60,
                            check=False)
    assert loaded.returncode == 0 and loaded.stdout.strip() == "3", loaded.stderr


def test_run_starts_this_hosts_background_server_for_a_postgresql_store(
        pg_project: Callable[..., PgProject]) -> None:
    project = pg_project()
    try:
        out = json.loads(project.ok("run", "--json", host="host-a", env=AUTOSTART).stdout)
        deployed = out["steps"]["DeployEndpoint"]["outputs"]
        assert deployed["status"] == "InService"
        url = deployed["url"]
        assert _served_version(url) == f"{GROUP}/1"
        project.ok("run", "--json", "-p", "n_clusters=4", host="host-a", env=AUTOSTART)
        assert {_served_version(url) for _ in range(10)} == {f"{GROUP}/2"}
        [server] = project.query("SELECT host_id, port FROM servers")
        assert server == {"host_id": "host-a", "port": project.port}
        # another host does not see (nor stop) host-a's server
        assert "no endpoint server" not in project.ok(
            "endpoints", "describe", ENDPOINT, host="host-b").stdout
    finally:
        project.cli("endpoints", "delete", ENDPOINT, host="host-a")
    assert project.query("SELECT * FROM servers") == []  # the last endpoint stopped it


def test_a_sqlite_store_never_imports_psycopg(tmp_path: Path) -> None:
    """psycopg is the optional `postgresql` extra: loaded only for a postgresql:// store."""
    code = ("import sys; from custseg.store.database import Store; "
            "from custseg.store import executions; "
            "executions.executions(Store.open(sys.argv[1])); print('psycopg' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s")],
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


# -- secrets and bad input -------------------------------------------------------------------

def test_the_password_appears_in_no_output_row_or_file(
        pg_project: Callable[..., PgProject]) -> None:
    project = pg_project()
    password = project.server.password
    outputs = [project.ok("run", "--json"), project.ok("executions", "list", "--json"),
               project.ok("models", "describe", "1", "--json"),
               project.ok("endpoints", "describe", ENDPOINT, "--json")]
    for result in outputs:
        assert password not in result.stdout + result.stderr
    assert json.loads(outputs[2].stdout)["lineage"]["parameters"]["store"] == project.url
    tables = [r["table_name"] for r in project.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
    for table in tables:
        dump = json.dumps(project.query(f"SELECT * FROM {table}"))
        assert password not in dump, table
    for path in project.root.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path


def _bad(project: PgProject, server: PostgresServer) -> dict[str, tuple[dict[str, Any],
                                                                          dict[str, str]]]:
    url = project.url
    at = url.index("@")
    return {
        "password-in-url": ({"store": f"{url[:at]}:{server.password}{url[at:]}"}, {}),
        "password-variable-unset": ({}, {PG_PASSWORD_ENV: ""}),
        "no-artifact-location": ({"artifacts": None}, {}),
        "no-database-in-url": ({"store": url.rsplit("/", 1)[0]}, {}),
        "wrong-password": ({}, {PG_PASSWORD_ENV: "not-the-password"}),
        "unreachable-server": ({"store": f"postgresql://custseg@127.0.0.1:{free_port()}/db"},
                               {}),
        "no-right-to-create-tables": ({"store": server.database(owner="postgres")}, {}),
    }


BOTH = (("run",), ("models", "list"))
EXPECTED = {  # exit code, message, the commands that give it
    "password-in-url": (2, "carries a password", BOTH),
    "password-variable-unset": (2, f"store_password_env names the environment variable "
                                   f"'{PG_PASSWORD_ENV}', which is not set", BOTH),
    "no-artifact-location": (2, "a PostgreSQL store needs an artifact location", BOTH),
    "no-database-in-url": (2, "expected postgresql://USER@HOST[:PORT]/DATABASE", BOTH),
    "wrong-password": (6, "password authentication failed", BOTH),
    "unreachable-server": (6, "cannot connect to the store postgresql://custseg@127.0.0.1",
                           BOTH),
    # a read command finds no store there; a run cannot create one
    "no-right-to-create-tables": (6, "permission denied for schema public", (("run",),)),
}


@pytest.mark.parametrize("case", list(EXPECTED))
def test_a_bad_store_gives_one_clear_line_and_leaves_the_store_untouched(
        pg_project: Callable[..., PgProject], case: str) -> None:
    project = pg_project()
    changes, env = _bad(project, project.server)[case]
    project.write_config({k: v for k, v in {**project.config, **changes}.items()
                          if v is not None})
    code, message, commands = EXPECTED[case]
    for args in commands:
        result = project.cli(*args, env=env)
        assert result.returncode == code, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert project.server.password not in result.stdout + result.stderr
    assert not _has_schema(project)  # nothing was created


def test_without_psycopg_a_postgresql_store_says_how_to_install_it(
        pg_project: Callable[..., PgProject]) -> None:
    project = pg_project()
    hide = ("import sys; sys.modules['psycopg'] = None; from custseg.cli import main; "
            "sys.argv[0] = 'custseg'; main()")
    result = subprocess.run([sys.executable, "-c", hide, "models", "list", "-c",
                             str(project.config_path)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 6, result.stderr
    assert "uv sync --extra postgresql" in result.stderr and "Traceback" not in result.stderr
