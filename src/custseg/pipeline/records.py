"""What the pipeline's steps hand to each other: one frozen record per step's outputs.

Each record is stored as JSON with its step (`to_json`) and read back when Train is
served from cache (`from_json`). The metrics, schema and lineage inside stay JSON
documents: they are what users read in `models describe --json` and the report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, Self

__all__ = [
    "CodeVersion",
    "CreatedModel",
    "Deployed",
    "Registered",
    "StepOutputs",
    "TrainInputs",
    "Trained",
]


class _Json:
    """`to_json`/`from_json` for a flat dataclass of JSON values."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class CodeVersion(_Json):
    """The package version, the hash of custseg's source files, and the git commit when
    run from a checkout."""

    package: str
    source_sha256: str
    git_commit: str | None = None

    def for_cache(self) -> dict[str, str]:
        """The part the Train cache depends on: not the git commit, which moves with every
        commit, even one that does not touch custseg's source."""
        return {"package": self.package, "source_sha256": self.source_sha256}


@dataclass(frozen=True)
class TrainInputs(_Json):
    """What Train's cache key is made of."""

    data_sha256: str
    parameters: dict[str, Any]
    code: dict[str, str]

    @classmethod
    def lenient(cls, data: dict[str, Any] | None) -> TrainInputs | None:
        """An earlier run's inputs (written by any version), or None when absent."""
        if not data or "data_sha256" not in data:
            return None
        return cls(str(data["data_sha256"]), dict(data.get("parameters") or {}),
                   dict(data.get("code") or {}))


@dataclass(frozen=True)
class Trained(_Json):
    """Train's outputs: the saved artifact and what the later steps and the CLI show."""

    model_uri: str
    metrics: dict[str, Any]
    segment_names: list[str]
    stability: dict[str, Any] | None
    inputs: TrainInputs
    schema: dict[str, Any]
    warnings: list[str]
    selection: dict[str, Any] | None
    data: dict[str, Any]
    engine: str
    # what the engine recorded about itself (Spark: its version and master); None in
    # records written before it was kept
    engine_details: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trained:
        return cls(**{**data, "inputs": TrainInputs.from_json(data["inputs"])})


@dataclass(frozen=True)
class CreatedModel(_Json):
    model_name: str
    model_uri: str
    inference_code_version: CodeVersion
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class Registered(_Json):
    group: str
    version: int
    approval_status: str

    @property
    def ref(self) -> str:
        return f"{self.group}/{self.version}"

    def to_json(self) -> dict[str, Any]:
        return super().to_json() | {"ref": self.ref}


@dataclass(frozen=True)
class Deployed(_Json):
    """The endpoint, the config it was created or updated on, and what the server does."""

    endpoint_name: str
    endpoint_config_name: str
    action: Literal["created", "updated"]
    previous_config_name: str | None
    status: str
    url: str | None
    note: str | None = None


StepOutputs = Trained | CreatedModel | Registered | Deployed
