"""The endpoint servers running for a store: one row per server process (its pid,
address, worker count and the settings it runs with, its API key only as a salted
hash), which stands in for a pid file."""

from __future__ import annotations

import json
from typing import Any

from custseg.store.database import Store, now

__all__ = ["forget_server", "record_server", "server_rows"]


def server_rows(store: Store) -> list[dict[str, Any]]:
    with store.read() as conn:
        rows = conn.execute("SELECT pid, host, port, workers, settings FROM servers").fetchall()
    return [{"pid": int(r["pid"]), "host": r["host"], "port": int(r["port"]),
             "workers": int(r["workers"]), "settings": json.loads(r["settings"] or "{}")}
            for r in rows]


def record_server(store: Store, *, pid: int, host: str, port: int, workers: int,
                  settings: dict[str, Any]) -> None:
    with store.write() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO servers (pid, host, port, workers, started_at, settings) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (pid, host, port, workers, now(), json.dumps(settings)),
        )


def forget_server(store: Store, pid: int) -> None:
    with store.write() as conn:
        conn.execute("DELETE FROM servers WHERE pid = ?", (pid,))
