"""Endpoints, their configs and what each server worker serves: the SQL of the deploy
control plane, with its state transitions in one place.

Statuses: Creating and Updating while a deploy runs (its process recorded), InService,
OutOfService (no endpoint server runs), Failed (with the reason) and Deleted.
`reconcile` makes a recorded status say what the workers really serve, after a deploy
whose process died or a model that no longer loads. Workers report per endpoint what
they serve; a row with the endpoint name `*` marks a live worker.

Workers (and deploys) are keyed by host and pid: several hosts may serve one PostgreSQL
store. A worker of this host is alive when its pid is; one of another host, whose pid
cannot be checked from here, when its `*` row was refreshed (its heartbeat, every
`HEARTBEAT` seconds) within `WORKER_TTL` seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from custseg.errors import DeployError
from custseg.store.database import Connection, Store, now, process_alive

__all__ = [
    "HEARTBEAT",
    "Deployment",
    "EndpointStatus",
    "WorkerKey",
    "WorkerStatus",
    "config_name",
    "create_or_update",
    "delete",
    "endpoint_name",
    "endpoint_record",
    "endpoint_records",
    "forget_worker",
    "reconcile",
    "report_worker",
    "revert",
    "rollback",
    "set_status",
    "switch_view",
    "wanted_configs",
]


EndpointStatus = Literal["Creating", "Updating", "InService", "OutOfService", "Failed",
                         "Deleted"]
WorkerStatus = Literal["Up", "InService", "Failed", "Deleted"]  # "Up": the `*` row
WorkerKey = tuple[str, int]  # (host_id, pid)

HEARTBEAT = 2.0  # seconds between a worker's refreshes of its `*` row
WORKER_TTL = 15.0  # another host's worker not heard of for this long is gone
DEPLOY_TTL = 120.0  # another host's deploy not finished after this long died


def _age(at: str | None) -> float:
    """Seconds since a recorded time (infinite when unknown)."""
    if not at:
        return float("inf")
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(at)).total_seconds()
    except ValueError:
        return float("inf")


def _local(store: Store, host_id: str | None) -> bool:
    """Whether a row's process runs on this host ('' or NULL: a row from before hosts
    were recorded, which only the one machine of a SQLite store wrote)."""
    return host_id in (store.host, "", None)


def _live_workers(store: Store, conn: Connection) -> list[WorkerKey]:
    """The workers serving this store: this host's by their pid, other hosts' by their
    heartbeat."""
    rows = conn.execute("SELECT host_id, pid, updated_at FROM endpoint_workers WHERE "
                        "endpoint_name = '*'").fetchall()
    return [(r["host_id"], int(r["pid"])) for r in rows
            if (process_alive(int(r["pid"])) if _local(store, r["host_id"])
                else _age(r["updated_at"]) < WORKER_TTL)]


def _worker_rows(conn: Connection, name: str) -> dict[WorkerKey, dict[str, Any]]:
    return {(r["host_id"], int(r["pid"])): dict(r) for r in conn.execute(
        "SELECT host_id, pid, config_name, status, reason FROM endpoint_workers WHERE "
        "endpoint_name = ?", (name,))}


@dataclass(frozen=True)
class Deployment:
    endpoint: str
    config: str
    action: Literal["created", "updated"]
    previous_config: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint_name": self.endpoint,
            "endpoint_config_name": self.config,
            "action": self.action,
            "previous_config_name": self.previous_config,
        }


def endpoint_name(project: str, environment: str) -> str:
    return f"{project}-endpoint-{environment}"


def config_name(project: str, environment: str, when: datetime | None = None) -> str:
    when = when or datetime.now(UTC)
    return f"{project}-endpoint-config-{environment}-{when:%Y%m%d-%H%M%S-%f}"


def create_or_update(
    store: Store,
    *,
    project: str,
    environment: str,
    group: str,
    version: int,
    artifact_uri: str,
    execution_id: str | None,
) -> Deployment:
    """Record a new endpoint config and point the endpoint at it (create or update)."""
    name = endpoint_name(project, environment)
    with store.write() as conn:  # writers queue: no other can take the name meanwhile
        config = config_name(project, environment)
        while conn.execute("SELECT 1 FROM endpoint_configs WHERE name = ?",
                           (config,)).fetchone() is not None:
            config = config_name(project, environment)  # two deployments in a microsecond
        conn.execute(
            "INSERT INTO endpoint_configs (name, endpoint_name, group_name, version, "
            "artifact_uri, execution_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (config, name, group, version, artifact_uri, execution_id, now()),
        )
        row = conn.execute("SELECT config_name, status FROM endpoints WHERE name = ?",
                           (name,)).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO endpoints (name, config_name, status, created_at, updated_at, "
                "deployer_pid, deployer_host_id) VALUES (?, ?, 'Creating', ?, ?, ?, ?)",
                (name, config, now(), now(), os.getpid(), store.host),
            )
            return Deployment(name, config, "created", None)
        if row["status"] == "Deleted":  # a deleted endpoint is created anew
            conn.execute(
                "UPDATE endpoints SET config_name = ?, previous_config_name = NULL, status = "
                "'Creating', status_reason = NULL, created_at = ?, updated_at = ?, "
                "deployer_pid = ?, deployer_host_id = ? WHERE name = ?",
                (config, now(), now(), os.getpid(), store.host, name),
            )
            return Deployment(name, config, "created", None)
        conn.execute(
            "UPDATE endpoints SET config_name = ?, previous_config_name = ?, status = 'Updating',"
            " status_reason = NULL, updated_at = ?, deployer_pid = ?, deployer_host_id = ? "
            "WHERE name = ?",
            (config, row["config_name"], now(), os.getpid(), store.host, name),
        )
        return Deployment(name, config, "updated", row["config_name"])


def reconcile(store: Store, name: str) -> None:
    """Make the recorded status say what the workers really serve, after a deploy that
    was killed mid-way (its process is gone) or a model that no longer loads:

    * Creating/Updating with the deploying process gone: InService when every live worker
      serves the endpoint's config; Failed (with the workers' reason) when one refused
      it; OutOfService when no endpoint server runs;
    * InService or OutOfService: Failed when a live worker refused the config,
      OutOfService when no server runs, InService when every live worker serves it.
    """
    with store.write() as conn:
        row = conn.execute("SELECT config_name, status, updated_at, deployer_pid, "
                           "deployer_host_id FROM endpoints WHERE name = ?", (name,)).fetchone()
        if row is None or row["status"] in ("Deleted", "Failed"):
            return
        deploying = row["status"] in ("Creating", "Updating")
        if deploying and row["deployer_pid"] is not None and (
                process_alive(int(row["deployer_pid"]))
                if _local(store, row["deployer_host_id"])
                else _age(row["updated_at"]) < DEPLOY_TTL):
            return  # its deploy is under way: it sets the status itself
        live = _live_workers(store, conn)
        rows = _worker_rows(conn, name)
        mine = [rows[p] for p in live if p in rows and rows[p]["config_name"] == row["config_name"]]
        failed = [r for r in mine if r["status"] == "Failed"]
        reason: str | None
        status: EndpointStatus
        if not live:
            status, reason = "OutOfService", ("no endpoint server runs for this store "
                                              "(`custseg serve` serves it)")
        elif failed:
            status, reason = "Failed", str(failed[0]["reason"])
        elif len(mine) == len(live) and all(r["status"] == "InService" for r in mine):
            status, reason = "InService", None
        else:
            return  # the workers are still switching
        if status == row["status"] and not deploying:
            return
        conn.execute("UPDATE endpoints SET status = ?, status_reason = ?, updated_at = ?, "
                     "deployer_pid = NULL, deployer_host_id = NULL WHERE name = ?",
                     (status, reason, now(), name))


def endpoint_record(store: Store, name: str) -> dict[str, Any] | None:
    """An endpoint as recorded (reconciled first): status, current and previous config,
    config history."""
    reconcile(store, name)
    with store.read() as conn:
        row = conn.execute("SELECT * FROM endpoints WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        configs = conn.execute(
            "SELECT name, group_name, version, artifact_uri, execution_id, created_at FROM "
            "endpoint_configs WHERE endpoint_name = ? ORDER BY created_at",
            (name,),
        ).fetchall()
        workers = conn.execute(
            "SELECT host_id, pid, config_name, status, reason, updated_at FROM endpoint_workers "
            "WHERE endpoint_name = ?",
            (name,),
        ).fetchall()
    current = next((dict(c) for c in configs if c["name"] == row["config_name"]), None)
    return {
        **dict(row),
        "model_version": (f"{current['group_name']}/{current['version']}" if current else None),
        "history": [dict(c) for c in configs],
        "workers": [dict(w) for w in workers],
    }


def endpoint_records(store: Store) -> list[dict[str, Any]]:
    with store.read() as conn:
        names = [r["name"] for r in conn.execute("SELECT name FROM endpoints ORDER BY name")]
    return [r for r in (endpoint_record(store, n) for n in names) if r is not None]


def set_status(store: Store, name: str, status: EndpointStatus, reason: str | None = None
               ) -> None:
    with store.write() as conn:
        conn.execute(
            "UPDATE endpoints SET status = ?, status_reason = ?, updated_at = ?, "
            "deployer_pid = NULL, deployer_host_id = NULL WHERE name = ?",
            (status, reason, now(), name),
        )


def revert(store: Store, name: str, failed_config: str, reason: str) -> None:
    """Put the endpoint back on its previous config after `failed_config` was refused."""
    with store.write() as conn:
        row = conn.execute(
            "SELECT config_name, previous_config_name FROM endpoints WHERE name = ?", (name,)
        ).fetchone()
        if row is None or row["config_name"] != failed_config:
            return
        if row["previous_config_name"] is None:
            conn.execute(
                "UPDATE endpoints SET status = 'Failed', status_reason = ?, "
                "updated_at = ? WHERE name = ?",
                (reason, now(), name),
            )
        else:
            conn.execute(
                "UPDATE endpoints SET config_name = previous_config_name, previous_config_name ="
                " NULL, status = 'InService', status_reason = ?, updated_at = ? WHERE name = ?",
                (f"update to {failed_config} failed: {reason}", now(), name),
            )


def rollback(store: Store, name: str) -> Deployment:
    """Return the endpoint to the config it served before (a new, checked switch).

    That is the recorded previous config when there is one (a refused update never
    becomes it), else the newest config older than the current one.
    """
    with store.write() as conn:
        row = conn.execute("SELECT config_name, previous_config_name, status FROM endpoints "
                           "WHERE name = ?", (name,)).fetchone()
        if row is None or row["status"] == "Deleted":
            raise DeployError(f"no endpoint {name!r} (see custseg endpoints list)")
        previous = conn.execute("SELECT name FROM endpoint_configs WHERE name = ?",
                                (row["previous_config_name"],)).fetchone() or conn.execute(
            "SELECT name FROM endpoint_configs WHERE endpoint_name = ? AND created_at < "
            "(SELECT created_at FROM endpoint_configs WHERE name = ?) ORDER BY created_at DESC "
            "LIMIT 1",
            (name, row["config_name"]),
        ).fetchone()
        if previous is None:
            raise DeployError(f"endpoint {name!r} has no earlier config to roll back to")
        conn.execute(
            "UPDATE endpoints SET config_name = ?, previous_config_name = ?, status = "
            "'Updating', status_reason = 'rollback', updated_at = ?, deployer_pid = ?, "
            "deployer_host_id = ? WHERE name = ?",
            (previous["name"], row["config_name"], now(), os.getpid(), store.host, name),
        )
        # a worker's earlier refusal of that config is no answer to this switch
        conn.execute("DELETE FROM endpoint_workers WHERE endpoint_name = ? AND "
                     "config_name = ? AND status = 'Failed'", (name, previous["name"]))
    return Deployment(name, previous["name"], "updated", row["config_name"])


def delete(store: Store, name: str) -> None:
    with store.write() as conn:
        found = conn.execute(
            "UPDATE endpoints SET status = 'Deleted', updated_at = ? WHERE "
            "name = ? AND status != 'Deleted'",
            (now(), name),
        ).rowcount
    if not found:
        raise DeployError(f"no endpoint {name!r}")


def switch_view(store: Store, name: str) -> tuple[
        str | None, list[WorkerKey], dict[WorkerKey, dict[str, Any]]]:
    """What a deploy waits on: the endpoint's config (None when gone), the live workers
    of every host, and what each reports for the endpoint."""
    with store.read() as conn:
        current = conn.execute("SELECT config_name FROM endpoints WHERE name = ?",
                               (name,)).fetchone()
        workers = _live_workers(store, conn)
        rows = _worker_rows(conn, name)
    return (None if current is None else current["config_name"]), workers, rows


def wanted_configs(store: Store) -> dict[str, dict[str, Any]]:
    """Every endpoint that is not deleted, with its status, its config's artifact and
    version."""
    with store.read() as conn:
        rows = conn.execute(
            "SELECT e.name, e.config_name, e.status, e.updated_at, c.artifact_uri, "
            "c.group_name, c.version "
            "FROM endpoints e JOIN endpoint_configs c ON c.name = e.config_name "
            "WHERE e.status != 'Deleted'"
        ).fetchall()
    return {r["name"]: dict(r) for r in rows}


def report_worker(store: Store, endpoint: str, pid: int, config: str | None,
                  status: WorkerStatus,
                  reason: str | None) -> None:
    """A worker of this host says what it serves for `endpoint` (`*`: that it is alive;
    repeated every `HEARTBEAT` seconds)."""
    with store.write() as conn:
        conn.execute(
            "INSERT INTO endpoint_workers (endpoint_name, host_id, pid, config_name, status, "
            "reason, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (endpoint_name, "
            "host_id, pid) DO UPDATE SET config_name = excluded.config_name, status = "
            "excluded.status, reason = excluded.reason, updated_at = excluded.updated_at",
            (endpoint, store.host, pid, config, status, reason, now()),
        )


def forget_worker(store: Store, pid: int) -> None:
    with store.write() as conn:
        conn.execute("DELETE FROM endpoint_workers WHERE host_id IN (?, '') AND pid = ?",
                     (store.host, pid))
