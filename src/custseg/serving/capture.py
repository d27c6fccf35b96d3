"""Data capture: a sampled share of the requests and their responses, written off the
request path to Parquet files (`io/capture_files` has the layout).

On the request path a worker draws a random number per request; for a sampled one, the
scorer keeps the records it parsed and their cluster ids and distances, and after the
response is sent they go on a bounded queue (`offer`: a deque append, nothing copied or
parsed again, no thread woken: the writer looks every `POLL_SECONDS`). When the queue is
full (or holds requests of over `MAX_PENDING_BYTES`), the request's records are dropped
and counted: capture never makes a request slower or the worker's memory unbounded. A
background thread per worker takes them off the queue, turns them into Arrow a block at
a time (`capture_table`), hashes or leaves out the PII fields, and writes a file every
`file_records` records or `flush_seconds`, then removes the endpoint's oldest files
beyond `max_mb`. `close` (the worker's graceful shutdown) writes what is buffered.

PII fields (`pii`) are hashed with HMAC-SHA256 under a secret key (from the variable
`pii_key_env` names, else a random key kept in the store's folder), so that a hashed
value cannot be found by hashing guesses without the key, yet equal values stay equal;
or, with `pii_action: omit`, left out. A field is matched by its name as sent.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from custseg.core.preprocessing import category_key
from custseg.io.capture_files import CaptureFolder, concat_tables, parquet_bytes
from custseg.serving.capture_table import INPUT_PREFIX, Chunk, chunk_table, hashed
from custseg.serving.metrics import CaptureCounts
from custseg.serving.settings import CaptureSettings

__all__ = ["BLOCK_ROWS", "MAX_PENDING_BYTES", "CaptureWriter", "pii_key"]

MAX_PENDING_BYTES = 64 * 1024 * 1024  # request bodies waiting for the writer, per worker
BLOCK_ROWS = 1000  # records turned into Arrow at a time
KEY_FILE = "capture.key"
CLOSE_TIMEOUT = 8.0  # seconds the shutdown waits for the last file (the grace is 12)
# how often the writer thread looks at its queue: a request never wakes it (a wake-up per
# captured request cost the event loop a GIL hand-over each time)
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class _Item:
    """A sampled request as it left the request path: its records as the scorer parsed
    them, with their cluster ids and distances (nothing parsed again, nothing copied)."""

    endpoint: str
    version: str
    names: Sequence[str]  # segment names by cluster id
    at: float  # seconds since the epoch
    request: str
    scored: list[tuple[Sequence[Mapping[str, Any]], list[int], list[float]]]
    size: int  # the request body's bytes (what the pending budget counts)


class _Buffer:
    """An endpoint's records waiting for their file: converted to Arrow a block of
    `BLOCK_ROWS` at a time (a bounded hold of the GIL), the rest still parsed chunks."""

    def __init__(self, started: float, private: Callable[[pa.Table], pa.Table]) -> None:
        self.started = started  # monotonic time of its first chunk
        self._private = private
        self.first_ms: int = 0
        self.rows = 0
        self._chunks: list[Chunk] = []
        self._pending = 0
        self._tables: list[pa.Table] = []

    def add(self, chunk: Chunk) -> None:
        if not self.rows:
            self.first_ms = chunk.time_ms
        self._chunks.append(chunk)
        self._pending += len(chunk.records)
        self.rows += len(chunk.records)
        if self._pending >= BLOCK_ROWS:
            self._convert()

    def _convert(self) -> None:
        if self._chunks:
            self._tables.append(self._private(chunk_table(self._chunks)))
            self._chunks, self._pending = [], 0

    def table(self) -> pa.Table:
        self._convert()
        return concat_tables(self._tables)


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
        self._queue: deque[_Item] = deque()  # appended by the request path, popped by the
        self._stopping = threading.Event()  # writer (both atomic in CPython)
        self._offered_bytes = 0  # written by the request path only
        self._taken_bytes = 0  # written by the writer thread only
        self._sequence = 0
        self._pii = frozenset(settings.pii)
        self._buffers: dict[str, _Buffer] = {}
        self._folders: dict[str, CaptureFolder] = {}
        self._files = 0
        self._thread = threading.Thread(target=self._run, name="custseg-capture", daemon=True)

    def start(self) -> CaptureWriter:
        """Start the writer thread. Arrow's first conversion imports pandas (about a
        second): done here, at the worker's start, not at its first captured request."""
        pa.array([0])
        self._thread.start()
        return self

    # -- the request path ------------------------------------------------------------------
    def sampled(self) -> bool:
        """Whether to capture this request (drawn once per request)."""
        return self._draw() < self.settings.sample

    def offer(self, endpoint: str, version: str, names: Sequence[str],
              scored: list[tuple[Sequence[Mapping[str, Any]], list[int], list[float]]],
              size: int, records: int) -> None:
        """Queue a sampled request's scored records (`scoring.Observed.scored`; `size`:
        its body's bytes); drop (and count) them when the queue is full. Never blocks."""
        if self._offered_bytes - self._taken_bytes + size > MAX_PENDING_BYTES:
            self.counts.add(endpoint, "dropped", records)
            return
        self._sequence += 1
        item = _Item(endpoint, version, names, time.time(), f"{os.getpid()}-{self._sequence}",
                     scored, size)
        if len(self._queue) >= self.settings.queue_size:
            self.counts.add(endpoint, "dropped", records)
            return
        self._queue.append(item)
        self._offered_bytes += size

    # -- the writer thread -----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            stopping = self._stopping.wait(POLL_SECONDS)
            while self._queue:
                self._taken(self._queue.popleft())
            self._flush_due()
            if stopping:  # close(): what is buffered written
                for endpoint in list(self._buffers):
                    self._flush(endpoint)
                return

    def _taken(self, item: _Item) -> None:
        self._taken_bytes += item.size
        try:
            self._take(item)
        except Exception as exc:  # a bug must not stop capture for the worker's life
            self._buffers.pop(item.endpoint, None)  # the block that failed, and its file
            self.counts.add(item.endpoint, "failed", sum(len(r) for r, _, _ in item.scored))
            print(f"custseg: capture of {item.endpoint} failed: {type(exc).__name__}: "
                  f"{exc}", flush=True)

    def _take(self, item: _Item) -> None:
        chunk = self._chunk(item)
        if chunk is None:
            return
        buffer = self._buffers.get(item.endpoint)
        if buffer is None:
            buffer = self._buffers[item.endpoint] = _Buffer(time.monotonic(), self._private)
        buffer.add(chunk)
        self.counts.add(item.endpoint, "captured", len(chunk.records))
        if buffer.rows >= self.settings.file_records:
            self._flush(item.endpoint)

    def _flush_due(self) -> None:
        deadline = time.monotonic() - self.settings.flush_seconds
        for endpoint, buffer in list(self._buffers.items()):
            if buffer.started <= deadline:
                self._flush(endpoint)

    def _chunk(self, item: _Item) -> Chunk | None:
        """The request's records beside their answers (None when there are none)."""
        records: list[Mapping[str, Any]] = []
        labels: list[int] = []
        distances: list[float] = []
        for part, part_labels, part_distances in item.scored:
            records += part
            labels += part_labels
            distances += part_distances
        if not records:
            return None
        return Chunk(round(item.at * 1000), item.version, item.request, records, labels,
                     distances, item.names)

    def _private(self, table: pa.Table) -> pa.Table:
        """The PII fields of a block hashed, or left out."""
        for name in self._pii:
            column = INPUT_PREFIX + name
            if column not in table.column_names:
                continue
            index = table.column_names.index(column)
            if self.settings.pii_action == "omit":
                table = table.remove_column(index)
            else:
                table = table.set_column(index, column, hashed(table.column(index), self._hash))
        return table

    def _hash(self, value: Any) -> str | None:
        key = value if isinstance(value, str) else (
            orjson.dumps(value).decode() if isinstance(value, dict | list)
            else category_key(value))
        if key is None:
            return None
        return hmac.new(self._key, key.encode(), hashlib.sha256).hexdigest()

    def _flush(self, endpoint: str) -> None:
        buffer = self._buffers.pop(endpoint, None)
        if buffer is None or buffer.rows == 0:
            return
        folder = self._folders.get(endpoint)
        if folder is None:
            folder = self._folders[endpoint] = CaptureFolder(
                self._artifacts, endpoint, self._s3_endpoint_url)
        first = datetime.fromtimestamp(buffer.first_ms / 1000, UTC)
        self._files += 1
        name = (f"{first:%Y-%m-%d}/{first:%H%M%S}.{first.microsecond // 1000:03d}-"
                f"{os.getpid()}-{self._files}.parquet")
        try:
            folder.write(name, parquet_bytes(buffer.table()))
            folder.keep_within(int(self.settings.max_mb * 1024 * 1024))
        except Exception as exc:  # a full disk or S3 outage must not stop the worker
            self.counts.add(endpoint, "failed", buffer.rows)
            print(f"custseg: capture of {endpoint}: cannot write {folder.uri}/{name}: "
                  f"{type(exc).__name__}: {exc}", flush=True)

    # -- shutdown ----------------------------------------------------------------------------
    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Write what is queued and buffered, then stop the thread (waits at most
        `timeout`)."""
        if not self._thread.is_alive():
            return
        self._stopping.set()
        self._thread.join(timeout)
