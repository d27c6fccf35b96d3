"""The model registry: versioned model packages in a group, with approval and an audit.

A group is `{project_name}-model-group`. Versions increase from 1; each carries its
lineage (execution, data URI, content sha256 and rows, parameters, metrics, code version,
engine, previous version). Approval moves from `PendingManualApproval` to `Approved` or
`Rejected` (and between those two); every change is recorded with who, when and why.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from custseg.errors import RegistryError
from custseg.store.database import Store, now

__all__ = [
    "ApprovalStatus",
    "ModelPackage",
    "current_user",
    "group_name",
    "package",
    "packages",
    "parse_ref",
    "register",
    "set_approval",
]


class ApprovalStatus(StrEnum):
    PENDING = "PendingManualApproval"
    APPROVED = "Approved"
    REJECTED = "Rejected"


ALLOWED = {
    ApprovalStatus.PENDING: {ApprovalStatus.APPROVED, ApprovalStatus.REJECTED},
    ApprovalStatus.APPROVED: {ApprovalStatus.REJECTED},
    ApprovalStatus.REJECTED: {ApprovalStatus.APPROVED},
}


@dataclass(frozen=True)
class ModelPackage:
    group: str
    version: int
    execution_id: str | None
    artifact_uri: str
    approval_status: ApprovalStatus
    lineage: dict[str, Any]
    created_at: str
    created_by: str
    history: list[dict[str, Any]]

    @property
    def ref(self) -> str:
        return f"{self.group}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "version": self.version,
            "ref": self.ref,
            "execution_id": self.execution_id,
            "artifact_uri": self.artifact_uri,
            "approval_status": self.approval_status.value,
            "lineage": self.lineage,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "history": self.history,
        }


def group_name(project_name: str) -> str:
    return f"{project_name}-model-group"


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def parse_ref(ref: str) -> tuple[str, int] | None:
    """`GROUP/VERSION` as (group, version); None when `ref` is not of that form."""
    group, sep, version = ref.rpartition("/")
    if not sep or not group or not version.isdigit() or "://" in ref:
        return None
    return group, int(version)


def register(
    store: Store,
    group: str,
    *,
    execution_id: str | None,
    artifact_uri: str,
    lineage: dict[str, Any],
    status: ApprovalStatus,
    user: str,
) -> int:
    """Add the next version to `group` (atomically, whatever runs at the same time)."""
    with store.write() as conn:
        row = conn.execute(
            "SELECT MAX(version) AS v FROM model_packages WHERE group_name = ?", (group,)
        ).fetchone()
        previous = row["v"]
        version = 1 if previous is None else int(previous) + 1
        lineage = {**lineage, "previous_version": previous}
        at = now()
        conn.execute(
            "INSERT INTO model_packages (group_name, version, execution_id, artifact_uri, "
            "approval_status, lineage, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                group,
                version,
                execution_id,
                artifact_uri,
                status.value,
                json.dumps(lineage),
                at,
                user,
            ),
        )
        conn.execute(
            "INSERT INTO approvals (group_name, version, from_status, to_status, by, at, "
            "comment) VALUES (?, ?, NULL, ?, ?, ?, ?)",
            (group, version, status.value, user, at, f"registered by execution {execution_id}"),
        )
    return version


def _row_to_package(store: Store, row: Any) -> ModelPackage:
    with store.read() as conn:
        history = conn.execute(
            "SELECT from_status, to_status, by, at, comment FROM approvals WHERE group_name = ? "
            "AND version = ? ORDER BY id",
            (row["group_name"], row["version"]),
        ).fetchall()
    return ModelPackage(
        group=row["group_name"],
        version=int(row["version"]),
        execution_id=row["execution_id"],
        artifact_uri=row["artifact_uri"],
        approval_status=ApprovalStatus(row["approval_status"]),
        lineage=json.loads(row["lineage"]),
        created_at=row["created_at"],
        created_by=row["created_by"],
        history=[dict(h) for h in history],
    )


def package(store: Store, group: str, version: int) -> ModelPackage:
    with store.read() as conn:
        row = conn.execute(
            "SELECT * FROM model_packages WHERE group_name = ? AND version = ?", (group, version)
        ).fetchone()
        if row is None:
            versions = [
                r["version"]
                for r in conn.execute(
                    "SELECT version FROM model_packages WHERE group_name = ? ORDER BY version",
                    (group,),
                )
            ]
            known = f"versions: {', '.join(map(str, versions))}" if versions else "no versions"
            raise RegistryError(f"model group {group!r} has no version {version} ({known})")
    return _row_to_package(store, row)


def packages(store: Store, group: str | None = None) -> list[ModelPackage]:
    with store.read() as conn:
        if group is None:
            rows = conn.execute(
                "SELECT * FROM model_packages ORDER BY group_name, version"
            ).fetchall()
        else:
            rows = conn.execute(
                "SELECT * FROM model_packages WHERE group_name = ? ORDER BY version", (group,)
            ).fetchall()
    return [_row_to_package(store, r) for r in rows]


def set_approval(
    store: Store,
    group: str,
    version: int,
    to: ApprovalStatus,
    *,
    by: str,
    comment: str | None = None,
) -> ModelPackage:
    """Move a version's approval status; refuses a change that is not allowed."""
    with store.write() as conn:
        row = conn.execute(
            "SELECT approval_status FROM model_packages WHERE group_name = ? AND version = ?",
            (group, version),
        ).fetchone()
        if row is None:
            raise RegistryError(f"model group {group!r} has no version {version}")
        current = ApprovalStatus(row["approval_status"])
        if to not in ALLOWED[current]:
            allowed = ", ".join(sorted(ALLOWED[current])) or "none"
            raise RegistryError(
                f"{group}/{version} is {current.value}; it cannot become {to.value} "
                f"(allowed from {current.value}: {allowed})"
            )
        conn.execute(
            "UPDATE model_packages SET approval_status = ? WHERE group_name = ? AND version = ?",
            (to.value, group, version),
        )
        conn.execute(
            "INSERT INTO approvals (group_name, version, from_status, to_status, by, at, "
            "comment) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (group, version, current.value, to.value, by, now(), comment),
        )
    return package(store, group, version)
