"""Data capture: a sampled share of the requests and their responses, written off the
request path to Parquet files (`io/capture_files` has the layout).

On the request path a worker only draws a random number and, for a sampled request,
puts the raw request body and response body on a bounded queue (`offer`, a few
microseconds). When the queue is full (or holds over `MAX_PENDING_BYTES` of bodies), the
request's records are dropped and counted: capture never makes a request slower or the
worker's memory unbounded. A background thread per worker takes them off the queue,
parses them (the body again, and the response), hashes or leaves out the PII fields,
buffers the rows and writes a file every `file_records` records or `flush_seconds`,
then removes the endpoint's oldest files beyond `max_mb`. `close` (the worker's
graceful shutdown) writes what is buffered.

PII fields (`pii`) are hashed with HMAC-SHA256 under a secret key (from the variable
`pii_key_env` names, else a random key kept in the store's folder), so that a hashed
value cannot be found by hashing guesses without the key, yet equal values stay equal;
or, with `pii_action: omit`, left out. A field is matched by its name as sent.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import queue
import random
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from custseg.core.preprocessing import category_key
from custseg.io.capture_files import CaptureFolder, parquet_bytes
from custseg.serving.metrics import CaptureCounts
from custseg.serving.settings import CaptureSettings
from custseg.serving.wire import WireError, parse_body

__all__ = ["MAX_PENDING_BYTES", "CaptureWriter", "capture_table", "pii_key"]

MAX_PENDING_BYTES = 64 * 1024 * 1024  # request bodies waiting for the writer, per worker
KEY_FILE = "capture.key"
CLOSE_TIMEOUT = 8.0  # seconds the shutdown waits for the last file (the grace is 12)


@dataclass(frozen=True)
class _Item:
    """A sampled request as it left the request path: nothing parsed yet."""

    endpoint: str
    version: str
    columns: tuple[str, ...]
    at: float  # seconds since the epoch
    request: str
    body: bytes
    content_type: str
    response: bytes
    media: str


def pii_key(settings: CaptureSettings, folder: Path) -> bytes:
    """The PII hashing key: the variable `pii_key_env` names, else this store's own
    random key (`capture.key` in its folder, made once, readable by its owner only)."""
    from custseg.config import read_secret

    secret = read_secret(settings.pii_key_env, "endpoint.capture.pii_key_env")
    if secret is not None:
        return secret.encode()
    path = folder / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another worker is writing it
            data = path.read_bytes()
            if data:
                return data
            time.sleep(0.01)
        raise OSError(f"the capture key file {path} is empty") from None
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_hex(32).encode())
    return path.read_bytes()


class CaptureWriter:
    """One worker's capture: the queue, the writer thread and its buffers."""

    def __init__(self, settings: CaptureSettings, artifacts: str, *, key: bytes,
                 s3_endpoint_url: str | None = None, counts: CaptureCounts | None = None,
                 draw: Callable[[], float] = random.random) -> None:
        self.settings = settings
        self.counts = counts or CaptureCounts()
        self._artifacts = artifacts
        self._s3_endpoint_url = s3_endpoint_url
        self._key = key
        self._draw = draw
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=settings.queue_size)
        self._offered_bytes = 0  # written by the request path only
        self._taken_bytes = 0  # written by the writer thread only
        self._sequence = 0
        self._pii = frozenset(settings.pii)
        self._buffers: dict[str, list[dict[str, Any]]] = {}
        self._started: dict[str, float] = {}  # endpoint -> monotonic time of its first row
        self._folders: dict[str, CaptureFolder] = {}
        self._files = 0
        self._thread = threading.Thread(target=self._run, name="custseg-capture", daemon=True)

    def start(self) -> CaptureWriter:
        self._thread.start()
        return self

    # -- the request path ------------------------------------------------------------------
    def sampled(self) -> bool:
        """Whether to capture this request (drawn once per request)."""
        return self._draw() < self.settings.sample

    def offer(self, endpoint: str, version: str, columns: Sequence[str], body: bytes,
              content_type: str, response: bytes, media: str, records: int) -> None:
        """Queue a sampled, scored request; drop (and count) it when the queue is full.
        Never blocks."""
        if self._offered_bytes - self._taken_bytes + len(body) > MAX_PENDING_BYTES:
            self.counts.add(endpoint, "dropped", records)
            return
        self._sequence += 1
        item = _Item(endpoint, version, tuple(columns), time.time(),
                     f"{os.getpid()}-{self._sequence}", body, content_type, response, media)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.counts.add(endpoint, "dropped", records)
            return
        self._offered_bytes += len(body)

    # -- the writer thread -----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._wait())
            except queue.Empty:
                item = None
                self._flush_due()
                continue
            if item is None:  # close()
                self._flush_all()
                return
            self._taken_bytes += len(item.body)
            rows = self._rows(item)
            if rows:
                self._buffers.setdefault(item.endpoint, []).extend(rows)
                self._started.setdefault(item.endpoint, time.monotonic())
                self.counts.add(item.endpoint, "captured", len(rows))
            if len(self._buffers.get(item.endpoint, ())) >= self.settings.file_records:
                self._flush(item.endpoint)
            self._flush_due()

    def _wait(self) -> float:
        if not self._started:
            return self.settings.flush_seconds
        oldest = min(self._started.values())
        return max(0.01, oldest + self.settings.flush_seconds - time.monotonic())

    def _flush_due(self) -> None:
        deadline = time.monotonic() - self.settings.flush_seconds
        for endpoint, started in list(self._started.items()):
            if started <= deadline:
                self._flush(endpoint)

    def _flush_all(self) -> None:
        for endpoint in list(self._buffers):
            self._flush(endpoint)

    def _rows(self, item: _Item) -> list[dict[str, Any]]:
        """The request's records beside their predictions (none when either cannot be
        read back: the request was scored, so this does not happen in practice)."""
        try:
            records = parse_body(item.body, item.content_type, item.columns)
            predictions = _predictions(item.response, item.media)
        except (WireError, ValueError, IndexError):
            return []
        if len(records) != len(predictions):
            return []
        return [{"time": item.at, "model_version": item.version, "request": item.request,
                 "input": self._private(record), **prediction}
                for record, prediction in zip(records, predictions, strict=True)]

    def _private(self, record: Mapping[str, Any]) -> dict[str, Any]:
        if not self._pii:
            return dict(record)
        out = {}
        for name, value in record.items():
            if name not in self._pii:
                out[name] = value
            elif self.settings.pii_action == "hash":
                out[name] = self._hash(value)
        return out

    def _hash(self, value: Any) -> str | None:
        key = value if isinstance(value, str) else (
            orjson.dumps(value).decode() if isinstance(value, dict | list)
            else category_key(value))
        if key is None:
            return None
        return hmac.new(self._key, key.encode(), hashlib.sha256).hexdigest()

    def _flush(self, endpoint: str) -> None:
        rows = self._buffers.pop(endpoint, [])
        self._started.pop(endpoint, None)
        if not rows:
            return
        folder = self._folders.get(endpoint)
        if folder is None:
            folder = self._folders[endpoint] = CaptureFolder(
                self._artifacts, endpoint, self._s3_endpoint_url)
        first = datetime.fromtimestamp(rows[0]["time"], UTC)
        self._files += 1
        name = (f"{first:%Y-%m-%d}/{first:%H%M%S}.{first.microsecond // 1000:03d}-"
                f"{os.getpid()}-{self._files}.parquet")
        try:
            folder.write(name, parquet_bytes(capture_table(rows)))
            folder.keep_within(int(self.settings.max_mb * 1024 * 1024))
        except Exception as exc:  # a full disk or S3 outage must not stop the worker
            self.counts.add(endpoint, "failed", len(rows))
            print(f"custseg: capture of {endpoint}: cannot write {folder.uri}/{name}: "
                  f"{type(exc).__name__}: {exc}", flush=True)

    # -- shutdown ----------------------------------------------------------------------------
    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Write what is queued and buffered, then stop the thread (waits at most
        `timeout`)."""
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)


def _predictions(response: bytes, media: str) -> list[dict[str, Any]]:
    """cluster, segment and distance of each record, from the response body."""
    if media.startswith("text/csv"):
        import csv
        import io

        rows = list(csv.reader(io.StringIO(response.decode())))[1:]
        return [{"cluster": int(r[0]), "segment": r[1], "distance": float(r[2])}
                for r in rows if r]
    predictions = orjson.loads(response)["predictions"]
    return [{"cluster": int(p["cluster"]), "segment": str(p["segment"]),
             "distance": float(p["distance"])} for p in predictions]


def capture_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows as the capture file's table: `io/capture_files.CAPTURE_COLUMNS` plus the
    struct `input`, each of its fields typed by the values sent (numbers as float64,
    true/false as bool, anything else as text)."""
    names = list(dict.fromkeys(name for row in rows for name in row["input"]))
    fields = [_field(name, [row["input"].get(name) for row in rows]) for name in names]
    inputs = (pa.StructArray.from_arrays([a for _, a in fields], [n for n, _ in fields])
              if fields else pa.array([{}] * len(rows), pa.struct([])))
    return pa.table({
        "time": pa.array([round(row["time"] * 1000) for row in rows], pa.timestamp("ms", "UTC")),
        "model_version": pa.array([row["model_version"] for row in rows], pa.string()),
        "request": pa.array([row["request"] for row in rows], pa.string()),
        "cluster": pa.array([row["cluster"] for row in rows], pa.int32()),
        "segment": pa.array([row["segment"] for row in rows], pa.string()),
        "distance": pa.array([row["distance"] for row in rows], pa.float64()),
        "input": inputs,
    })


def _field(name: str, values: list[Any]) -> tuple[str, pa.Array]:
    present = [v for v in values if v is not None]
    if present and all(type(v) is bool for v in present):
        return name, pa.array(values, pa.bool_())
    if all(isinstance(v, int | float) and type(v) is not bool for v in present):
        return name, pa.array(values, pa.float64())
    return name, pa.array([None if v is None else _text(v) for v in values], pa.string())


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return category_key(value) or ""
