"""The SparkSession the Spark engine trains on, built from `spark:` in the config.

pyspark is imported here, lazily (only when `engine: spark` trains). One session per
process: a session that is already running (a notebook's, a test session's) is reused
only when it runs on the configured master and with every `spark.conf` value that
cannot be changed at runtime; otherwise the config is refused rather than ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from custseg.config import SparkOptions
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
    """A session, whether this engine started it (then it stops it when done), and the
    settings of a running session to restore when done."""

    session: Any
    owned: bool
    master: str
    restore: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        if self.owned:
            self.session.stop()
            return
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


def _check_running(session: Any, options: SparkOptions) -> str:
    """The running session's master, after checking it is the one the config asks for."""
    if options.remote is not None:
        return options.remote  # a Spark Connect session: the server owns master and conf
    master = str(session.sparkContext.master)
    if master != options.master:
        raise ConfigError(
            f"spark.master is {options.master!r}, but a SparkSession is already running in "
            f"this process on {master!r}: set spark.master: {master!r}, or stop that session")
    for key, value in options.conf.items():
        current = session.conf.get(key, None)
        if current == value:
            continue
        if session.conf.isModifiable(key):
            session.conf.set(key, value)
            continue
        raise ConfigError(
            f"spark.conf.{key} is {value!r}, but the SparkSession already running in this "
            f"process has {current!r} and it cannot change at runtime: stop that session "
            f"or use its value")
    return master


def open_session(options: SparkOptions) -> SparkHandle:
    """The session to train on: the running one when it matches the config, else a new
    one (on `spark.master`, or Spark Connect at `spark.remote`) with `spark.conf`."""
    spark_session = _import_pyspark()
    active = spark_session.getActiveSession()
    if active is not None:
        handle = SparkHandle(active, owned=False, master=_check_running(active, options))
        for key, value in RUNTIME_DEFAULTS.items():
            current = active.conf.get(key, None)
            if key not in options.conf and current != value:
                active.conf.set(key, value)
                if current is not None:
                    handle.restore[key] = current
        return handle
    builder = spark_session.builder.appName("custseg")
    if options.remote is not None:
        builder = builder.remote(options.remote)
        target = options.remote
    else:
        builder = builder.master(options.master)
        target = options.master
    for key, value in _wanted_conf(options).items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # Py4J/JVM errors: no common base class to catch
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = "spark.remote" if options.remote is not None else "spark.master"
        raise ConfigError(f"cannot start Spark on {where} {target!r}: {first}") from exc
    return SparkHandle(session, owned=True, master=target)
