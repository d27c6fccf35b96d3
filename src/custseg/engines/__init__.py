"""Engines: where Train runs. `engine_for(cfg)` is the only way in; an engine this
installation cannot run is refused with the reason (and an install hint when an extra
is missing), never replaced by another under its name."""

from __future__ import annotations

import importlib.util

from custseg import __version__
from custseg.config import Config
from custseg.engines.base import Engine, Reporter, TrainRequest
from custseg.errors import ConfigError

__all__ = ["Engine", "Reporter", "TrainRequest", "engine_for"]

# engine -> (the module it needs, the extra that installs it); None: built in
REQUIRES: dict[str, tuple[str, str] | None] = {"local": None, "spark": ("pyspark", "spark")}
BUILT = ("local", "spark")


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
        from custseg.engines.spark import SparkEngine

        return SparkEngine(cfg.spark)
    from custseg.engines.local import LocalEngine

    return LocalEngine()
