"""Shared fixtures: synthetic customer files, config files, the real CLI, a real moto S3 server.

Nothing here patches custseg: the tests write real files, run the real `custseg` console
script in subprocesses and talk to a real moto server process over HTTP.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import yaml

from custseg.core.sample import generate_customers

# `custseg run` starts a background endpoint server by default; tests opt in to that
# explicitly (their configs set endpoint.autostart and clear this variable).
os.environ.setdefault("CUSTSEG__ENDPOINT__AUTOSTART", "false")

CUSTSEG = Path(sys.executable).parent / "custseg"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def write_customers(path: str | Path, rows: int = 500, segments: int = 3, seed: int = 0,
                    delimiter: str = ",") -> Path:
    """Write `rows` synthetic customers (custseg.core.sample) as CSV; gzip when `path` ends
    in .gz."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table, _ = generate_customers(rows, segments, seed)
    options = pacsv.WriteOptions(delimiter=delimiter)
    if path.name.endswith(".gz"):
        with pa.CompressedOutputStream(str(path), "gzip") as sink:
            pacsv.write_csv(table, sink, options)
    else:
        pacsv.write_csv(table, path, options)
    return path


@pytest.fixture
def make_customers(tmp_path: Path) -> Callable[..., Path]:
    """Factory: `make_customers("data/customers.csv", rows=..., segments=..., seed=...)`
    writes synthetic customers under this test's tmp_path and returns the file."""

    def make(name: str = "data/customers.csv", **kwargs: Any) -> Path:
        return write_customers(tmp_path / name, **kwargs)

    return make


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write a config YAML (a mapping, or raw text) and return its path.

    A mapping gets `store: <tmp_path>/store` unless it names its own store.
    """

    def write(content: dict[str, Any] | str, name: str = "pipeline_config.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, dict):
            content = yaml.safe_dump({"store": str(tmp_path / "store"), **content},
                                     sort_keys=False)
        path.write_text(content, encoding="utf-8")
        return path

    return write


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the installed `custseg` console script in a subprocess (cwd: tmp_path)."""

    def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CUSTSEG), *map(str, args)], cwd=cwd or tmp_path, capture_output=True,
            text=True, timeout=120, check=False,
        )

    return run


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers_http(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # an HTTP error status is still an answer
    except OSError:
        return False


@contextlib.contextmanager
def _moto_process(program: list[str], log: Path) -> Iterator[str]:
    """A moto server process (`program` plus its host and port options) on a free port
    of 127.0.0.1, its output in `log`; yields its URL, and stops it."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, *program, "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not _answers_http(f"{url}/moto-api/"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"moto server did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real moto server process; yields its endpoint URL. Sets fake AWS credentials in
    os.environ (for s3fs, boto3 and CLI subprocesses) and restores them afterwards."""
    saved = {name: os.environ.get(name) for name in AWS_ENV}
    os.environ.update(AWS_ENV)
    try:
        with _moto_process(["-m", "moto.server"],
                           tmp_path_factory.mktemp("moto") / "moto.log") as url:
            yield url
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def s3(moto_server: str) -> Any:
    """A real boto3 S3 client talking to the moto server."""
    import boto3

    return boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")


@pytest.fixture
def make_bucket(s3: Any) -> Callable[..., str]:
    """Factory: create a fresh, uniquely named bucket, optionally with objects
    ({key: bytes}); returns the bucket name."""

    def make(objects: dict[str, bytes] | None = None) -> str:
        name = f"custseg-test-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=name)
        for key, body in (objects or {}).items():
            s3.put_object(Bucket=name, Key=key, Body=body)
        return name

    return make


# -- projects with a store (executions, registry, failures) ----------------------------------

FEATURES = {"numeric": ["Age", "Income", "Purchases"], "categorical": ["Gender"],
            "ignore": ["CustomerID"]}


class StoreProject:
    """A project folder: data/customers.csv, pipeline_config.yaml (its store: ./store), and
    helpers that run the real `custseg` console script on it with `-c` and read the store's
    SQLite file directly."""

    def __init__(self, root: Path, config: dict[str, Any]) -> None:
        self.root = root
        self.config_path = root / "pipeline_config.yaml"
        self.config: dict[str, Any] = {}
        self.write_config(config)

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def db(self) -> Path:
        return self.store / "custseg.db"

    @property
    def data(self) -> Path:
        return self.root / "data" / "customers.csv"

    def write_config(self, config: dict[str, Any]) -> None:
        self.config = config
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    def update_config(self, **changes: Any) -> None:
        self.write_config({**self.config, **changes})

    def command(self, *args: str | Path) -> list[str]:
        return [str(CUSTSEG), *map(str, args), "-c", str(self.config_path)]

    def cli(self, *args: str | Path, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), cwd=self.root, capture_output=True,
                              text=True, timeout=timeout, check=False,
                              env=None if env is None else {**os.environ, **env})

    def ok(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        result = self.cli(*args)
        assert result.returncode == 0, f"custseg {' '.join(map(str, args))}:\n{result.stderr}"
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def json(self, *args: str | Path) -> Any:
        import json

        return json.loads(self.ok(*args, "--json").stdout)

    def popen(self, *args: str | Path) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(*args), cwd=self.root, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of a query on the store's SQLite file (a plain sqlite3 connection)."""
        import sqlite3

        conn = sqlite3.connect(self.db, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(sql, params).fetchall()]
        finally:
            conn.close()


def _no_autostart(config: dict[str, Any]) -> dict[str, Any]:
    """Keep `custseg run` from starting a background endpoint server where the config
    supports `endpoint.autostart` (tests of the store must not leave servers behind)."""
    from custseg.config import EndpointOptions

    if "autostart" in EndpointOptions.model_fields and "endpoint" not in config:
        return {**config, "endpoint": {"autostart": False}}
    return config


@pytest.fixture(scope="session")
def store_project(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., StoreProject]:
    """Factory: `store_project(rows=600, seed=0, **config)` -> a fresh StoreProject (its own
    folder, data and store). `data=False` writes no data; `config` keys override the
    defaults (data_uri: data/, store: store, the FEATURES schema)."""

    def make(name: str = "project", rows: int = 600, seed: int = 0, data: bool = True,
             **config: Any) -> StoreProject:
        root = tmp_path_factory.mktemp(name)
        if data:
            write_customers(root / "data" / "customers.csv", rows=rows, seed=seed)
        base = {"data_uri": "data/", "store": "store", "features": FEATURES}
        return StoreProject(root, _no_autostart({**base, **config}))

    return make


# -- a real PostgreSQL server (the shared store) ---------------------------------------------

PG_PASSWORD_ENV = "CUSTSEG_TEST_PG_PASSWORD"
REQUIRE_POSTGRES_ENV = "CUSTSEG_REQUIRE_POSTGRES"


def _postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, or Debian's /usr/lib/postgresql/VERSION/bin
    (which `apt-get install postgresql` does not put on PATH), newest version first."""
    import shutil

    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                    key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                    reverse=True)
    for folder in [*candidates, *debian]:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def _no_postgres(reason: str) -> None:
    """Skip, or fail where PostgreSQL is required (CI sets CUSTSEG_REQUIRE_POSTGRES=1)."""
    if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_POSTGRES_ENV}=1: the PostgreSQL tests must run)",
                    pytrace=False)
    pytest.skip(reason)


class PostgresServer:
    """A throwaway PostgreSQL cluster: a role `custseg` with a password (in
    `PG_PASSWORD_ENV`) that owns the databases `database()` creates, reached over TCP on
    127.0.0.1 with that password."""

    def __init__(self, port: int, socket_dir: Path, password: str) -> None:
        self.port, self.socket_dir, self.password = port, socket_dir, password

    def admin(self) -> Any:
        import psycopg

        return psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres",
                               dbname="postgres", autocommit=True)

    def database(self, owner: str = "custseg") -> str:
        """A new, empty database (owned by `owner`); its store URL for the role custseg
        (no password in it)."""
        name = f"custseg_{uuid.uuid4().hex[:12]}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} OWNER {owner}")
        return f"postgresql://custseg@127.0.0.1:{self.port}/{name}"

    def query(self, url: str, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of a query on a store's database (a plain psycopg connection)."""
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(url, password=self.password, row_factory=dict_row) as conn:
            return list(conn.execute(sql, params).fetchall())


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster made with initdb and started with pg_ctl on a free port in a
    temporary folder (as the `postgres` user when running as root: initdb refuses root),
    stopped and removed at the end. Sets `PG_PASSWORD_ENV` in os.environ (so that CLI
    subprocesses inherit it). Skips (fails under CUSTSEG_REQUIRE_POSTGRES=1) when the
    binaries or psycopg are missing."""
    import secrets
    import shutil
    import tempfile

    bindir = _postgres_bindir()
    if bindir is None:
        _no_postgres("PostgreSQL binaries (initdb, pg_ctl) not found on PATH or in "
                     "/usr/lib/postgresql/*/bin; `apt-get install postgresql`")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _no_postgres("psycopg is not installed: `uv sync --extra postgresql`")
    assert bindir is not None
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="custseg-pg-"))  # not under pytest's 0700 folders
    if os.geteuid() == 0:
        import pwd

        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            _no_postgres("running as root and there is no `postgres` user to run initdb as")
        os.chown(root, account.pw_uid, account.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    root.chmod(0o755)
    data, sockets, log = root / "data", root / "sockets", root / "server.log"
    password = secrets.token_urlsafe(18)
    superuser_pw = root / "pw"
    superuser_pw.write_text(secrets.token_urlsafe(18) + "\n")
    if as_user:
        os.chown(superuser_pw, account.pw_uid, account.pw_gid)

    def run(*command: str | Path) -> None:
        result = subprocess.run([*as_user, *map(str, command)], capture_output=True,
                                text=True, timeout=120, check=False)
        if result.returncode != 0:
            pytest.fail(f"{Path(command[0]).name} failed:\n{result.stdout}\n{result.stderr}"
                        f"\n{log.read_text() if log.exists() else ''}", pytrace=False)

    port = _free_port()
    run(bindir / "initdb", "-D", data, "-U", "postgres", "--pwfile", superuser_pw,
        "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
    if as_user:
        subprocess.run([*as_user, "mkdir", "-p", str(sockets)], check=True)
    else:
        sockets.mkdir()
    run(bindir / "pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "-o",
        f"-k {sockets} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off "
        f"-c max_connections=200", "start")
    server = PostgresServer(port, sockets, password)
    saved = os.environ.get(PG_PASSWORD_ENV)
    try:
        with server.admin() as conn:
            conn.execute(f"CREATE ROLE custseg LOGIN PASSWORD '{password}'")
        os.environ[PG_PASSWORD_ENV] = password
        yield server
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "-w", "stop"], capture_output=True, timeout=60, check=False)
        if saved is None:
            os.environ.pop(PG_PASSWORD_ENV, None)
        else:
            os.environ[PG_PASSWORD_ENV] = saved
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def moto_sagemaker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real moto server process, with what moto lacks added to its SageMaker backend
    (UpdateEndpoint, pipeline executions whose steps run: tests/moto_sagemaker.py);
    yields its URL."""
    with _moto_process([str(Path(__file__).parent / "moto_sagemaker.py")],
                       tmp_path_factory.mktemp("moto_sagemaker") / "moto.log") as url:
        yield url


# -- a real headless Chromium (the report's layout, the dashboard) ---------------------------

@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium driven by selenium (one per test module), 1280 px wide."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
