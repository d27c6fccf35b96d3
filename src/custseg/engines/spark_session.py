"""The SparkSession the Spark engine trains on, built from `spark:` in the config.

pyspark is imported here, lazily (only when `engine: spark` trains). One session per
process: a session that is already running (a notebook's, a test session's) is reused
only when it is of the configured kind (classic on `spark.master`, or Spark Connect to
`spark.remote`'s server) and has every `spark.conf` value that cannot be changed at
runtime; otherwise the config is refused rather than ignored. Spark Connect's own
concerns (the server answering, static settings, the models' release) live in
`spark_connect`.
"""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass, field
from typing import Any

from custseg.config import SparkOptions
from custseg.engines.spark_connect import (
    apply_conf,
    check_reachable,
    endpoint,
    in_connect_mode,
    is_connect,
    session_endpoint,
    short_retries,
    unmark_connect_mode,
)
from custseg.errors import ConfigError

__all__ = ["DEFAULT_CONF", "SparkHandle", "open_session", "spark_version"]

# our defaults, under the user's `spark.conf`: dates are read in UTC (as Arrow does), and
# the console progress bar would interleave with custseg's own progress lines
DEFAULT_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.showConsoleProgress": "false",
    "spark.log.level": "ERROR",  # Spark's WARN lines would bury custseg's own output
}


# of those, the ones a running session takes for the time of a training (then restored):
# date columns are read as UTC, as the local engine reads them
RUNTIME_DEFAULTS = {"spark.sql.session.timeZone": "UTC"}


@dataclass
class SparkHandle:
    """A session, whether this engine started it (then it stops it when done), the
    settings of a running session to restore when done, the DataFrames cached on it and
    the models fitted on it (held until the training ends: see `spark_connect`)."""

    session: Any
    owned: bool
    master: str
    restore: dict[str, str] = field(default_factory=dict)
    connect: bool = False  # a Spark Connect session (spark.remote)
    unmark: bool = False  # leave pyspark's Connect mode after stopping it (spark_connect)
    frames: list[Any] = field(default_factory=list)  # cached DataFrames, to unpersist
    models: list[Any] = field(default_factory=list)

    def close(self) -> None:
        policies = None
        if self.connect:  # a server that died must not hang the clean-up for minutes
            policies = self.session.client.get_retry_policies()
            short_retries(self.session)
        for frame in self.frames:
            with contextlib.suppress(Exception):  # the session may be gone: nothing to free
                frame.unpersist()
        self.frames.clear()
        self.models.clear()
        gc.collect()  # fitted models release their server-side state here, lock-free
        if self.owned:
            try:
                self.session.stop()
            finally:
                if self.unmark:
                    unmark_connect_mode()
            return
        if policies is not None:
            self.session.client.set_retry_policies(policies)
        for key, value in self.restore.items():
            self.session.conf.set(key, value)


def spark_version() -> str:
    from importlib.metadata import version

    return version("pyspark")


def _import_pyspark() -> Any:
    import warnings

    # pyspark warns about pandas 3 at import; custseg never hands Spark a pandas frame
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas",
                            category=FutureWarning)
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # engine_for checks first; this is the belt to its braces
        raise ConfigError("engine: 'spark' needs pyspark, which is not installed: install "
                          "the 'spark' extra (uv sync --extra spark), or set engine: local"
                          ) from exc
    return SparkSession


def _wanted_conf(options: SparkOptions) -> dict[str, str]:
    return {**DEFAULT_CONF, **options.conf}


RUNNING = "the SparkSession already running in this process"


def _reuse(active: Any, options: SparkOptions) -> SparkHandle:
    """The running session, after checking it is the kind (classic or Connect) and the
    master or server the config names, with `spark.conf` applied."""
    connect = is_connect(active)
    if options.remote is not None:
        where = endpoint(options.remote)
        if not connect:
            raise ConfigError(
                f"spark.remote points at a Spark Connect server ({where}), but a classic "
                f"SparkSession is already running in this process on "
                f"{active.sparkContext.master!r}, and pyspark runs one kind of session a "
                "process: stop that session, or set spark.master to its master")
        found = session_endpoint(active)
        if found is not None and found != where:
            raise ConfigError(
                f"spark.remote points at {where}, but a Spark Connect session to {found} is "
                "already running in this process: set spark.remote to it, or stop that "
                "session")
        target = options.remote
    else:
        if connect:
            raise ConfigError(
                f"spark.master is {options.master!r}, but a Spark Connect session (to "
                f"{session_endpoint(active)}) is already running in this process: set "
                "spark.remote to its URL, or stop that session")
        target = str(active.sparkContext.master)
        if target != options.master:
            raise ConfigError(
                f"spark.master is {options.master!r}, but a SparkSession is already running "
                f"in this process on {target!r}: set spark.master: {target!r}, or stop that "
                "session")
    apply_conf(active, options.conf, RUNNING)
    handle = SparkHandle(active, owned=False, master=target, connect=connect)
    for key, value in RUNTIME_DEFAULTS.items():
        current = active.conf.get(key, None)
        if key not in options.conf and current != value:
            active.conf.set(key, value)
            if current is not None:
                handle.restore[key] = current
    return handle


def _open_remote(spark_session: Any, remote: str, conf: dict[str, str]) -> SparkHandle:
    """A new Spark Connect session, its server checked to answer, `spark.conf` (and our
    runtime defaults) set on it; static settings belong to the server."""
    was_connect = in_connect_mode()
    try:
        session = spark_session.builder.remote(remote).getOrCreate()
    except Exception as exc:  # a malformed URL: pyspark's own error says what is wrong
        if not was_connect:
            unmark_connect_mode()
        raise ConfigError(f"cannot open a Spark Connect session (spark.remote): "
                          f"{_first_line(exc)}") from exc
    try:
        check_reachable(session, remote)
        apply_conf(session, {**RUNTIME_DEFAULTS, **conf},
                   f"the Spark Connect server at {endpoint(remote)}")
    except BaseException:
        with contextlib.suppress(Exception):  # stopped already when it did not answer
            short_retries(session)
            session.stop()
        if not was_connect:
            unmark_connect_mode()
        raise
    return SparkHandle(session, owned=True, master=remote, connect=True,
                       unmark=not was_connect)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_session(options: SparkOptions) -> SparkHandle:
    """The session to train on: the running one when it matches the config, else a new
    one (on `spark.master`, or Spark Connect at `spark.remote`) with `spark.conf`."""
    spark_session = _import_pyspark()
    active = spark_session.getActiveSession()
    if active is not None:
        return _reuse(active, options)
    if options.remote is not None:
        return _open_remote(spark_session, options.remote, options.conf)
    builder = spark_session.builder.appName("custseg").master(options.master)
    for key, value in _wanted_conf(options).items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # Py4J/JVM errors: no common base class to catch
        raise ConfigError(f"cannot start Spark on spark.master {options.master!r}: "
                          f"{_first_line(exc)}") from exc
    return SparkHandle(session, owned=True, master=options.master)
