"""Deploy targets: where the pipeline itself runs. `target_for(name)` is the only way in.

`local` runs the pipeline in this process against the config's store (`runner`).
`sagemaker` (SPEC section 8: the seed's pipeline built with the SageMaker SDK) plugs in
here next; until then it is refused, never run locally under its name.
"""

from __future__ import annotations

from typing import Protocol

from custseg import __version__
from custseg.config import Config
from custseg.engines import Reporter
from custseg.errors import ConfigError
from custseg.pipeline import runner

__all__ = ["TARGETS", "Target", "target_for"]

TARGETS = ("local", "sagemaker")


class Target(Protocol):
    name: str

    def deploy(self, cfg: Config) -> tuple[int, bool, list[str]]:
        """Upsert the pipeline definition: (version, whether it is new, what changed)."""
        ...

    def run(self, cfg: Config, reporter: Reporter | None, *, no_cache: bool,
            base: Config | None) -> runner.Execution:
        """Start an execution and follow it to its end."""
        ...


class LocalTarget:
    name = "local"

    def deploy(self, cfg: Config) -> tuple[int, bool, list[str]]:
        return runner.deploy(cfg)

    def run(self, cfg: Config, reporter: Reporter | None, *, no_cache: bool,
            base: Config | None) -> runner.Execution:
        return runner.run(cfg, reporter, no_cache=no_cache, base=base)


def target_for(name: str) -> Target:
    """The target called `name`, or ConfigError saying why it cannot be used here."""
    if name == "local":
        return LocalTarget()
    if name in TARGETS:
        raise ConfigError(f"--target {name!r} is not available in custseg {__version__}: "
                          f"only the local target runs the pipeline here (--target local)")
    raise ConfigError(f"--target {name!r}: expected one of {', '.join(TARGETS)}")
