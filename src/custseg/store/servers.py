"""The endpoint servers running for a store: one row per server process, keyed by its
host and pid (its address, worker count and the settings it runs with, its API key only
as a salted hash), which stands in for a pid file. A host sees, starts and stops its own
servers; those of other hosts sharing the store are theirs."""

from __future__ import annotations

import json
from typing import Any

from custseg.store.database import Store, now

__all__ = ["forget_server", "record_server", "server_rows"]


def server_rows(store: Store) -> list[dict[str, Any]]:
    """This host's servers (rows from before hosts were recorded are this machine's)."""
    with store.read() as conn:
        rows = conn.execute("SELECT pid, host, port, workers, settings FROM servers WHERE "
                            "host_id IN (?, '')", (store.host,)).fetchall()
    return [{"pid": int(r["pid"]), "host": r["host"], "port": int(r["port"]),
             "workers": int(r["workers"]), "settings": json.loads(r["settings"] or "{}")}
            for r in rows]


def record_server(store: Store, *, pid: int, host: str, port: int, workers: int,
                  settings: dict[str, Any]) -> None:
    with store.write() as conn:
        conn.execute(
            "INSERT INTO servers (host_id, pid, host, port, workers, started_at, settings) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (host_id, pid) DO UPDATE SET "
            "host = excluded.host, port = excluded.port, workers = excluded.workers, "
            "started_at = excluded.started_at, settings = excluded.settings",
            (store.host, pid, host, port, workers, now(), json.dumps(settings)),
        )


def forget_server(store: Store, pid: int) -> None:
    with store.write() as conn:
        conn.execute("DELETE FROM servers WHERE host_id IN (?, '') AND pid = ?",
                     (store.host, pid))
