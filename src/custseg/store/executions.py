"""Pipelines and their executions: the versioned definitions, each run and its steps.

An execution records the host and pid that run it; one whose process died without
recording its end (SIGKILL, power loss) is marked Failed (interrupted) by the next
command that opens the store (`reap_interrupted`). A step's outputs are the JSON form of
the pipeline's typed step records (see `pipeline/records`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any, Literal

from custseg.errors import StoreError
from custseg.store.database import Row, Store, now, process_alive, process_start

__all__ = [
    "CachedStep",
    "ExecutionRow",
    "ExecutionStatus",
    "PipelineVersion",
    "StepRow",
    "cached_step",
    "create_execution",
    "execution",
    "executions",
    "finish_execution",
    "last_successful_step",
    "latest_pipeline",
    "reap_interrupted",
    "update_step",
    "upsert_pipeline",
]

ExecutionStatus = Literal["Executing", "Succeeded", "Failed"]
StepStatusName = Literal["Pending", "Executing", "Succeeded", "Failed", "Cached", "Skipped"]
STEP_FIELDS = frozenset({"status", "started_at", "ended_at", "seconds", "error", "outputs",
                         "cache_key", "cached_from", "reason"})


@dataclass(frozen=True)
class PipelineVersion:
    name: str
    version: int
    definition: dict[str, Any]
    sha256: str


@dataclass(frozen=True)
class StepRow:
    name: str
    position: int
    status: StepStatusName
    started_at: str | None
    ended_at: str | None
    seconds: float | None
    error: str | None
    outputs: dict[str, Any]
    cache_key: str | None
    cached_from: str | None
    reason: str | None

    @classmethod
    def from_row(cls, row: Row) -> StepRow:
        return cls(name=row["name"], position=int(row["position"]), status=row["status"],
                   started_at=row["started_at"], ended_at=row["ended_at"],
                   seconds=row["seconds"], error=row["error"],
                   outputs=json.loads(row["outputs"]), cache_key=row["cache_key"],
                   cached_from=row["cached_from"], reason=row["reason"])


@dataclass(frozen=True)
class ExecutionRow:
    id: str
    pipeline_name: str
    pipeline_version: int
    status: ExecutionStatus
    parameters: dict[str, Any]
    started_at: str
    ended_at: str | None
    error: str | None
    host: str
    pid: int
    user: str
    steps: tuple[StepRow, ...]

    def step(self, name: str) -> StepRow:
        return next(s for s in self.steps if s.name == name)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["steps"] = [asdict(s) for s in self.steps]
        return out


@dataclass(frozen=True)
class CachedStep:
    """A successful earlier run of a step: the execution that computed its outputs."""

    execution_id: str
    outputs: dict[str, Any]


# -- pipelines -------------------------------------------------------------------------------


def latest_pipeline(store: Store, name: str) -> PipelineVersion | None:
    with store.read() as conn:
        row = conn.execute(
            "SELECT version, definition, definition_sha256 FROM pipelines WHERE name = ? "
            "ORDER BY version DESC LIMIT 1", (name,)).fetchone()
    if row is None:
        return None
    return PipelineVersion(name, int(row["version"]), json.loads(row["definition"]),
                           str(row["definition_sha256"]))


def upsert_pipeline(store: Store, name: str, definition: dict[str, Any], sha256: str
                    ) -> tuple[int, bool]:
    """Store `definition` as a new version unless the latest is identical:
    (version, whether it is new)."""
    with store.write() as conn:
        row = conn.execute(
            "SELECT version, definition_sha256 FROM pipelines WHERE name = ? "
            "ORDER BY version DESC LIMIT 1", (name,)).fetchone()
        if row is not None and row["definition_sha256"] == sha256:
            return int(row["version"]), False
        version = 1 if row is None else int(row["version"]) + 1
        conn.execute(
            "INSERT INTO pipelines (name, version, definition, definition_sha256, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (name, version, json.dumps(definition, sort_keys=True), sha256, now()))
        return version, True


# -- executions ------------------------------------------------------------------------------


def create_execution(store: Store, execution_id: str, pipeline: tuple[str, int],
                     parameters: dict[str, Any], steps: list[str], user: str) -> None:
    pid = os.getpid()
    with store.write() as conn:
        conn.execute(
            "INSERT INTO executions (id, pipeline_name, pipeline_version, status, parameters,"
            ' started_at, host, pid, pid_start, "user") VALUES'
            " (?, ?, ?, 'Executing', ?, ?, ?,"
            " ?, ?, ?)",
            (execution_id, pipeline[0], pipeline[1], json.dumps(parameters), now(),
             store.host, pid, process_start(pid), user))
        conn.executemany(
            "INSERT INTO steps (execution_id, position, name, status) VALUES (?, ?, ?, 'Pending')",
            [(execution_id, i, name) for i, name in enumerate(steps)])


def update_step(store: Store, execution_id: str, name: str, **fields: Any) -> None:
    unknown = set(fields) - STEP_FIELDS
    if unknown:
        raise ValueError(f"unknown step fields {sorted(unknown)}")
    if "outputs" in fields:
        fields["outputs"] = json.dumps(fields["outputs"])
    sets = ", ".join(f"{k} = ?" for k in fields)
    with store.write() as conn:
        conn.execute(f"UPDATE steps SET {sets} WHERE execution_id = ? AND name = ?",
                     (*fields.values(), execution_id, name))


def finish_execution(store: Store, execution_id: str, status: ExecutionStatus,
                     error: str | None = None) -> None:
    """End an execution; its steps still Pending become Skipped."""
    with store.write() as conn:
        conn.execute("UPDATE executions SET status = ?, ended_at = ?, error = ? WHERE id = ?",
                     (status, now(), error, execution_id))
        conn.execute("UPDATE steps SET status = 'Skipped' WHERE execution_id = ? AND "
                     "status = 'Pending'", (execution_id,))


def reap_interrupted(store: Store) -> list[str]:
    """Mark executions on this host whose process died without finishing as Failed
    (interrupted); returns their ids. Another host's runs are that host's to judge: a
    pid means nothing here."""
    with store.read() as conn:
        rows = conn.execute(
            "SELECT id, pid, pid_start FROM executions WHERE status = 'Executing' AND host = ?",
            (store.host,)).fetchall()
    dead = [r["id"] for r in rows if not process_alive(int(r["pid"]), r["pid_start"])]
    for execution_id in dead:
        with store.write() as conn:
            conn.execute(
                "UPDATE executions SET status = 'Failed', ended_at = ?, error = ? "
                "WHERE id = ? AND status = 'Executing'",
                (now(), "interrupted: the process running it ended without finishing",
                 execution_id))
            conn.execute(
                "UPDATE steps SET status = 'Failed', error = 'interrupted', ended_at = ? "
                "WHERE execution_id = ? AND status = 'Executing'", (now(), execution_id))
            conn.execute("UPDATE steps SET status = 'Skipped' WHERE execution_id = ? AND "
                         "status = 'Pending'", (execution_id,))
    return dead


def execution(store: Store, execution_id: str) -> ExecutionRow:
    """An execution by id, or by a unique prefix of its id."""
    with store.read() as conn:
        row = conn.execute("SELECT * FROM executions WHERE id = ?", (execution_id,)).fetchone()
        if row is None:
            matches = conn.execute(  # lower(): SQLite's LIKE ignores case, PostgreSQL's not
                "SELECT id FROM executions WHERE lower(id) LIKE lower(?) LIMIT 2",
                (f"{execution_id}%",)).fetchall()
            if len(matches) != 1:
                raise StoreError(f"no execution {execution_id!r} in {store.name} "
                                 f"(see `custseg executions list`)")
            row = conn.execute("SELECT * FROM executions WHERE id = ?",
                               (matches[0]["id"],)).fetchone()
        steps = conn.execute("SELECT * FROM steps WHERE execution_id = ? ORDER BY position",
                             (row["id"],)).fetchall()
    return ExecutionRow(
        id=row["id"], pipeline_name=row["pipeline_name"],
        pipeline_version=int(row["pipeline_version"]), status=row["status"],
        parameters=json.loads(row["parameters"]), started_at=row["started_at"],
        ended_at=row["ended_at"], error=row["error"], host=row["host"], pid=int(row["pid"]),
        user=row["user"], steps=tuple(StepRow.from_row(s) for s in steps))


def executions(store: Store, limit: int = 50) -> list[ExecutionRow]:
    """The latest executions, newest first."""
    with store.read() as conn:
        rows = conn.execute("SELECT id FROM executions ORDER BY started_at DESC LIMIT ?",
                            (limit,)).fetchall()
    return [execution(store, r["id"]) for r in rows]


def _latest_success(store: Store, where: str, params: tuple[str, ...]) -> Row | None:
    """The latest successful (or cached) step matching `where` (over steps s and their
    executions e)."""
    with store.read() as conn:
        row: Row | None = conn.execute(
            "SELECT s.execution_id, s.outputs, s.cached_from FROM steps s JOIN executions e "
            f"ON e.id = s.execution_id WHERE {where} AND s.status IN ('Succeeded', 'Cached') "
            "ORDER BY e.started_at DESC LIMIT 1", params).fetchone()
    return row


def cached_step(store: Store, name: str, cache_key: str) -> CachedStep | None:
    """The latest successful run of step `name` with this cache key, named after the
    execution that computed its outputs."""
    row = _latest_success(store, "s.name = ? AND s.cache_key = ?", (name, cache_key))
    if row is None:
        return None
    return CachedStep(row["cached_from"] or row["execution_id"], json.loads(row["outputs"]))


def last_successful_step(store: Store, pipeline: str, name: str) -> CachedStep | None:
    """The latest successful (or cached) run of step `name` in `pipeline`."""
    row = _latest_success(store, "e.pipeline_name = ? AND s.name = ?", (pipeline, name))
    if row is None:
        return None
    return CachedStep(row["execution_id"], json.loads(row["outputs"]))
