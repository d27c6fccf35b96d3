"""The store: a SQLite file (pipelines, executions, steps, registry, endpoints) beside an
artifact location (a local folder or an `s3://` prefix). This module owns the file:
connections, transactions, migrations; the tables are read and written by
`executions`, `registry`, `endpoints` and `servers`.

Safe for several processes at once: WAL journal, a busy timeout, and every write in a
`BEGIN IMMEDIATE` transaction (so two writers queue instead of failing with "database is
locked"). The schema has a version (`PRAGMA user_version`) and forward migrations.

Opening a store marks executions whose process died as interrupted (see `executions`).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from custseg.errors import StoreError
from custseg.store.migrations import MIGRATIONS, SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "Store", "now", "process_alive", "process_start", "store_paths"]

DB_FILE = "custseg.db"
BUSY_TIMEOUT_MS = 60_000



def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def process_start(pid: int) -> str | None:
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
    return started is None or process_start(pid) in (None, started)


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
        from custseg.store.executions import reap_interrupted

        reap_interrupted(store)
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
