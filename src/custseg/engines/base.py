"""What an engine is: something that turns the config into a fitted `Model`.

The pipeline (`pipeline/runner`) hashes the data, looks up its cache, then asks the
config's engine to train, and saves, registers and serves whatever model comes back:
every engine writes the same artifact format. `local` trains in this process; `spark`
(SPEC section 8) comes next and plugs in here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from custseg.artifact.scorer import Model
from custseg.config import Config

__all__ = ["Engine", "Reporter", "TrainRequest"]


class Reporter(Protocol):
    """Receives progress: a stage starts or advances (fraction in [0, 1]), and notes."""

    def stage(self, name: str, fraction: float) -> None: ...

    def note(self, message: str) -> None: ...


@dataclass(frozen=True)
class TrainRequest:
    """What Train knows besides the config: the execution, the data's content hash (so
    it is not read twice), the version whose segment ids to keep, the code version."""

    execution_id: str
    data_sha256: str | None
    previous: Model | None
    code_version: dict[str, Any]


class Engine(Protocol):
    name: str

    def describe(self) -> dict[str, Any]:
        """What the lineage records about the engine (its name, version, master...)."""
        ...

    def prepare(self, cfg: Config) -> None:
        """Start what training on `cfg` can do before Train starts (on threads, while the
        run records itself); `train` then takes it."""
        ...

    def train(self, cfg: Config, request: TrainRequest, reporter: Reporter) -> Model: ...
