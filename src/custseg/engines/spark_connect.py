"""Spark Connect sessions (`spark.remote: sc://HOST:PORT`): open one, check that the
server answers before any work, and tidy up after it.

A Connect session is a gRPC client: no JVM here, no `sparkContext`, no RDDs; the
server owns the master and its static settings. Three things differ from a classic
session, and this module handles them:

* pyspark connects lazily and retries an unreachable server for minutes (15 retries,
  backoff up to a minute). The first call here runs under a short retry policy, so a
  wrong address or a stopped server is a one-line error within seconds, naming the
  host and port (never the URL's parameters, which may hold a token).
* Only runtime settings can be set from a client: `spark.conf` keys are applied with
  `conf.set`; a static one the server does not already have is refused, never ignored.
* A fitted model lives in the server's ML cache until its Python object is collected;
  pyspark releases it by an RPC from `__del__`. A KMeans model and its summary form a
  reference cycle, so without care the release runs whenever the cyclic collector
  fires, which can be inside `ThreadPoolExecutor.submit` (our row blocks, pyspark's own
  release pool) and deadlock on the executor's lock. The engine keeps every fitted model
  in `SparkHandle.models` until the training ends, then collects them here, at a point
  where no lock is held.

pyspark marks the whole process as "Connect mode" (an environment variable) when a
remote session starts and never unmarks it for `sc://` URLs; after closing a session it
opened, this module restores the mark as it found it, so a classic session can run in
the same process afterwards (a notebook, a test session).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any
from urllib.parse import urlparse

from custseg.errors import ConfigError

__all__ = ["CONNECT_MODE_ENV", "DEFAULT_PORT", "apply_conf", "check_reachable", "endpoint",
           "in_connect_mode", "is_connect", "session_endpoint", "short_retries",
           "unmark_connect_mode"]

CONNECT_MODE_ENV = "SPARK_CONNECT_MODE_ENABLED"  # pyspark's process-wide "Connect mode" mark
DEFAULT_PORT = 15002  # Spark Connect's default port (spark.connect.grpc.binding.port)
PROBE_RETRIES = 3  # attempts after the first, 0.2 + 0.8 + 1 s apart: a refused
PROBE_BACKOFF_MS = (200, 1000)  # connection fails in ~2 s; a silent firewall takes longer


def endpoint(remote: str) -> str:
    """`HOST:PORT` of a Spark Connect URL (port 15002 when absent), without its
    parameters (`;token=...`)."""
    url = urlparse("http" + remote[2:])  # as pyspark parses it
    host = url.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{url.port or DEFAULT_PORT}"


def is_connect(session: Any) -> bool:
    """Whether `session` is a Spark Connect session (else a classic, JVM-backed one)."""
    return type(session).__module__.startswith("pyspark.sql.connect")


def session_endpoint(session: Any) -> str | None:
    """`HOST:PORT` a running Connect session talks to, when pyspark tells."""
    builder = getattr(session.client, "_builder", None)
    found = getattr(builder, "endpoint", None)
    return str(found) if found is not None else None


def short_retries(session: Any) -> None:
    """Fail within seconds, not minutes, when the server does not answer (for the first
    call, and for the clean-up after a training: a dead server must not hang it)."""
    from pyspark.sql.connect.client.retries import DefaultPolicy

    initial, most = PROBE_BACKOFF_MS
    session.client.set_retry_policies([DefaultPolicy(
        max_retries=PROBE_RETRIES, initial_backoff=initial, max_backoff=most,
        backoff_multiplier=4.0)])


def _first_line(exc: BaseException) -> str:
    """What went wrong, in one line: a gRPC error's status and details (its text is a
    multi-line dump), else the exception's first line."""
    for cause in (exc, exc.__cause__, exc.__context__):  # pyspark wraps gRPC's error
        code, details = getattr(cause, "code", None), getattr(cause, "details", None)
        if callable(code) and callable(details):
            with contextlib.suppress(Exception):
                return f"{code().name}: {' '.join(str(details()).split())}"
    for line in str(exc).strip().splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def check_reachable(session: Any, remote: str) -> str:
    """The server's Spark version, asked under a short retry policy (then the default
    one again); a ConfigError saying where and what to check when it does not answer."""
    client = session.client
    policies = client.get_retry_policies()
    short_retries(session)
    try:
        with warnings.catch_warnings():  # pyspark warns RETRIES_EXCEEDED; we say more
            warnings.simplefilter("ignore")
            return _version(session, remote)
    finally:
        client.set_retry_policies(policies)


def _version(session: Any, remote: str) -> str:
    try:
        return str(session.version)
    except Exception as exc:  # gRPC errors come wrapped in pyspark's own classes
        where = endpoint(remote)
        with contextlib.suppress(Exception):  # nothing to release on a server never
            session.stop()  # reached; still under the short policy: returns in seconds
        raise ConfigError(
            f"cannot reach the Spark Connect server at {where} (spark.remote): "
            f"{_first_line(exc)}. Check that a Spark Connect server is running there "
            f"(sbin/start-connect-server.sh; it listens on port {DEFAULT_PORT} unless "
            "spark.connect.grpc.binding.port says otherwise), that this machine can reach "
            "that host and port (firewall, VPN, proxy), and that ';use_ssl=true' in the URL "
            "matches the server (TLS)") from exc


def apply_conf(session: Any, conf: dict[str, str], running: str) -> dict[str, str]:
    """Set each `spark.conf` value the session does not have; a ConfigError for one that
    cannot change at runtime. Returns the previous values of those set (to restore).
    `running` names the session in the error ("the SparkSession already running in this
    process", "the Spark Connect server at HOST:PORT")."""
    previous: dict[str, str] = {}
    for key, value in conf.items():
        current = session.conf.get(key, None)
        if current == value:
            continue
        if session.conf.isModifiable(key):
            session.conf.set(key, value)
            if current is not None:
                previous[key] = current
            continue
        has = f"has {current!r}" if current is not None else "does not set it"
        raise ConfigError(
            f"spark.conf.{key} is {value!r}, but {running} {has} and it cannot change at "
            f"runtime: {_static_hint(running)}")
    return previous


def _static_hint(running: str) -> str:
    if "Spark Connect" in running:
        return ("set it where the server starts (start-connect-server.sh --conf "
                "KEY=VALUE) or drop it from spark.conf")
    return "stop that session or use its value"


def in_connect_mode() -> bool:
    """Whether the process was already in pyspark's Connect mode (before a session)."""
    return CONNECT_MODE_ENV in os.environ


def unmark_connect_mode() -> None:
    """Leave pyspark's Connect mode (after closing the Connect session custseg opened in
    a process that was not in it), so that a classic session can start later."""
    os.environ.pop(CONNECT_MODE_ENV, None)
