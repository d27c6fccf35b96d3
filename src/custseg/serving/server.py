"""Running the endpoint server: in the foreground (`custseg serve`), or in the background
for a store (what `custseg run` starts when none is running).

The background server writes its log to `<store>/server.log` and records itself (pid,
host, port, workers, settings) in the store (`store/servers`), which stands in for a pid
file.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from custseg.errors import DeployError
from custseg.serving.settings import SETTINGS_ENV, ServerSettings
from custseg.serving.workers import reuseport_available, run_workers
from custseg.store.database import Store, process_alive
from custseg.store.servers import forget_server, record_server, server_rows

__all__ = [
    "ServerInfo",
    "check_bind",
    "running_server",
    "serve",
    "start_background",
    "stop",
]

START_TIMEOUT = 60.0


@dataclass(frozen=True)
class ServerInfo:
    pid: int
    host: str
    port: int
    workers: int
    settings: dict[str, Any] = field(default_factory=dict, compare=False)
    note: str | None = field(default=None, compare=False)  # e.g. why another port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None, allow_unauthenticated: bool) -> None:
    """Refuse to expose unauthenticated endpoints beyond this machine."""
    if not _is_loopback(host) and api_key is None and not allow_unauthenticated:
        raise DeployError(
            f"refusing to bind {host} without an API key: set endpoint.api_key_env to the name "
            f"of an environment variable holding one, or pass --allow-unauthenticated"
        )


def _answers(info: ServerInfo, timeout: float = 1.0) -> bool:
    import urllib.error  # here: urllib.request costs 20 ms of every command's start-up
    import urllib.request

    try:
        with urllib.request.urlopen(f"{info.url}/openapi.json", timeout=timeout) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def running_server(store: Store) -> ServerInfo | None:
    """The server running for this store, if any (stale records are removed)."""
    for row in server_rows(store):
        info = ServerInfo(row["pid"], row["host"], row["port"], row["workers"],
                          row["settings"])
        if process_alive(info.pid) and _answers(info):
            return info
        if not process_alive(info.pid):
            forget_server(store, info.pid)
    return None


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def serve(store: Store, settings: ServerSettings, *, allow_unauthenticated: bool = False
          ) -> None:
    """Run the server in this process until it is stopped (SIGINT/SIGTERM), with
    `settings`, which its workers read from a file beside the store (never from
    scattered environment variables)."""
    import uvicorn

    from custseg.serving.http_protocol import TimedHttpToolsProtocol

    host, port = settings.host, settings.port
    check_bind(host, settings.api_key(), allow_unauthenticated)
    if settings.capture is not None and settings.capture.pii:  # before any worker needs it
        from custseg.config import read_secret

        read_secret(settings.capture.pii_key_env, "endpoint.capture.pii_key_env")
    if not _port_free(host, port):
        raise DeployError(
            f"cannot serve on {host}:{port}: the port is taken by {who_listens(host, port)} "
            f"(set endpoint.port or pass --port)"
        )
    settings_file = settings.write(store.folder / f"server-{os.getpid()}.json")
    os.environ[SETTINGS_ENV] = str(settings_file)  # the workers' pointer to it
    record_server(store, pid=os.getpid(), host=host, port=port, workers=settings.workers,
                  settings=settings.record())
    options: dict[str, Any] = {
        "app": "custseg.serving.app:create_app",
        "factory": True,
        "loop": "uvloop",
        "http": TimedHttpToolsProtocol,  # httptools, with request timeouts
        "lifespan": "on",
        "access_log": False,
        "proxy_headers": False,  # no use for X-Forwarded-*, and a middleware per request
        "log_level": "warning",
        "timeout_graceful_shutdown": 10,
        "limit_concurrency": 512,  # beyond: 503 at once rather than unbounded memory
    }
    try:
        if settings.workers > 1 and reuseport_available():  # a socket per worker
            run_workers(host, port, settings.workers, options)
        else:
            uvicorn.run(host=host, port=port, workers=settings.workers, **options)
    finally:
        forget_server(store, os.getpid())
        with contextlib.suppress(OSError):
            settings_file.unlink()


def start_background(store: Store, settings: ServerSettings) -> ServerInfo:
    """Start the server detached for this store (`python -m custseg.serving.server SETTINGS`) and
    wait until it answers.

    One start at a time per store (a file lock): a second run that comes while the first
    starts the server finds it running. When the port is taken (by another store's
    server, say), the next free one of the following `PORT_TRIES` is used, as Jupyter
    does, and `ServerInfo.note` says why.
    """
    with _start_lock(store):
        existing = running_server(store)
        if existing is not None:
            return existing
        actual, note = _choose_port(settings.host, settings.port)
        if actual != settings.port:
            settings = settings.replace(port=actual, requested_port=settings.port)
        info = _spawn(store, settings)
    return ServerInfo(info.pid, info.host, info.port, info.workers, info.settings, note)


PORT_TRIES = 20


@contextlib.contextmanager
def _start_lock(store: Store) -> Iterator[None]:
    import fcntl

    path = store.folder / "server.lock"
    with open(path, "a+b") as f:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DeployError(f"another process has been starting the endpoint server "
                                      f"of this store for {START_TIMEOUT:.0f} s ({path})"
                                      ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def who_listens(host: str, port: int) -> str:
    """What holds a port, in words: a custseg endpoint server (with its endpoints), or
    another program."""
    import urllib.error
    import urllib.request

    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    try:
        with urllib.request.urlopen(f"{url}/openapi.json", timeout=1.0) as r:
            title = json.loads(r.read()).get("info", {}).get("title", "")
    except (urllib.error.URLError, OSError, ValueError, AttributeError):
        return "another program"
    if "custseg" not in str(title).lower():
        return "another program"
    return (f"another custseg endpoint server (another store's; its endpoints: GET "
            f"{url}/endpoints; `custseg serve --restart` or `custseg endpoints delete` from "
            f"its project stops it)")


def _choose_port(host: str, port: int) -> tuple[int, str | None]:
    if _port_free(host, port):
        return port, None
    holder = who_listens(host, port)
    for candidate in range(port + 1, port + 1 + PORT_TRIES):
        if _port_free(host, candidate):
            return candidate, f"port {port} is taken by {holder}: serving on {candidate}"
    raise DeployError(
        f"cannot start the endpoint server on {host}:{port}: the port is taken by {holder}, "
        f"and so are the next {PORT_TRIES} (set endpoint.port in the config)")


def _spawn(store: Store, settings: ServerSettings) -> ServerInfo:
    log_path = store.folder / "server.log"
    start_file = settings.write(store.folder / "server-start.json")
    command = [sys.executable, "-m", "custseg.serving.server", str(start_file)]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=str(store.folder),
        )
    info = ServerInfo(proc.pid, settings.host, settings.port, settings.workers)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise DeployError(
                f"the endpoint server exited at start ({' / '.join(tail)}); log: {log_path}"
            )
        if _answers(info, timeout=0.5):
            return info
        time.sleep(0.1)
    raise DeployError(
        f"the endpoint server did not answer within {START_TIMEOUT:.0f} s; log: {log_path}"
    )


def stop(store: Store, timeout: float = 15.0) -> bool:
    """Stop the store's background server; True when one was running."""
    info = running_server(store)
    if info is None:
        return False
    os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process_alive(info.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if process_alive(info.pid):  # the workers too: they hold the port
        with contextlib.suppress(ProcessLookupError):
            os.killpg(info.pid, signal.SIGKILL)
    forget_server(store, info.pid)
    return True


def main(argv: list[str]) -> int:
    """`python -m custseg.serving.server SETTINGS.json`: the background server's entry point."""
    if len(argv) != 1:
        print("usage: python -m custseg.serving.server SETTINGS.json", file=sys.stderr)
        return 2
    from custseg.errors import CustsegError

    try:
        settings = ServerSettings.read(argv[0])
        serve(settings.open_store(), settings)
    except CustsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
