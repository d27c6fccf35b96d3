"""Engines: where Train runs. `engine_for(cfg)` is the only way in; an engine this
installation cannot run is refused with the reason (and an install hint when an extra
is missing), never replaced by another under its name."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from custseg import __version__
from custseg.config import Config
from custseg.engines.base import Engine, Reporter, TrainRequest
from custseg.errors import ConfigError

__all__ = ["Engine", "Reporter", "TrainRequest", "engine_for", "java"]

# engine -> (the module it needs, the extra that installs it); None: built in
REQUIRES: dict[str, tuple[str, str] | None] = {"local": None, "spark": ("pyspark", "spark")}
BUILT = ("local", "spark")


def java() -> str | None:
    """The java that pyspark would start (JAVA_HOME's, else the one on PATH), or None."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def engine_for(cfg: Config) -> Engine:
    """The engine the config names, or ConfigError saying why it cannot run here."""
    name = cfg.engine
    if name not in BUILT:
        raise ConfigError(
            f"engine: {name!r} is not available in custseg {__version__}: engines are "
            f"{', '.join(BUILT)}")
    needs = REQUIRES.get(name)
    if needs is not None and importlib.util.find_spec(needs[0]) is None:
        raise ConfigError(
            f"engine: {name!r} needs {needs[0]}, which is not installed: install the "
            f"{needs[1]!r} extra (uv sync --extra {needs[1]}), or set engine: local")
    if name == "spark":
        if cfg.spark.remote is None and java() is None:
            raise ConfigError(
                "engine: 'spark' needs Java 17 or newer to run Spark on spark.master "
                f"{cfg.spark.master!r}, and no java was found (PATH, JAVA_HOME): install a "
                "JDK/JRE (e.g. apt-get install openjdk-17-jre-headless), set spark.remote "
                "to a Spark Connect server, or set engine: local")
        from custseg.engines.spark import SparkEngine

        return SparkEngine(cfg.spark)
    from custseg.engines.local import LocalEngine

    return LocalEngine()
