"""Data capture: a sampled share of the requests and their responses, written off the
request path to Parquet files (`io/capture_files` has the layout).

On the request path a worker draws a random number per request; a sampled one is put
aside after its response is sent (`offer`: a list append, nothing copied or parsed
again): its body as sent and its answers, and, when the endpoint has PII fields, the
records the scorer parsed. The event loop turns what is put aside into Arrow
(`capture_table`): a file's worth at a time in the requests layout (a row per request
with its body: one table and one Parquet encoding per `file_records` records), or
`BLOCK_ROWS` records at a time in the records layout (with PII fields: a row per record
with those fields hashed or left out, about 0.5 ms per 1,000 records), and encodes a
file once `file_records` records are buffered. A background thread per worker writes
the files (and what is left after `flush_seconds`), and removes the endpoint's oldest
files beyond `max_mb`. Requests put aside for over
`IDLE_SECONDS` (little traffic) are converted by the thread.

Why the event loop converts: Arrow releases the GIL in each of its calls, and a writer
thread making a dozen small calls per block made the event loop hand the GIL over a
dozen times per captured batch: 10% capture of 1,000-record batches cost 40% of a
worker's CPU that way. The thread's own calls (one Parquet encoding and one write per
file) are few.

When the queue is full (`queue_size` requests waiting, or requests of over
`MAX_PENDING_BYTES`), a sampled request's records are dropped and counted: capture never
makes a request wait, and the worker's memory stays bounded. `close` (the worker's
graceful shutdown) writes what is put aside, queued and buffered.

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
from custseg.serving.capture_table import (
    INPUT_PREFIX,
    Chunk,
    Request,
    chunk_table,
    hashed,
    requests_table,
)
from custseg.serving.metrics import CaptureCounts
from custseg.serving.settings import CaptureSettings

__all__ = ["BLOCK_ROWS", "MAX_PENDING_BYTES", "CaptureWriter", "pii_key"]

MAX_PENDING_BYTES = 64 * 1024 * 1024  # request bodies waiting for the writer, per worker
BLOCK_ROWS = 1000  # records put aside before the event loop turns them into Arrow
IDLE_SECONDS = 1.0  # records put aside longer than this are converted by the writer
KEY_FILE = "capture.key"
CLOSE_TIMEOUT = 8.0  # seconds the shutdown waits for the last file (the grace is 12)
# how often the writer thread looks at its queue: a request never wakes it (a wake-up per
# captured request cost the event loop a GIL hand-over each time), and each look takes
# the GIL from a busy event loop too (4 looks a second, not 20: see RESULTS.md)
POLL_SECONDS = 0.25


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 2 us more
class _Item:
    """A sampled request as it left the request path: its records as the scorer parsed
    them, with their cluster ids and distances (nothing parsed again, nothing copied)."""

    endpoint: str
    version: str
    names: Sequence[str]  # segment names by cluster id
    at: float  # seconds since the epoch
    sequence: int  # the worker's count of captured requests (see `request`)
    scored: list[tuple[Sequence[Mapping[str, Any]], list[int], list[float]]]
    body: bytes
    content_type: str
    records: int

    @property
    def size(self) -> int:  # what the pending budget counts
        return len(self.body)

    @property
    def request(self) -> str:
        """The request's id: this worker's pid and the sequence number."""
        return f"{os.getpid()}-{self.sequence}"


@dataclass(frozen=True)
class _File:
    """A capture file encoded, waiting for the writer thread."""

    endpoint: str
    first_ms: int  # the time of its first record
    data: bytes
    size: int  # its requests' body bytes (what the pending budget counts)
    records: int


class _Buffer:
    """An endpoint's blocks waiting for their file."""

    def __init__(self, started: float, first_ms: int) -> None:
        self.started = started  # monotonic time of its first block
        self.first_ms = first_ms
        self.records = 0
        self.size = 0
        self._tables: list[pa.Table] = []

    def add(self, table: pa.Table, records: int, size: int) -> None:
        self._tables.append(table)
        self.records += records
        self.size += size

    def table(self) -> pa.Table:
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
        # requests put aside by the request path, not yet in Arrow (`_aside_lock` guards
        # the list's hand-over to whichever thread converts it)
        self._aside: list[_Item] = []
        self._aside_records = 0
        self._aside_since = 0.0  # monotonic time of the first one
        self._aside_lock = threading.Lock()
        # when what is put aside is converted: the records layout a block of BLOCK_ROWS
        # records at a time (its dicts are not kept long), the requests layout a file at a
        # time (one table and one encoding per file); and before the queue could fill
        self._block_records = min(BLOCK_ROWS if settings.pii else settings.file_records,
                                  settings.file_records)
        self._block_requests = max(1, min(BLOCK_ROWS, settings.queue_size // 2))
        self._queue: deque[_File] = deque()  # appended on the loop, popped by the writer
        self._stopping = threading.Event()
        self._offered_bytes = 0  # written by the request path only
        self._taken_bytes = 0  # see _done
        self._sequence = 0
        self._pii = frozenset(settings.pii)
        self._buffers: dict[str, _Buffer] = {}  # guarded by `_buffers_lock`
        self._buffers_lock = threading.Lock()
        self._folders: dict[str, CaptureFolder] = {}
        self._files = 0
        self._thread = threading.Thread(target=self._run, name="custseg-capture", daemon=True)

    def start(self) -> CaptureWriter:
        """Start the writer thread. Arrow's first conversion imports pandas (about a
        second): done here, at the worker's start, not at its first captured request."""
        pa.array([0])
        self._thread.start()
        return self

    @property
    def needs_records(self) -> bool:
        """Whether a captured request's parsed records are needed (the records layout, for
        PII fields), or its body and answers suffice."""
        return bool(self._pii)

    # -- the request path ------------------------------------------------------------------
    def sampled(self) -> bool:
        """Whether to capture this request (drawn once per request)."""
        return self._draw() < self.settings.sample

    def offer(self, endpoint: str, version: str, names: Sequence[str],
              scored: list[tuple[Sequence[Mapping[str, Any]], list[int], list[float]]],
              body: bytes, content_type: str, records: int) -> None:
        """Put a sampled request aside (its body, and `scoring.Observed.scored`: its
        records and answers), and turn what is put aside into Arrow once a block's worth
        is (see the module); drop (and count) it when the queue is full. Never blocks,
        never raises."""
        if (self._offered_bytes - self._taken_bytes + len(body) > MAX_PENDING_BYTES
                or len(self._aside) + len(self._queue) >= self.settings.queue_size):
            self.counts.add(endpoint, "dropped", records)
            return
        self._sequence += 1
        item = _Item(endpoint, version, names, time.time(), self._sequence, scored, body,
                     content_type, records)
        self._offered_bytes += item.size
        with self._aside_lock:
            if not self._aside:
                self._aside_since = time.monotonic()
            self._aside.append(item)
            self._aside_records += records
            full = (self._aside_records >= self._block_records
                    or len(self._aside) >= self._block_requests)
        if full:
            self._convert(self._take_aside())

    def _take_aside(self) -> list[_Item]:
        with self._aside_lock:
            items, self._aside, self._aside_records = self._aside, [], 0
        return items

    def _convert(self, items: list[_Item]) -> None:
        """Requests put aside, as Arrow blocks in their endpoints' buffers; a buffer of
        `file_records` records is encoded as a file for the writer thread (on the event
        loop under load, in the writer when traffic is light: see the module)."""
        by_endpoint: dict[str, list[_Item]] = {}
        for item in items:
            by_endpoint.setdefault(item.endpoint, []).append(item)
        for endpoint, mine in by_endpoint.items():
            size, records = sum(i.size for i in mine), sum(i.records for i in mine)
            try:
                table = self._records(mine) if self._pii else self._requests(mine)
            except Exception as exc:  # a bug must not fail a request or stop capture
                self._failed(endpoint, records, size, f"{type(exc).__name__}: {exc}")
                continue
            if table is None:
                self._done(size)
                continue
            with self._buffers_lock:
                buffer = self._buffers.get(endpoint)
                if buffer is None:
                    buffer = self._buffers[endpoint] = _Buffer(time.monotonic(),
                                                               round(mine[0].at * 1000))
                buffer.add(table, records, size)
                self.counts.add(endpoint, "captured", records)
                full = buffer.records >= self.settings.file_records
                if full:
                    del self._buffers[endpoint]
            if full:
                self._encode(endpoint, buffer)

    def _encode(self, endpoint: str, buffer: _Buffer) -> None:
        try:
            data = parquet_bytes(buffer.table())
        except Exception as exc:
            self._failed(endpoint, buffer.records, buffer.size, f"{type(exc).__name__}: {exc}")
            return
        self._queue.append(_File(endpoint, buffer.first_ms, data, buffer.size, buffer.records))

    def _done(self, size: int) -> None:
        """Body bytes no longer pending (written, or given up)."""
        with self._buffers_lock:  # both threads give bytes up
            self._taken_bytes += size

    def _failed(self, endpoint: str, records: int, size: int, why: str) -> None:
        self.counts.add(endpoint, "failed", records)
        self._done(size)
        print(f"custseg: capture of {endpoint} failed: {why}", flush=True)

    # -- the writer thread -----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            stopping = self._stopping.wait(POLL_SECONDS)
            if self._aside and (stopping or time.monotonic() - self._aside_since
                                > IDLE_SECONDS):
                self._convert(self._take_aside())  # little traffic: no one to wait for
            self._flush_due(everything=stopping)
            while self._queue:
                self._write(self._queue.popleft())
            if stopping:  # close(): what was put aside and buffered is written
                return

    def _flush_due(self, *, everything: bool = False) -> None:
        """Encode the buffers older than `flush_seconds` (all of them when stopping)."""
        deadline = time.monotonic() - self.settings.flush_seconds
        with self._buffers_lock:
            due = [(e, b) for e, b in self._buffers.items()
                   if everything or b.started <= deadline]
            for endpoint, _ in due:
                del self._buffers[endpoint]
        for endpoint, buffer in due:
            self._encode(endpoint, buffer)

    def _records(self, items: list[_Item]) -> pa.Table | None:
        """The records layout, PII fields hashed or left out."""
        chunks = [c for c in map(self._chunk, items) if c is not None]
        return self._private(chunk_table(chunks)) if chunks else None

    @staticmethod
    def _requests(items: list[_Item]) -> pa.Table:
        """The requests layout: each body as sent, with its answers."""
        requests = []
        for item in items:
            labels: list[int] = []
            distances: list[float] = []
            for _, part_labels, part_distances in item.scored:
                labels += part_labels
                distances += part_distances
            requests.append(Request(round(item.at * 1000), item.version, item.request,
                                    item.content_type, item.body, labels, distances,
                                    item.names))
        return requests_table(requests)

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

    def _write(self, file: _File) -> None:
        endpoint = file.endpoint
        folder = self._folders.get(endpoint)
        if folder is None:
            folder = self._folders[endpoint] = CaptureFolder(
                self._artifacts, endpoint, self._s3_endpoint_url)
        first = datetime.fromtimestamp(file.first_ms / 1000, UTC)
        self._files += 1
        name = (f"{first:%Y-%m-%d}/{first:%H%M%S}.{first.microsecond // 1000:03d}-"
                f"{os.getpid()}-{self._files}.parquet")
        try:
            folder.write(name, file.data)
            folder.keep_within(int(self.settings.max_mb * 1024 * 1024))
        except Exception as exc:  # a full disk or S3 outage must not stop the worker
            self.counts.add(endpoint, "failed", file.records)
            print(f"custseg: capture of {endpoint}: cannot write {folder.uri}/{name}: "
                  f"{type(exc).__name__}: {exc}", flush=True)
        finally:
            self._done(file.size)

    # -- shutdown ----------------------------------------------------------------------------
    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Write what is queued and buffered, then stop the thread (waits at most
        `timeout`)."""
        if not self._thread.is_alive():
            return
        self._stopping.set()
        self._thread.join(timeout)
