"""What differs between the store's two databases, SQLite and PostgreSQL, in one place.

The tables' SQL (in `executions`, `registry`, `endpoints`, `servers`) is written once, in
the dialect both understand: `?` placeholders, `INSERT ... ON CONFLICT ... DO UPDATE`,
rows read by column name. A dialect supplies the rest:

* connecting (PostgreSQL: psycopg 3, imported only when such a store is opened; one
  connection per thread, reused);
* starting a write: SQLite's `BEGIN IMMEDIATE`; on PostgreSQL a transaction that first
  takes one advisory lock (`pg_advisory_xact_lock`), so that writers queue exactly as
  they do on SQLite and a read-then-write (the next model version, say) stays atomic;
* the schema version: `PRAGMA user_version`, or a one-row `schema_version` table;
* the DDL of the migrations (AUTOINCREMENT, REAL, the `user` column);
* which driver errors mean "cannot reach or write the store" and which "damaged";
* a change token, when the database has a cheap one (SQLite's `data_version`): what an
  endpoint worker looks at before it reads the endpoints again.
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from custseg.errors import StoreError

__all__ = ["BUSY_TIMEOUT_MS", "Connection", "Dialect", "PostgreSQL", "SQLite", "redact"]

BUSY_TIMEOUT_MS = 60_000
# the advisory lock every PostgreSQL write takes first: b"custseg" as a number
WRITE_LOCK = int.from_bytes(b"custseg", "big")
INSTALL_HINT = "install it with `uv sync --extra postgresql` (or pip install 'custseg[postgresql]')"


def redact(url: str) -> str:
    """A URL with any password replaced by ***, for messages."""
    url = re.sub(r"^([a-zA-Z][\w+.-]*://[^:/@]*):[^@/]*@", r"\1:***@", url)
    return re.sub(r"(?i)(password=)[^&\s]*", r"\1***", url)


class Connection:
    """A driver connection that speaks the store's SQL: `?` placeholders, rows that are
    read by column name (`row["name"]`, `dict(row)`)."""

    def __init__(self, raw: Any, placeholders: bool) -> None:
        self.raw = raw
        self._translate = _pyformat if placeholders else str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.raw.execute(self._translate(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        cursor = self.raw.cursor()
        try:
            cursor.executemany(self._translate(sql), rows)
        finally:
            cursor.close()


@functools.lru_cache(maxsize=512)
def _pyformat(sql: str) -> str:
    """`?` placeholders as psycopg's `%s` (a literal `%` doubled). The store's SQL has no
    `?` or `%` inside string literals."""
    return sql.replace("%", "%%").replace("?", "%s")


class Dialect(Protocol):
    """What a store's database does its own way."""

    name: str

    def describe(self) -> str: ...

    def exists(self) -> bool: ...

    @contextmanager
    def connection(self) -> Iterator[Connection]: ...

    @contextmanager
    def kept_open(self) -> Iterator[None]: ...

    @contextmanager
    def transaction(self, conn: Connection) -> Iterator[None]: ...

    def prepare(self, conn: Connection) -> None: ...

    def schema_version(self, conn: Connection) -> int: ...

    def set_schema_version(self, conn: Connection, version: int) -> None: ...

    def ddl(self, statement: str) -> str: ...

    def unreachable(self, exc: BaseException) -> bool: ...

    def damaged(self, exc: BaseException) -> bool: ...

    def change_token(self) -> Any: ...


# -- SQLite ----------------------------------------------------------------------------------


class SQLite:
    """The file store: WAL, a busy timeout, `BEGIN IMMEDIATE` writes."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()  # .kept: this thread's connection in kept_open
        self._watch: sqlite3.Connection | None = None  # for change_token only
        self._watch_lock = threading.Lock()

    def describe(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        return self.path.is_file()

    def _open(self) -> sqlite3.Connection:
        try:
            raw = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                  isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store database {self.path}: {exc}") from exc
        raw.row_factory = sqlite3.Row
        try:
            raw.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            raw.execute("PRAGMA foreign_keys = ON")
            raw.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as exc:
            raw.close()
            raise StoreError(f"the store database {self.path} is unusable: {exc}") from exc
        return raw

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection of its own, closed after use; within `kept_open`, this thread's
        kept one (a nested use, or a use after an error in it, gets one of its own)."""
        local = self._local
        if getattr(local, "keeping", False) and not getattr(local, "busy", False):
            raw = getattr(local, "kept", None) or self._open()
            local.kept, local.busy = raw, True
            try:
                yield Connection(raw, placeholders=False)
            except BaseException:
                local.kept = None  # whatever state it is in, it is not reused
                raw.close()
                raise
            finally:
                local.busy = False
            return
        raw = self._open()
        try:
            yield Connection(raw, placeholders=False)
        finally:
            raw.close()

    def change_token(self) -> int | None:
        """A number that changes whenever another connection commits (`PRAGMA
        data_version`, on a connection kept for it: read from the WAL index in shared
        memory, about 10 us); None when it cannot be read (then assume a change)."""
        with self._watch_lock:
            try:
                if self._watch is None:
                    self._watch = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                                  isolation_level=None,
                                                  check_same_thread=False)
                return int(self._watch.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error:
                if self._watch is not None:
                    self._watch.close()
                    self._watch = None
                return None

    @contextmanager
    def kept_open(self) -> Iterator[None]:
        """Within it, this thread's store calls share one connection, closed at the end.
        A run makes some 25 store calls: opening a connection for each, and closing it
        (a WAL checkpoint when it is the last one), cost 10 to 15 ms a run."""
        local = self._local
        if getattr(local, "keeping", False):  # nested: the outer one closes it
            yield
            return
        local.keeping = True
        try:
            yield
        finally:
            raw, local.kept, local.keeping = getattr(local, "kept", None), None, False
            if raw is not None:
                raw.close()

    @contextmanager
    def transaction(self, conn: Connection) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            try:
                if conn.raw.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.DatabaseError:
                pass  # a damaged file may refuse even this; the caller's error says why
            raise

    def prepare(self, conn: Connection) -> None:
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

    def schema_version(self, conn: Connection) -> int:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def set_schema_version(self, conn: Connection, version: int) -> None:
        conn.execute(f"PRAGMA user_version = {int(version)}")

    def ddl(self, statement: str) -> str:
        return statement

    def unreachable(self, exc: BaseException) -> bool:  # locked past the timeout, disk full
        return isinstance(exc, sqlite3.OperationalError)

    def damaged(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.DatabaseError) and not isinstance(
            exc, sqlite3.IntegrityError)


# -- PostgreSQL ------------------------------------------------------------------------------


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise StoreError(f"a postgresql:// store needs the psycopg package: {INSTALL_HINT}"
                         ) from exc
    return psycopg


_DDL = [  # SQLite's words in the migrations -> PostgreSQL's
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"),
     "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),  # PostgreSQL's REAL is 4 bytes
    (re.compile(r"^(\s*)user TEXT", re.M), r'\1"user" TEXT'),  # a reserved word there
]


class PostgreSQL:
    """A shared store on a PostgreSQL server (psycopg 3). The URL never carries the
    password: it comes from the environment variable the config names."""

    name = "postgresql"

    def __init__(self, url: str, password: str | None) -> None:
        self.url = url
        self._password = password
        self._local = threading.local()

    def describe(self) -> str:
        return redact(self.url)

    def _connect(self) -> Any:
        psycopg = _psycopg()
        from psycopg.rows import dict_row

        # libpq reads postgresql:// and postgres://, not SQLAlchemy's postgresql+psycopg://
        url = "postgresql://" + self.url.split("://", 1)[1]
        kwargs: dict[str, Any] = {"connect_timeout": 10, "application_name": "custseg",
                                  "options": f"-c lock_timeout={BUSY_TIMEOUT_MS}"}
        if self._password is not None:
            kwargs["password"] = self._password
        try:
            return psycopg.connect(url, autocommit=True, row_factory=dict_row, **kwargs)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the store {redact(self.url)}: "
                             f"{_first_line(exc)}") from exc

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """This thread's connection (made on first use, reused while healthy); a nested
        use gets a connection of its own."""
        psycopg = _psycopg()
        local = self._local
        cached = getattr(local, "conn", None)
        reuse = (cached is not None and not getattr(local, "busy", False)
                 and getattr(local, "pid", None) == os.getpid() and _usable(cached))
        raw: Any = cached if reuse else self._connect()
        if not getattr(local, "busy", False):
            local.conn, local.pid, local.busy = raw, os.getpid(), True
        try:
            yield Connection(raw, placeholders=True)
        finally:
            broken = raw.closed or (raw.info.transaction_status
                                    != psycopg.pq.TransactionStatus.IDLE)
            if raw is getattr(local, "conn", None):
                local.busy = False
                if broken:
                    local.conn = None
            if broken or raw is not getattr(local, "conn", None):
                raw.close()

    @contextmanager
    def kept_open(self) -> Iterator[None]:
        yield  # every thread's connection is kept already (see `connection`)

    @contextmanager
    def transaction(self, conn: Connection) -> Iterator[None]:
        conn.execute("BEGIN")
        try:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
            yield
            conn.execute("COMMIT")
        except BaseException:
            if not conn.raw.closed:
                try:
                    conn.execute("ROLLBACK")
                except _psycopg().Error:
                    pass  # the connection is gone; it is not reused
            raise

    def exists(self) -> bool:
        with self.connection() as conn:
            row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL AS found"
                               ).fetchone()
        return bool(row["found"])

    def prepare(self, conn: Connection) -> None:
        return None

    def schema_version(self, conn: Connection) -> int:
        """The version (in a write transaction: a new database gets the table, at 0)."""
        found = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL AS found"
                             ).fetchone()["found"]
        row = conn.execute("SELECT version FROM schema_version").fetchone() if found else None
        if row is None:
            if not found:
                conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            return 0
        return int(row["version"])

    def set_schema_version(self, conn: Connection, version: int) -> None:
        conn.execute("UPDATE schema_version SET version = ?", (version,))

    def ddl(self, statement: str) -> str:
        for pattern, replacement in _DDL:
            statement = pattern.sub(replacement, statement)
        return statement

    def unreachable(self, exc: BaseException) -> bool:
        psycopg = _psycopg()
        return isinstance(exc, psycopg.OperationalError)

    def damaged(self, exc: BaseException) -> bool:
        psycopg = _psycopg()
        return isinstance(exc, psycopg.DatabaseError) and not isinstance(
            exc, psycopg.IntegrityError | psycopg.OperationalError)

    def change_token(self) -> None:
        """None: no change token as cheap as the query it would save."""
        return None


def _usable(raw: Any) -> bool:
    """Whether an idle connection is still open: one the server closed (a restart, an
    idle timeout, pg_terminate_backend) has something to read, its end, without a round
    trip."""
    import select

    if raw.closed or raw.info.transaction_status != _psycopg().pq.TransactionStatus.IDLE:
        return False
    try:
        readable, _, _ = select.select([raw.fileno()], [], [], 0)
    except (OSError, ValueError):
        return False
    if readable:
        raw.close()
    return not readable


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else type(exc).__name__
