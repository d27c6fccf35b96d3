"""DeployEndpoint: the seed's Lambda logic, with a stable endpoint name.

Each deployment creates a new endpoint config named
`{project}-endpoint-config-{environment}-{timestamp}` for the model version; the endpoint
`{project}-endpoint-{environment}` is created on it when absent, else updated to it
(keeping the previous config for rollback). The endpoint server loads the new config
beside the old one and switches to it (see `inference`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from custseg.store import Store, now

__all__ = ["Deployment", "config_name", "create_or_update", "endpoint_name"]


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
    with store.write() as conn:
        config = config_name(project, environment)
        while True:  # two deployments within a microsecond: the later one waits its turn
            try:
                conn.execute(
                    "INSERT INTO endpoint_configs (name, endpoint_name, group_name, version, "
                    "artifact_uri, execution_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (config, name, group, version, artifact_uri, execution_id, now()),
                )
                break
            except sqlite3.IntegrityError:
                config = config_name(project, environment)
        row = conn.execute("SELECT config_name FROM endpoints WHERE name = ?", (name,)).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO endpoints (name, config_name, status, created_at, updated_at) "
                "VALUES (?, ?, 'Creating', ?, ?)",
                (name, config, now(), now()),
            )
            return Deployment(name, config, "created", None)
        conn.execute(
            "UPDATE endpoints SET config_name = ?, previous_config_name = ?, status = 'Updating',"
            " status_reason = NULL, updated_at = ? WHERE name = ?",
            (config, row["config_name"], now(), name),
        )
        return Deployment(name, config, "updated", row["config_name"])
