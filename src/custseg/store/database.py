"""The store: a SQLite file (pipelines, executions, steps, registry, endpoints) beside an
artifact location (a local folder or an `s3://` prefix).

Safe for several processes at once: WAL journal, a busy timeout, and every write in a
`BEGIN IMMEDIATE` transaction (so two writers queue instead of failing with "database is
locked"). The schema has a version (`PRAGMA user_version`) and forward migrations.

Executions record the pid and host that run them; a run killed without a chance to
record its end (SIGKILL, power loss) is marked Failed (interrupted) by the next command
that opens the store.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from custseg.errors import StoreError
from custseg.store.migrations import MIGRATIONS, SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "Store", "now", "process_alive", "store_paths"]

DB_FILE = "custseg.db"
BUSY_TIMEOUT_MS = 60_000



def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _process_start(pid: int) -> str | None:
    """The kernel's start time of a process, to tell a live pid from a reused one."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_alive(pid: int, started: str | None = None) -> bool:
    """Whether process `pid` runs (and, given its start time, is not a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return started is None or _process_start(pid) in (None, started)


def redact(url: str) -> str:
    """A URL with any password replaced by ***, for messages."""
    import re

    return re.sub(r"^([a-zA-Z][\w+.-]*://[^:/@]*):[^@/]*@", r"\1:***@", url)


def store_paths(location: str) -> tuple[Path, Path]:
    """(folder, database file) of a store given as a folder, a `.db` file path, or a
    `sqlite:///path.db` URL (`sqlite:////abs/path.db` for an absolute path)."""
    if location.startswith("sqlite:"):
        if not location.startswith("sqlite:///"):
            raise StoreError(f"store {redact(location)!r}: expected sqlite:///PATH.db")
        db = Path(location.removeprefix("sqlite:///"))
        return db.parent, db
    if "://" in location:  # never a folder named after a URL (credentials included)
        scheme = location.split("://", 1)[0]
        raise StoreError(
            f"store {redact(location)!r}: a {scheme} store is not available in this version; "
            f"use a folder, a .db file or a sqlite:///PATH.db URL")
    path = Path(location)
    if path.suffix == ".db":
        return path.parent, path
    return path, path / DB_FILE


@dataclass(frozen=True)
class Store:
    """A store: its SQLite database, the folder around it, and the artifact location."""

    folder: Path
    artifacts: str
    db_path: Path

    @classmethod
    def open(cls, location: str, artifacts: str | None = None) -> Store:
        """Open (creating and migrating when needed) the store at `location`."""
        folder, db = store_paths(location)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store folder {folder}: {exc}") from exc
        store = cls(folder=folder, artifacts=artifacts or str(folder / "artifacts"), db_path=db)
        store._migrate()
        store.reap_interrupted()
        return store

    @classmethod
    def existing(cls, location: str, artifacts: str | None = None) -> Store:
        """Open a store that must already exist (for read commands)."""
        _, db = store_paths(location)
        if not db.is_file():
            raise StoreError(
                f"no store at {location} (run `custseg run` or `custseg deploy` first, or pass -c)"
            )
        return cls.open(location, artifacts)

    # -- connections ---------------------------------------------------------------------
    def connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store database {self.db_path}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"the store database {self.db_path} is unusable: {exc}") from exc
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken at once (BEGIN IMMEDIATE) so writers queue."""
        conn = self.connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.DatabaseError:
                pass  # a damaged file may refuse even this; the error below says why
            if isinstance(exc, sqlite3.OperationalError):  # locked past the timeout, disk full
                raise StoreError(f"cannot write the store {self.db_path}: {exc}") from exc
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
                    exc, sqlite3.IntegrityError):
                raise self._damaged(exc) from exc
            raise
        finally:
            conn.close()

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        conn = self.connect()
        try:
            yield conn
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc
        finally:
            conn.close()

    def _damaged(self, exc: sqlite3.DatabaseError) -> StoreError:
        return StoreError(
            f"the store database {self.db_path} is unusable ({exc}): restore it from a "
            f"backup, or move it away and custseg starts a new, empty store there")

    def _migrate(self) -> None:
        conn = self.connect()
        try:
            self._enable_wal(conn)
            conn.execute("BEGIN IMMEDIATE")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                conn.execute("ROLLBACK")
                raise StoreError(
                    f"the store {self.db_path} has schema version {version}, newer than this "
                    f"custseg understands ({SCHEMA_VERSION}); upgrade custseg"
                )
            for number in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number + 1}")
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc
        finally:
            conn.close()

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL, waiting while another process creates the database: SQLite does
        not call the busy handler for this pragma, so it is retried here."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    # -- pipelines -----------------------------------------------------------------------
    def latest_pipeline(self, name: str) -> tuple[int, dict[str, Any], str] | None:
        with self.read() as conn:
            row = conn.execute(
                "SELECT version, definition, definition_sha256 FROM pipelines WHERE name = ? "
                "ORDER BY version DESC LIMIT 1",
                (name,),
            ).fetchone()
        if row is None:
            return None
        return int(row["version"]), json.loads(row["definition"]), str(row["definition_sha256"])

    def upsert_pipeline(
        self, name: str, definition: dict[str, Any], sha256: str
    ) -> tuple[int, bool]:
        """Store `definition` as a new version unless the latest is identical."""
        with self.write() as conn:
            row = conn.execute(
                "SELECT version, definition_sha256 FROM pipelines WHERE name = ? "
                "ORDER BY version DESC LIMIT 1",
                (name,),
            ).fetchone()
            if row is not None and row["definition_sha256"] == sha256:
                return int(row["version"]), False
            version = 1 if row is None else int(row["version"]) + 1
            conn.execute(
                "INSERT INTO pipelines (name, version, definition, definition_sha256, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, version, json.dumps(definition, sort_keys=True), sha256, now()),
            )
            return version, True

    # -- executions ----------------------------------------------------------------------
    def create_execution(
        self,
        execution_id: str,
        pipeline: tuple[str, int],
        parameters: dict[str, Any],
        steps: list[str],
        user: str,
    ) -> None:
        pid = os.getpid()
        with self.write() as conn:
            conn.execute(
                "INSERT INTO executions (id, pipeline_name, pipeline_version, status, parameters,"
                " started_at, host, pid, pid_start, user) VALUES (?, ?, ?, 'Executing', ?, ?, ?,"
                " ?, ?, ?)",
                (
                    execution_id,
                    pipeline[0],
                    pipeline[1],
                    json.dumps(parameters),
                    now(),
                    socket.gethostname(),
                    pid,
                    _process_start(pid),
                    user,
                ),
            )
            conn.executemany(
                "INSERT INTO steps (execution_id, position, name, status) "
                "VALUES (?, ?, ?, 'Pending')",
                [(execution_id, i, name) for i, name in enumerate(steps)],
            )

    def update_step(self, execution_id: str, name: str, **fields: Any) -> None:
        allowed = {
            "status",
            "started_at",
            "ended_at",
            "seconds",
            "error",
            "outputs",
            "cache_key",
            "cached_from",
            "reason",
        }
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown step fields {sorted(unknown)}")
        if "outputs" in fields:
            fields["outputs"] = json.dumps(fields["outputs"])
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.write() as conn:
            conn.execute(
                f"UPDATE steps SET {sets} WHERE execution_id = ? AND name = ?",
                (*fields.values(), execution_id, name),
            )

    def finish_execution(
        self, execution_id: str, status: str, error: str | None = None, pending_to: str = "Skipped"
    ) -> None:
        with self.write() as conn:
            conn.execute(
                "UPDATE executions SET status = ?, ended_at = ?, error = ? WHERE id = ?",
                (status, now(), error, execution_id),
            )
            conn.execute(
                "UPDATE steps SET status = ? WHERE execution_id = ? AND status = 'Pending'",
                (pending_to, execution_id),
            )

    def reap_interrupted(self) -> list[str]:
        """Mark executions whose process died without finishing as Failed (interrupted)."""
        host = socket.gethostname()
        with self.read() as conn:
            rows = conn.execute(
                "SELECT id, pid, pid_start FROM executions WHERE status = 'Executing' AND host = ?",
                (host,),
            ).fetchall()
        dead = [r["id"] for r in rows if not process_alive(int(r["pid"]), r["pid_start"])]
        for execution_id in dead:
            with self.write() as conn:
                conn.execute(
                    "UPDATE executions SET status = 'Failed', ended_at = ?, error = ? "
                    "WHERE id = ? AND status = 'Executing'",
                    (
                        now(),
                        "interrupted: the process running it ended without finishing",
                        execution_id,
                    ),
                )
                conn.execute(
                    "UPDATE steps SET status = 'Failed', error = 'interrupted', ended_at = ? "
                    "WHERE execution_id = ? AND status = 'Executing'",
                    (now(), execution_id),
                )
                conn.execute(
                    "UPDATE steps SET status = 'Skipped' WHERE execution_id = ? AND "
                    "status = 'Pending'",
                    (execution_id,),
                )
        return dead

    def execution(self, execution_id: str) -> dict[str, Any]:
        with self.read() as conn:
            row = conn.execute("SELECT * FROM executions WHERE id = ?", (execution_id,)).fetchone()
            if row is None:
                matches = conn.execute(
                    "SELECT id FROM executions WHERE id LIKE ? LIMIT 2", (f"{execution_id}%",)
                ).fetchall()
                if len(matches) != 1:
                    raise StoreError(
                        f"no execution {execution_id!r} in {self.db_path} "
                        f"(see `custseg executions list`)"
                    )
                row = conn.execute(
                    "SELECT * FROM executions WHERE id = ?", (matches[0]["id"],)
                ).fetchone()
            steps = conn.execute(
                "SELECT * FROM steps WHERE execution_id = ? ORDER BY position", (row["id"],)
            ).fetchall()
        out = dict(row)
        out["parameters"] = json.loads(out["parameters"])
        out["steps"] = [{**dict(s), "outputs": json.loads(s["outputs"])} for s in steps]
        for s in out["steps"]:
            s.pop("execution_id")
        return out

    def executions(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.read() as conn:
            rows = conn.execute(
                "SELECT id FROM executions ORDER BY started_at DESC LIMIT ?", (limit,)
            ).fetchall()
        return [self.execution(r["id"]) for r in rows]

    def cached_step(self, name: str, cache_key: str) -> dict[str, Any] | None:
        """The latest successful run of step `name` with this cache key."""
        with self.read() as conn:
            row = conn.execute(
                "SELECT s.execution_id, s.outputs, s.cached_from FROM steps s JOIN executions e "
                "ON e.id = s.execution_id WHERE s.name = ? AND s.cache_key = ? AND s.status IN "
                "('Succeeded', 'Cached') ORDER BY e.started_at DESC LIMIT 1",
                (name, cache_key),
            ).fetchone()
        if row is None:
            return None
        return {
            "execution_id": row["cached_from"] or row["execution_id"],
            "outputs": json.loads(row["outputs"]),
        }

    def last_successful_step(self, pipeline: str, name: str) -> dict[str, Any] | None:
        with self.read() as conn:
            row = conn.execute(
                "SELECT s.execution_id, s.outputs FROM steps s JOIN executions e ON "
                "e.id = s.execution_id WHERE e.pipeline_name = ? AND s.name = ? AND s.status IN "
                "('Succeeded', 'Cached') ORDER BY e.started_at DESC LIMIT 1",
                (pipeline, name),
            ).fetchone()
        if row is None:
            return None
        return {"execution_id": row["execution_id"], "outputs": json.loads(row["outputs"])}
