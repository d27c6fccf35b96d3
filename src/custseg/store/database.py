"""The store: a database (a SQLite file, or a shared PostgreSQL server) holding
pipelines, executions, steps, the registry and endpoints, beside an artifact location (a
local folder or an `s3://` prefix). This module owns the database: connections,
transactions, migrations; the tables are read and written by `executions`, `registry`,
`endpoints` and `servers`, in SQL both databases understand (`dialects` holds what
differs).

Safe for several processes at once: every write is a transaction taken at once (SQLite:
WAL, a busy timeout and `BEGIN IMMEDIATE`; PostgreSQL: an advisory lock taken first), so
two writers queue instead of failing. The schema has a version and forward migrations.

Several hosts may share a PostgreSQL store: rows about processes (executions, servers,
endpoint workers) carry the host that runs them (`Store.host`), and a process only ever
judges the liveness of its own host's pids. Opening a store marks executions of this
host whose process died as interrupted (see `executions`).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from custseg.errors import StoreError
from custseg.store.dialects import Connection, Dialect, PostgreSQL, SQLite, redact
from custseg.store.migrations import MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION",
    "Connection",
    "Row",
    "Store",
    "is_postgres",
    "now",
    "postgres_url",
    "process_alive",
    "process_start",
    "redact",
    "store_paths",
]

DB_FILE = "custseg.db"
POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")  # + SQLAlchemy's
Row = Any  # a row read by column name: sqlite3.Row, or a dict from psycopg


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


def is_postgres(location: str) -> bool:
    return location.startswith(POSTGRES_SCHEMES)


def postgres_url(location: str) -> str:
    """A `postgresql://USER@HOST[:PORT]/DB` store URL, checked: it names a host and a
    database and carries no password (that comes from the environment variable named by
    `store_password_env`, so that it is never recorded or printed)."""
    try:
        parts = urlsplit(location)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError as exc:
        raise StoreError(f"store {redact(location)!r}: not a valid URL ({exc})") from exc
    query = dict(parse_qsl(parts.query))
    if parts.password is not None or "password" in query:
        raise StoreError(
            f"store {redact(location)!r}: the URL carries a password; remove it from the URL "
            f"and set store_password_env to the name of an environment variable holding it "
            f"(the URL is recorded with every run, the password must not be)")
    if not parts.hostname or not parts.path.strip("/") or "/" in parts.path.strip("/"):
        raise StoreError(f"store {redact(location)!r}: expected "
                         f"postgresql://USER@HOST[:PORT]/DATABASE")
    return location


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
            f"store {redact(location)!r}: a {scheme} store is not supported; use a folder, "
            f"a .db file, a sqlite:///PATH.db URL or a postgresql://USER@HOST/DB URL")
    path = Path(location)
    if path.suffix == ".db":
        return path.parent, path
    return path, path / DB_FILE


def _state_folder(url: str, host: str) -> Path:
    """The local folder of a PostgreSQL store on this host (the endpoint server's
    settings files, log and lock, worker metrics, reports): there is no folder beside
    the database."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    safe_host = re.sub(r"[^A-Za-z0-9_.-]", "_", host)
    return Path.home() / ".local" / "state" / "custseg" / f"{safe_host}-{digest}"


@dataclass(frozen=True)
class Store:
    """A store: its database, a local folder, the artifact location, and the host this
    process runs on (what its rows about processes are keyed by)."""

    location: str  # what reopens it: the SQLite file, or the URL (never with a password)
    folder: Path  # SQLite: the store folder; PostgreSQL: this host's local state folder
    artifacts: str
    host: str
    dialect: Dialect = field(repr=False, compare=False)

    @classmethod
    def _make(cls, location: str, artifacts: str | None, password: str | None,
              host: str | None) -> Store:
        host = host or socket.gethostname()
        if is_postgres(location):
            url = postgres_url(location)
            if not artifacts:
                raise StoreError(
                    f"a PostgreSQL store ({redact(url)}) needs an explicit artifact location "
                    f"that every host reaches: set `artifacts:` to an s3:// prefix or a shared "
                    f"folder (there is no folder beside the database)")
            return cls(location=url, folder=_state_folder(url, host), artifacts=artifacts,
                       host=host, dialect=PostgreSQL(url, password))
        folder, db = store_paths(location)
        return cls(location=str(db), folder=folder,
                   artifacts=artifacts or str(folder / "artifacts"), host=host,
                   dialect=SQLite(db))

    @classmethod
    def open(cls, location: str, artifacts: str | None = None, *,
             password: str | None = None, host: str | None = None) -> Store:
        """Open (creating and migrating when needed) the store at `location`; `password`
        for a PostgreSQL store, `host` (default: the host name) to key process rows by."""
        return cls._make(location, artifacts, password, host)._prepare()

    @classmethod
    def existing(cls, location: str, artifacts: str | None = None, *,
                 password: str | None = None, host: str | None = None) -> Store:
        """Open a store that must already exist (for read commands)."""
        store = cls._make(location, artifacts, password, host)
        with store._errors("open"):
            found = store.dialect.exists()
        if not found:
            raise StoreError(
                f"no store at {redact(location)} (run `custseg run` or `custseg deploy` first, or "
                f"pass -c)")
        return store._prepare()

    def _prepare(self) -> Store:
        """Make the folder, migrate, and mark this host's dead runs interrupted."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store folder {self.folder}: {exc}") from exc
        self._migrate()
        from custseg.store.executions import reap_interrupted

        reap_interrupted(self)
        return self

    @property
    def name(self) -> str:
        """The store in messages (a URL with no password)."""
        return self.dialect.describe()

    @property
    def db_path(self) -> Path:
        """The database file of a SQLite store."""
        if not isinstance(self.dialect, SQLite):
            raise StoreError(f"the store {self.name} is not a SQLite file")
        return self.dialect.path

    # -- connections ---------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, taken at once so that writers queue."""
        with self._errors("write"), self.dialect.connection() as conn, \
                self.dialect.transaction(conn):
            yield conn

    def change_token(self) -> Any:
        """Something that differs after any commit to the store, when the database has a
        cheap one; None otherwise (read again to know)."""
        return self.dialect.change_token()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._errors("read"), self.dialect.connection() as conn:
            yield conn

    @contextmanager
    def kept_open(self) -> Iterator[None]:
        """This thread's reads and writes share one connection until the end of the
        block (each is still its own transaction): for a sequence of them, such as a
        run's."""
        with self.dialect.kept_open():
            yield

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Driver errors as the StoreError they mean; others pass unchanged."""
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            error = self._error(exc, action)
            if error is None:
                raise
            raise error from exc

    def _error(self, exc: BaseException, action: str) -> StoreError | None:
        text = redact(" ".join(str(exc).split()))
        if self.dialect.name != "sqlite":  # the server is gone, or refused (permissions)
            if self.dialect.unreachable(exc) or self.dialect.damaged(exc):
                primary = redact(str(exc).strip().splitlines()[0]) if str(exc).strip() else text
                return StoreError(f"cannot {action} the store {self.name}: {primary}")
            return None
        if self.dialect.unreachable(exc) and action == "write":
            return StoreError(f"cannot write the store {self.name}: {text}")  # locked, full
        if self.dialect.damaged(exc):
            return StoreError(
                f"the store database {self.name} is unusable ({text}): restore it from a "
                f"backup, or move it away and custseg starts a new, empty store there")
        return None

    def _migrate(self) -> None:
        with self._errors("migrate"), self.dialect.connection() as conn:
            self.dialect.prepare(conn)
            with self.dialect.transaction(conn):
                version = self.dialect.schema_version(conn)
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"the store {self.name} has schema version {version}, newer than "
                        f"this custseg understands ({SCHEMA_VERSION}); upgrade custseg")
                for number in range(version, SCHEMA_VERSION):
                    for statement in MIGRATIONS[number].split(";"):
                        if statement.strip():
                            conn.execute(self.dialect.ddl(statement))
                    self.dialect.set_schema_version(conn, number + 1)
