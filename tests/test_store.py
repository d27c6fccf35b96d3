"""The store (SQLite file + artifact location) on real files and real processes: schema
version and forward migrations, WAL and foreign keys, refusing what it cannot use, the
reaper of interrupted executions, and several processes writing at once."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from custseg.errors import StoreError
from custseg.store import endpoints, executions, registry
from custseg.store.database import DB_FILE, SCHEMA_VERSION, Store

if TYPE_CHECKING:
    from tests.conftest import StoreProject

TABLES = {"pipelines", "executions", "steps", "model_packages", "approvals",
          "endpoint_configs", "endpoints"}


def _raw(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    return conn


def _pipeline(store: Store, name: str = "p") -> tuple[str, int]:
    version, _ = executions.upsert_pipeline(store, name, {"steps": []}, "sha-" + name)
    return name, version


# -- schema, pragmas, migrations -------------------------------------------------------------

def test_a_new_store_is_a_migrated_wal_sqlite_file(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "s"))
    assert store.db_path == tmp_path / "s" / DB_FILE
    assert store.artifacts == str(tmp_path / "s" / "artifacts")
    conn = _raw(store.db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    assert tables >= TABLES


def test_store_connections_enforce_foreign_keys(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "s"))
    with store.read() as conn:
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        executions.create_execution(store, "e1", ("no-such-pipeline", 1), {}, ["Train"], "me")
    with store.read() as conn:
        assert conn.execute("SELECT COUNT(*) FROM executions").fetchone()[0] == 0


def _temp_table_seen(store: Store) -> bool:
    """Whether this call's connection holds the TEMP table a `_make_temp` call made (a
    TEMP table lives as long as its connection)."""
    with store.read() as conn:
        return bool(conn.execute("SELECT COUNT(*) FROM sqlite_temp_master "
                                 "WHERE name = 'mark'").fetchone()[0])


def _make_temp(store: Store) -> None:
    with store.write() as conn:
        conn.execute("CREATE TEMP TABLE mark (x INTEGER)")


def test_kept_open_shares_one_connection_per_thread_until_the_end(tmp_path: Path) -> None:
    """A run's store calls share a connection (kept_open); outside it, in another
    thread, nested, or after an error, each call has one of its own. Writes still
    commit at once: another connection sees them inside the block."""
    import threading

    store = Store.open(str(tmp_path / "s"))
    _make_temp(store)
    assert not _temp_table_seen(store)  # a connection per call
    with store.kept_open():
        _make_temp(store)
        assert _temp_table_seen(store)
        other: list[bool] = []
        thread = threading.Thread(target=lambda: other.append(_temp_table_seen(store)))
        thread.start()
        thread.join()
        assert other == [False]
        with store.read() as conn:  # nested: a connection of its own
            assert _temp_table_seen(store) is False
            conn.execute("SELECT 1")
        executions.upsert_pipeline(store, "p", {"steps": []}, "sha")
        with sqlite3.connect(store.db_path) as outside:  # committed, seen elsewhere
            assert outside.execute("SELECT COUNT(*) FROM pipelines").fetchone()[0] == 1
        with pytest.raises(StoreError, match="no_such_table"), store.write() as conn:
            conn.execute("SELECT * FROM no_such_table")
        assert not _temp_table_seen(store)  # after an error: a new connection
        _make_temp(store)
        with store.kept_open():  # nested block: the outer one keeps its connection
            assert _temp_table_seen(store)
        assert _temp_table_seen(store)
    assert not _temp_table_seen(store)


def test_reopening_keeps_the_data_and_does_not_migrate_again(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "s"))
    pipeline = _pipeline(store)
    executions.create_execution(store, "e1", pipeline, {"n_clusters": 3}, ["Train"], "me")
    executions.finish_execution(store, "e1", "Succeeded")
    again = Store.open(str(tmp_path / "s"))
    record = executions.execution(again, "e1")
    assert record.status == "Succeeded" and record.parameters == {"n_clusters": 3}
    conn = _raw(again.db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


def test_an_existing_version_0_database_is_migrated_forward(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    conn = sqlite3.connect(folder / DB_FILE)  # a database custseg never touched: version 0
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.execute("INSERT INTO notes VALUES ('kept')")
    conn.commit()
    conn.close()
    store = Store.open(str(folder))
    with store.read() as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT text FROM notes").fetchall()[0][0] == "kept"
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert names >= TABLES | {"notes"}


def _store_at_version(folder: Path, version: int) -> sqlite3.Connection:
    """A store's database as schema `version` left it (the caller adds rows, commits)."""
    from custseg.store.migrations import MIGRATIONS

    folder.mkdir()
    conn = sqlite3.connect(folder / DB_FILE)
    for migration in MIGRATIONS[:version]:
        conn.executescript(migration)
    conn.execute(f"PRAGMA user_version = {version}")
    return conn


def test_a_version_4_store_keeps_its_workers_and_servers_keyed_by_this_host(
        tmp_path: Path) -> None:
    """Schema 5 keys workers and servers by (host, pid): the rows a single-machine store
    had are kept (host ''), and this host still sees, judges and forgets them."""
    from custseg.store.servers import forget_server, server_rows

    folder = tmp_path / "s"
    conn = _store_at_version(folder, 4)
    conn.execute("INSERT INTO endpoint_workers VALUES ('*', ?, NULL, 'Up', NULL, 't')",
                 (os.getpid(),))
    conn.execute("INSERT INTO servers VALUES (?, '127.0.0.1', 8080, 2, 't', '{}')",
                 (os.getpid(),))
    conn.commit()
    conn.close()
    store = Store.open(str(folder))
    with store.read() as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        rows = [dict(r) for r in conn.execute("SELECT host_id, pid FROM endpoint_workers")]
    assert rows == [{"host_id": "", "pid": os.getpid()}]
    assert endpoints.switch_view(store, "e")[1] == [("", os.getpid())]  # judged here
    assert [r["port"] for r in server_rows(store)] == [8080]
    forget_server(store, os.getpid())
    assert server_rows(store) == []


def test_a_version_5_store_gains_the_drift_reports_and_keeps_its_rows(tmp_path: Path) -> None:
    from custseg.store.drift import drift_history, record_drift

    folder = tmp_path / "s"
    conn = _store_at_version(folder, 5)
    conn.execute("INSERT INTO pipelines VALUES ('p', 1, '{}', 'sha', 't')")
    conn.commit()
    conn.close()
    store = Store.open(str(folder))
    with store.read() as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 6
        assert conn.execute("SELECT name FROM pipelines").fetchall()[0][0] == "p"
    report = {"records": 3, "drift": False, "alerts": [], "features": []}
    number = record_drift(store, "e", "g/1", "capture", None, report, "ann")
    assert [(r.id, r.max_psi, r.segment_psi) for r in drift_history(store, "e")] == [
        (number, None, None)]


def _newer_schema(folder: Path) -> None:
    Store.open(str(folder))
    conn = sqlite3.connect(folder / DB_FILE)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()


def _not_a_database(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / DB_FILE).write_bytes(b"this is not an SQLite database, just text\n" * 100)


@pytest.mark.parametrize(
    ("spoil", "expected"),
    [(_newer_schema, f"schema version {SCHEMA_VERSION + 1}, newer than this custseg"),
     (_not_a_database, "is unusable")],
    ids=["newer-schema", "not-a-database"],
)
def test_a_store_it_cannot_use_is_refused_with_a_clear_message(
        store_project: Callable[..., StoreProject], spoil: Callable[[Path], None],
        expected: str) -> None:
    project = store_project()
    spoil(project.store)
    before = project.db.read_bytes()
    with pytest.raises(StoreError, match="store") as info:
        Store.open(str(project.store))
    assert expected in str(info.value) and str(project.db) in str(info.value)
    result = project.cli("executions", "list")  # the CLI: exit 6 and one line, no traceback
    assert result.returncode == 6, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert project.db.read_bytes() == before  # left as it was


@pytest.mark.parametrize("command", [("executions", "list"), ("models", "list"),
                                     ("endpoints", "list"), ("run",)])
def test_a_store_damaged_in_the_middle_gives_one_line_not_a_traceback(
        store_project: Callable[..., StoreProject], command: tuple[str, ...]) -> None:
    project = store_project()
    project.ok("run")
    project.ok("run", "--no-cache")  # enough rows for the tables to span several pages
    with sqlite3.connect(project.db) as conn:  # fold the WAL in, so the damage is seen
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(project.db.read_bytes())
    assert len(data) > 28672, len(data)
    data[12288:28672] = b"\xa5" * (28672 - 12288)  # bytes 12288-28671 overwritten
    project.db.write_bytes(bytes(data))
    result = project.cli(*command)
    assert result.returncode == 6, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is unusable" in lines[0] and "restore it" in lines[0]
    assert project.db.read_bytes() == bytes(data)  # left as it was, for recovery


def test_read_commands_need_an_existing_store_and_do_not_create_one(
        store_project: Callable[..., StoreProject]) -> None:
    project = store_project()
    for args in (("executions", "list"), ("models", "list"), ("executions", "describe", "x")):
        result = project.cli(*args)
        assert result.returncode == 6, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"error: no store at {project.store} (run `custseg run` or `custseg deploy` "
            "first, or pass -c)"]
    assert not project.store.exists()
    with pytest.raises(StoreError, match="no store at"):
        Store.existing(str(project.store))


def test_a_store_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "s").write_text("a file\n")
    with pytest.raises(StoreError, match="cannot create the store folder"):
        Store.open(str(tmp_path / "s"))


# -- where the store is ----------------------------------------------------------------------

STORE_FORMS = [
    pytest.param(lambda root: "meta", lambda root: root / "meta" / DB_FILE, id="folder"),
    pytest.param(lambda root: f"sqlite:///{root}/meta/meta.db",
                 lambda root: root / "meta" / "meta.db", id="sqlite-url"),
    pytest.param(lambda root: "meta/meta.db", lambda root: root / "meta" / "meta.db",
                 id="db-file-path"),
]


@pytest.mark.parametrize(("store", "db_file"), STORE_FORMS)
def test_the_store_may_be_a_folder_or_a_database_url(
        store_project: Callable[..., StoreProject], store: Callable[[Path], str],
        db_file: Callable[[Path], Path]) -> None:
    project = store_project()
    project.update_config(store=store(project.root))
    result = project.cli("run", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert db_file(project.root).is_file()
    assert Path(out["model_uri"]).is_relative_to(project.root / "meta")
    assert not (project.root / "sqlite:").exists()
    listed = project.json("executions", "list")
    assert [e["id"] for e in listed] == [out["id"]]
    assert [m["version"] for m in project.json("models", "list")] == [1]


# -- pipelines -------------------------------------------------------------------------------

def test_upsert_pipeline_adds_a_version_only_when_the_definition_changes(
        tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "s"))
    assert executions.latest_pipeline(store, "p") is None
    assert executions.upsert_pipeline(store, "p", {"n": 1}, "a") == (1, True)
    assert executions.upsert_pipeline(store, "p", {"n": 1}, "a") == (1, False)
    assert executions.upsert_pipeline(store, "p", {"n": 2}, "b") == (2, True)
    assert executions.upsert_pipeline(store, "q", {"n": 2}, "b") == (1, True)  # per pipeline name
    # back to the first definition: a new version
    assert executions.upsert_pipeline(store, "p", {"n": 1}, "a") == (3, True)
    assert executions.latest_pipeline(store, "p") == executions.PipelineVersion(
        "p", 3, {"n": 1}, "a")


# -- the reaper of interrupted executions ----------------------------------------------------

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _set_runner(store: Store, execution_id: str, pid: int, pid_start: str | None,
                host: str) -> None:
    with store.write() as conn:
        conn.execute("UPDATE executions SET pid = ?, pid_start = ?, host = ? WHERE id = ?",
                     (pid, pid_start, host, execution_id))


@pytest.mark.parametrize(
    ("runner", "reaped"),
    [
        (lambda: (_dead_pid(), None, socket.gethostname()), True),
        (lambda: (os.getpid(), "1", socket.gethostname()), True),  # the pid was reused
        (lambda: (os.getpid(), None, socket.gethostname()), False),  # alive: left alone
        (lambda: (_dead_pid(), None, "another-host.example"), False),  # not ours to judge
    ],
    ids=["dead-process", "reused-pid", "live-process", "other-host"],
)
def test_opening_the_store_marks_executions_of_dead_processes_failed(
        tmp_path: Path, runner: Callable[[], tuple[int, str | None, str]],
        reaped: bool) -> None:
    store = Store.open(str(tmp_path / "s"))
    executions.create_execution(store, "e1", _pipeline(store), {}, ["Train", "CreateModel"], "me")
    executions.update_step(store, "e1", "Train", status="Executing",
                           started_at="2024-01-01T00:00:00")
    _set_runner(store, "e1", *runner())
    Store.open(str(tmp_path / "s"))  # the next command
    record = executions.execution(store, "e1")
    steps = {s.name: (s.status, s.error) for s in record.steps}
    if reaped:
        assert record.status == "Failed"
        assert record.error is not None and record.error.startswith("interrupted")
        assert record.ended_at is not None
        assert steps == {"Train": ("Failed", "interrupted"), "CreateModel": ("Skipped", None)}
    else:
        assert record.status == "Executing" and record.error is None
        assert steps == {"Train": ("Executing", None), "CreateModel": ("Pending", None)}


def test_finished_executions_are_never_reaped(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "s"))
    executions.create_execution(store, "e1", _pipeline(store), {}, ["Train"], "me")
    executions.finish_execution(store, "e1", "Succeeded")
    _set_runner(store, "e1", _dead_pid(), None, socket.gethostname())
    assert executions.reap_interrupted(Store.open(str(tmp_path / "s"))) == []
    assert executions.execution(store, "e1").status == "Succeeded"


# -- several processes at once ---------------------------------------------------------------

def _register_many(folder: str, n: int, barrier: Any, results: Any) -> None:
    """In another process: register n versions and upsert n definitions, all at once with
    the other processes; puts the versions it got (or the error it met)."""
    try:
        store = Store.open(folder)
        barrier.wait()
        got = []
        for i in range(n):
            got.append(registry.register(
                store, "g", execution_id=None, artifact_uri=f"/m/{os.getpid()}/{i}",
                lineage={}, status=registry.ApprovalStatus.PENDING, user="me"))
            executions.upsert_pipeline(store, "p", {"pid": os.getpid(), "i": i},
                                       f"{os.getpid()}-{i}")
        results.put(got)
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")


def _processes(target: Callable[..., None], n: int, *args: Any) -> list[Any]:
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters, no inherited state
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    out = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return out


def test_processes_writing_at_once_queue_instead_of_failing(tmp_path: Path) -> None:
    folder = str(tmp_path / "s")
    store = Store.open(folder)
    per_process, n = 10, 6
    t0 = time.monotonic()
    got = _processes(_register_many, n, folder, per_process)
    assert not [g for g in got if isinstance(g, str)]  # no "database is locked"
    versions = sorted(v for g in got for v in g)
    assert versions == list(range(1, n * per_process + 1))  # no duplicates, no gaps
    assert all(g == sorted(g) for g in got)  # each process saw its versions increase
    with store.read() as conn:
        assert conn.execute("SELECT COUNT(*) FROM approvals").fetchone()[0] == n * per_process
        assert conn.execute("SELECT MAX(version) FROM pipelines").fetchone()[0] == (
            n * per_process)
    assert time.monotonic() - t0 < 30


OPEN_STORE = """
import sys
from custseg.store.database import Store
print("ready", flush=True)
try:
    Store.open(sys.argv[1])
except Exception as exc:
    sys.exit(f"{type(exc).__name__}: {exc}")
"""


def test_opening_a_store_that_another_process_is_creating_waits_for_it(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    creator = sqlite3.connect(folder / DB_FILE, isolation_level=None)
    creator.execute("BEGIN IMMEDIATE")  # the creating process's write lock on the new file
    proc = subprocess.Popen([sys.executable, "-c", OPEN_STORE, str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1.0)  # it should be waiting for the lock, not done
        still_waiting = proc.poll() is None
        creator.execute("COMMIT")
        _, stderr = proc.communicate(timeout=60)
    finally:
        creator.close()
        if proc.poll() is None:
            proc.kill()
    assert still_waiting, stderr
    assert proc.returncode == 0, stderr
    store = Store.existing(str(folder))
    with store.read() as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_the_change_token_moves_with_every_commit_from_any_process(tmp_path: Path) -> None:
    """What an endpoint worker looks at before it reads the endpoints again."""
    store = Store.open(str(tmp_path / "store"))
    first = store.change_token()
    assert first is not None and store.change_token() == first  # reading changes nothing
    with store.read() as conn:
        conn.execute("SELECT count(*) FROM endpoints").fetchone()
    assert store.change_token() == first
    _pipeline(store)  # a commit through this process's other connections
    second = store.change_token()
    assert second != first
    subprocess.run([sys.executable, "-c", (  # and one from another process
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "c.execute(\"INSERT INTO pipelines (name, version, definition, definition_sha256, "
        "created_at) VALUES ('other', 1, '{}', 'x', 'now')\"); c.commit()"),
        str(store.db_path)], check=True)
    assert store.change_token() not in (first, second)
