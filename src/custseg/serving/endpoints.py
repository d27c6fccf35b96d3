"""What a server worker serves: the store's endpoints, each with its loaded model.

`EndpointTable.sync()` brings a worker in step with the store: a new endpoint config is
loaded beside the old model, verified (sha256 integrity, input schema compatible with the
model it replaces, a smoke prediction) and switched to atomically; requests already
holding the old model finish on it. A model that fails verification is not served: the
worker keeps the old one and reports the failure, and the deploy that asked for the
switch reverts the endpoint. Each worker reports what it serves in `endpoint_workers`.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import Any

import numpy as np

from custseg.artifact.scorer import Model
from custseg.artifact.storage import load_model
from custseg.errors import CustsegError, DeployError
from custseg.store.database import Store, now
from custseg.store.endpoints import (
    HEARTBEAT,
    WorkerStatus,
    forget_worker,
    report_worker,
    wanted_configs,
)

__all__ = ["ENDPOINT_NAME", "EndpointTable", "Refused", "Served", "public_reason",
           "segment_names", "verify"]

ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# what is left of a place on the server once the artifact's own URI is named by its
# version: a URI (s3://bucket/key, file://...) or an absolute path
_PLACE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\",;)]+|(?<![\w.~-])/[^\s'\",;:)]+")


@dataclass(frozen=True)
class Served:
    """An endpoint's live model: immutable, swapped whole."""

    name: str
    config: str
    ref: str  # GROUP/VERSION
    model: Model
    segment_names: list[str]
    loaded_at: str = field(default_factory=now)

    @cached_property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """The headers of its answers beside the content type and length."""
        return [(b"x-custseg-model-version", self.ref.encode()),
                (b"x-amzn-invoked-production-variant", self.config.encode())]


@dataclass(frozen=True)
class Refused:
    """An endpoint config this worker would not serve: the full reason (for the log and
    the operator's status) and the one an invocation's caller is told."""

    config: str
    reason: str
    public: str
    requested: str  # when the switch it refused was asked for (the endpoint's updated_at)

    def stands(self, row: dict[str, Any]) -> bool:
        """Whether the store still wants what was refused, as it was refused: a new switch
        to the same config (a rollback to it, its artifact since mended) is tried again."""
        return row["config_name"] == self.config and not (
            row["status"] in ("Creating", "Updating") and row["updated_at"] != self.requested)


def public_reason(reason: str, artifact_uri: str, ref: str) -> str:
    """`reason` without the server's paths, for the callers of an endpoint: the artifact's
    URI named by its model version, any other path or URI left out."""
    text = reason
    uri = artifact_uri.rstrip("/")
    if uri:
        text = text.replace(f" at {uri}", f" of {ref}").replace(uri, f"of {ref}")
    return _PLACE.sub("<path>", text)


def segment_names(model: Model) -> list[str]:
    names = model.meta.get("segment_names")
    if isinstance(names, list) and len(names) == model.k:
        return [str(n) for n in names]
    return [str(i) for i in range(model.k)]


def _typical(transform: Any, column: str, median: float) -> Any:
    """A numeric column's median as a caller sends it: a date column's as a date in its
    format (its median is in days before the newest training date)."""
    fmt = transform.dates.get(column)
    if fmt is None:
        return median
    day = date.fromordinal(date(1970, 1, 1).toordinal()
                           + round(transform.date_reference[column] - median))
    return day.isoformat() if fmt == "iso" else day.strftime(fmt)


def verify(new: Model, old: Model | None) -> None:
    """Raise DeployError when `new` cannot replace `old` for the apps calling it."""
    if old is not None:
        old_kinds = {c: "numeric" for c in old.transform.numeric} | {
            c: "categorical" for c in old.transform.categorical
        }
        for column in new.input_columns:
            if column not in old_kinds:
                raise DeployError(
                    f"schema check: the new model needs field {column!r}, which "
                    f"callers of the current model do not send"
                )
        for column in new.transform.numeric:
            if old_kinds[column] != "numeric":
                raise DeployError(
                    f"schema check: field {column!r} changes from {old_kinds[column]} to numeric"
                )
        for column in new.transform.categorical:
            if old_kinds[column] != "categorical":
                raise DeployError(
                    f"schema check: field {column!r} changes from "
                    f"{old_kinds[column]} to categorical"
                )
    t = new.transform
    probe: dict[str, Any] = {c: _typical(t, c, float(m))
                             for c, m in zip(t.numeric, t.medians, strict=True)}
    probe |= dict(zip(t.categorical, t.modes, strict=True))
    try:
        labels, distances = new.score([probe])
    except CustsegError as exc:
        raise DeployError(f"smoke prediction failed: {exc}") from exc
    if not (0 <= int(labels[0]) < new.k and np.isfinite(distances[0])):
        raise DeployError(
            f"smoke prediction is invalid: cluster {labels[0]}, distance {distances[0]}"
        )


class EndpointTable:
    """The endpoints this worker serves, kept in step with the store."""

    def __init__(self, store: Store, s3_endpoint_url: str | None = None) -> None:
        self.store = store
        self.s3_endpoint_url = s3_endpoint_url
        self.live: dict[str, Served] = {}
        self.failed: dict[str, Refused] = {}
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._registered: float | None = None  # when the `*` row was last refreshed
        self._token: Any = None  # the store's change token at the last sync

    def stale(self) -> bool:
        """Whether the store may have changed since the last sync (or this worker's
        heartbeat is due): a look costing microseconds, so that an idle store costs the
        worker no query (and no thread) at every look."""
        token = self.store.change_token()
        return (token is None or token != self._token
                or (self._registered is not None
                    and time.monotonic() - self._registered > HEARTBEAT))

    def get(self, name: str) -> Served | None:
        return self.live.get(name)

    def _wanted(self) -> dict[str, dict[str, Any]]:
        return wanted_configs(self.store)

    def _report(self, endpoint: str, config: str | None, status: WorkerStatus,
                reason: str | None) -> None:
        report_worker(self.store, endpoint, self.pid, config, status, reason)

    def sync(self) -> None:
        """Load, verify and switch to every config the store wants; drop deleted ones."""
        with self._lock:
            self._token = self.store.change_token()  # before reading: a commit made
            wanted = self._wanted()  # meanwhile makes the next look stale
            # the request path reads these dicts from the event loop: replace, never mutate
            gone = [name for name in self.live if name not in wanted]
            if gone:
                self.live = {k: v for k, v in self.live.items() if k not in gone}
                for name in gone:
                    self._report(name, None, "Deleted", None)
            self.failed = {k: v for k, v in self.failed.items() if k in wanted}
            for name, row in wanted.items():
                current = self.live.get(name)
                if current is not None and current.config == row["config_name"]:
                    continue
                refused = self.failed.get(name)
                if refused is not None and refused.stands(row):
                    continue  # already refused; the deploy reverts the endpoint
                self._switch(name, row, current)
            if self._registered is not None and time.monotonic() - self._registered > HEARTBEAT:
                self.register_worker()  # the heartbeat other hosts judge this worker by

    def _switch(self, name: str, row: dict[str, Any], current: Served | None) -> None:
        config = row["config_name"]
        try:
            model = load_model(row["artifact_uri"], s3_endpoint_url=self.s3_endpoint_url)
            verify(model, current.model if current else None)
        except Exception as exc:  # whatever the cause, this model is not served
            reason = str(exc) if isinstance(exc, CustsegError) else f"{type(exc).__name__}: {exc}"
            ref = f"{row['group_name']}/{row['version']}"
            refused = Refused(config, reason, public_reason(reason, row["artifact_uri"], ref),
                              str(row["updated_at"]))
            self.failed = {**self.failed, name: refused}
            # the full reason (with the artifact's place) for the operator; callers get
            # `public` (see App._target)
            print(f"custseg: endpoint {name!r} cannot serve config {config}: {reason}",
                  flush=True)
            self._report(name, config, "Failed", reason)
            return
        self.live = {**self.live, name: Served(
            name=name,
            config=config,
            ref=f"{row['group_name']}/{row['version']}",
            model=model,
            segment_names=segment_names(model),
        )}
        self.failed = {k: v for k, v in self.failed.items() if k != name}
        self._report(name, config, "InService", None)

    def register_worker(self) -> None:
        """Announce this worker, so that deploys wait for it to switch too."""
        self._report("*", None, "Up", None)
        self._registered = time.monotonic()

    def forget_worker(self) -> None:
        forget_worker(self.store, self.pid)
