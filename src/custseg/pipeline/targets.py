"""Deploy targets: where the pipeline itself runs. `target_for(name)` is the only way in.

`local` runs the pipeline in this process against the config's store (`runner`).
`sagemaker` (SPEC section 8) builds the seed's pipeline with the SageMaker SDK
(`custseg.sagemaker.pipeline`): its definition is printed offline (`deploy --dry-run`)
or upserted on AWS (`custseg.sagemaker.upsert`), and an execution started and
followed there (`custseg.sagemaker.execution`); it is never run locally under its name.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

from custseg import __version__
from custseg.config import Config
from custseg.errors import ConfigError

if TYPE_CHECKING:  # the runner (numpy, pyarrow) is imported when a local run starts
    from custseg.engines import Reporter
    from custseg.pipeline import runner
    from custseg.sagemaker.follow import Followed, StepState

__all__ = ["TARGETS", "SageMakerTarget", "Target", "target_for"]

TARGETS = ("local", "sagemaker")


class Target(Protocol):
    name: str

    def deploy(self, cfg: Config) -> tuple[int, bool, list[str]]:
        """Upsert the pipeline definition: (version, whether it is new, what changed)."""
        ...

    def run(self, cfg: Config, reporter: Reporter | None, *, no_cache: bool,
            base: Config | None,
            data_hash: Future[tuple[list[str], str]] | None = None) -> runner.Execution:
        """Start an execution and follow it to its end (`data_hash`: the data's
        `fingerprint`, when the caller started it already)."""
        ...


class LocalTarget:
    name = "local"

    def deploy(self, cfg: Config) -> tuple[int, bool, list[str]]:
        from custseg.pipeline import runner

        return runner.deploy(cfg)

    def run(self, cfg: Config, reporter: Reporter | None, *, no_cache: bool,
            base: Config | None,
            data_hash: Future[tuple[list[str], str]] | None = None) -> runner.Execution:
        from custseg.pipeline import runner

        return runner.run(cfg, reporter, no_cache=no_cache, base=base, data_hash=data_hash)


class SageMakerTarget:
    name = "sagemaker"

    def definition(self, cfg: Config) -> dict[str, Any]:
        """The pipeline definition JSON, built offline (no AWS call, no credentials)."""
        from custseg.sagemaker.pipeline import definition

        return definition(cfg)

    def _refuse(self, what: str) -> ConfigError:
        return ConfigError(f"{what} on SageMaker is not available in custseg {__version__}: "
                           f"`custseg run --target sagemaker` starts an execution there "
                           f"(`--wait` follows it); see docs/sagemaker.md")

    def deploy(self, cfg: Config) -> tuple[int, bool, list[str]]:
        from custseg.sagemaker.upsert import upsert

        return upsert(cfg)

    def start(self, cfg: Config) -> dict[str, Any]:
        """Start an execution of the deployed pipeline (which must match the config) and
        return its ARN and parameters; it runs on SageMaker (`wait` follows it)."""
        from custseg.sagemaker.execution import start

        return start(cfg)

    def wait(self, cfg: Config, arn: str, *, interval: float, timeout: float,
             on_change: Callable[[StepState], None]) -> Followed:
        """Follow a started execution to its end (or `timeout` seconds), with its results."""
        from custseg.sagemaker.execution import wait

        return wait(cfg, arn, interval=interval, timeout=timeout, on_change=on_change)

    def run(self, cfg: Config, reporter: Reporter | None, *, no_cache: bool,
            base: Config | None,
            data_hash: Future[tuple[list[str], str]] | None = None) -> runner.Execution:
        raise self._refuse("a local-style run")


def target_for(name: str) -> Target:
    """The target called `name`, or ConfigError saying why it cannot be used here."""
    if name == "local":
        return LocalTarget()
    if name == "sagemaker":
        return SageMakerTarget()
    raise ConfigError(f"--target {name!r}: expected one of {', '.join(TARGETS)}")
