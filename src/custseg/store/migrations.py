"""The store's schema, as forward migrations: entry N takes a database from schema
version N to N + 1 (SQLite: `PRAGMA user_version`; PostgreSQL: the `schema_version`
table). Written in SQLite's words; `dialects` translates the few PostgreSQL says
otherwise. Append; never edit a shipped entry."""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE pipelines (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        definition TEXT NOT NULL,
        definition_sha256 TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE executions (
        id TEXT PRIMARY KEY,
        pipeline_name TEXT NOT NULL,
        pipeline_version INTEGER NOT NULL,
        status TEXT NOT NULL,
        parameters TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        error TEXT,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        pid_start TEXT,
        user TEXT NOT NULL,
        FOREIGN KEY (pipeline_name, pipeline_version) REFERENCES pipelines (name, version)
    );
    CREATE INDEX executions_by_status ON executions (status);
    CREATE TABLE steps (
        execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT,
        ended_at TEXT,
        seconds REAL,
        error TEXT,
        outputs TEXT NOT NULL DEFAULT '{}',
        cache_key TEXT,
        cached_from TEXT,
        reason TEXT,
        PRIMARY KEY (execution_id, name)
    );
    CREATE INDEX steps_by_cache_key ON steps (name, cache_key, status);
    CREATE TABLE model_packages (
        group_name TEXT NOT NULL,
        version INTEGER NOT NULL,
        execution_id TEXT REFERENCES executions (id),
        artifact_uri TEXT NOT NULL,
        approval_status TEXT NOT NULL,
        lineage TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        PRIMARY KEY (group_name, version)
    );
    CREATE TABLE approvals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        group_name TEXT NOT NULL,
        version INTEGER NOT NULL,
        from_status TEXT,
        to_status TEXT NOT NULL,
        by TEXT NOT NULL,
        at TEXT NOT NULL,
        comment TEXT,
        FOREIGN KEY (group_name, version) REFERENCES model_packages (group_name, version)
    );
    CREATE TABLE endpoint_configs (
        name TEXT PRIMARY KEY,
        endpoint_name TEXT NOT NULL,
        group_name TEXT NOT NULL,
        version INTEGER NOT NULL,
        artifact_uri TEXT NOT NULL,
        execution_id TEXT,
        created_at TEXT NOT NULL,
        FOREIGN KEY (group_name, version) REFERENCES model_packages (group_name, version)
    );
    CREATE TABLE endpoints (
        name TEXT PRIMARY KEY,
        config_name TEXT NOT NULL REFERENCES endpoint_configs (name),
        previous_config_name TEXT REFERENCES endpoint_configs (name),
        status TEXT NOT NULL,
        status_reason TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    """,
    # 2: what each server worker serves, so deploys can wait for (or fail on) the switch
    """
    CREATE TABLE endpoint_workers (
        endpoint_name TEXT NOT NULL,
        pid INTEGER NOT NULL,
        config_name TEXT,
        status TEXT NOT NULL,
        reason TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (endpoint_name, pid)
    );
    CREATE TABLE servers (
        pid INTEGER PRIMARY KEY,
        host TEXT NOT NULL,
        port INTEGER NOT NULL,
        workers INTEGER NOT NULL,
        started_at TEXT NOT NULL
    );
    """,
    # 2: the settings a server runs with (a salted hash of its API key, never the key), so
    # that a deploy sees a server whose settings differ from the config
    """
    ALTER TABLE servers ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
    """,
    # 3: the process deploying an endpoint (Creating/Updating), so that a deploy killed
    # mid-way is reconciled from what the workers really serve
    """
    ALTER TABLE endpoints ADD COLUMN deployer_pid INTEGER;
    """,
    # 5 (schema version 5): several hosts share a PostgreSQL store, and a pid means
    # something only on its own host: endpoint workers and servers are keyed by
    # (host_id, pid) (host_id: the host name, as in executions.host), and a deploy names
    # its host. Rows from before (host_id '') come from the one machine of a SQLite store.
    """
    CREATE TABLE endpoint_workers_by_host (
        endpoint_name TEXT NOT NULL,
        host_id TEXT NOT NULL,
        pid INTEGER NOT NULL,
        config_name TEXT,
        status TEXT NOT NULL,
        reason TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (endpoint_name, host_id, pid)
    );
    INSERT INTO endpoint_workers_by_host (endpoint_name, host_id, pid, config_name, status,
        reason, updated_at)
        SELECT endpoint_name, '', pid, config_name, status, reason, updated_at
        FROM endpoint_workers;
    DROP TABLE endpoint_workers;
    ALTER TABLE endpoint_workers_by_host RENAME TO endpoint_workers;
    CREATE TABLE servers_by_host (
        host_id TEXT NOT NULL,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        port INTEGER NOT NULL,
        workers INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        settings TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (host_id, pid)
    );
    INSERT INTO servers_by_host (host_id, pid, host, port, workers, started_at, settings)
        SELECT '', pid, host, port, workers, started_at, settings FROM servers;
    DROP TABLE servers;
    ALTER TABLE servers_by_host RENAME TO servers;
    ALTER TABLE endpoints ADD COLUMN deployer_host_id TEXT;
    """,
    # 6: `custseg monitor`'s reports, per endpoint over time: the headline figures as
    # columns (for the dashboard's history), the whole report as JSON
    """
    CREATE TABLE drift_reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        endpoint_name TEXT NOT NULL,
        model_version TEXT NOT NULL,
        source TEXT NOT NULL,
        window_start TEXT,
        records INTEGER NOT NULL,
        drift INTEGER NOT NULL,
        max_psi REAL,
        segment_psi REAL,
        far_share REAL,
        alerts TEXT NOT NULL,
        report TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE INDEX drift_reports_by_endpoint ON drift_reports (endpoint_name, created_at);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
