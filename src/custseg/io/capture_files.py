"""Captured traffic on disk: the Parquet files data capture writes and the monitor reads.

The layout, under the store's artifact location (a local folder or an `s3://` prefix):

    capture/<endpoint>/<YYYY-MM-DD>/<HHMMSS.mmm>-<pid>-<seq>.parquet

named after the time of the file's first record (UTC), so that names sort oldest
first. Two layouts (`serving/capture_table`): a row per scored record, with the columns
of `CAPTURE_COLUMNS` and the request's fields as `input.FIELD` columns (PII fields
hashed or left out), or, for endpoints without PII fields, a row per request with its
body as sent (`body`, `content_type`) and its answers as lists.

This module writes a file whole (a temporary file renamed, or one S3 put: a reader never
sees half a file), lists, removes and reads them; what goes in them is
`serving/capture`'s business.

Rotation (`keep_within`) works from an inventory of the folder: listed once, then kept
up to date with the files this process writes and removes, and listed again every
`RELIST_SECONDS` to see the other workers' files. Listing on every file written cost
O(files) each time (5 ms at 500 local files, an S3 LIST per file), and the folder holds
thousands before `max_mb` rotates them. Between listings the folder can exceed `max_mb`
by what the other workers wrote in that time.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from custseg.errors import DataError

__all__ = ["CAPTURE_COLUMNS", "CaptureFile", "CaptureFolder", "concat_tables", "parquet_bytes"]

# the columns every capture file has besides `input` (the request's fields)
CAPTURE_COLUMNS = ("time", "model_version", "request", "cluster", "segment", "distance")
RELIST_SECONDS = 60.0  # how often rotation lists the folder again (see module)


@dataclass(frozen=True)
class CaptureFile:
    path: str  # relative to the endpoint's capture folder: DATE/NAME.parquet
    size: int


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


class CaptureFolder:
    """One endpoint's capture folder, local or on S3."""

    def __init__(self, artifacts: str, endpoint: str, s3_endpoint_url: str | None = None
                 ) -> None:
        self.s3 = artifacts.startswith("s3://")
        base = artifacts.removeprefix("s3://").rstrip("/") if self.s3 else artifacts
        self.root = f"{base}/capture/{endpoint}"
        self.uri = ("s3://" if self.s3 else "") + self.root
        self._s3_endpoint_url = s3_endpoint_url
        self._fs: Any = None
        self._inventory: list[CaptureFile] | None = None  # sorted by path (see module)
        self._inventory_bytes = 0
        self._listed_at = 0.0

    def _filesystem(self) -> Any:
        if self._fs is None:
            from custseg.io.data import s3_filesystem

            self._fs = s3_filesystem(self._s3_endpoint_url)
        return self._fs

    # -- writing ---------------------------------------------------------------------------
    def write(self, relative: str, data: bytes) -> None:
        """Write a file whole (raises OSError, or the S3 client's error)."""
        if self.s3:
            with self._filesystem().open(f"{self.root}/{relative}", "wb") as f:
                f.write(data)
            self._noted(relative, len(data))
            return
        dest = Path(self.root) / relative
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".capture-", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            from custseg.io.data import publish

            publish(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._noted(relative, len(data))

    def _noted(self, relative: str, size: int) -> None:
        """A file this process wrote, in the inventory."""
        if self._inventory is not None:
            bisect.insort(self._inventory, CaptureFile(relative, size), key=lambda f: f.path)
            self._inventory_bytes += size

    def files(self) -> list[CaptureFile]:
        """Every capture file, oldest first."""
        if self.s3:
            fs = self._filesystem()
            try:
                found = fs.find(self.root + "/", detail=True)
            except FileNotFoundError:
                return []
            out = [CaptureFile(name[len(self.root) + 1:], int(info.get("size") or 0))
                   for name, info in found.items() if name.endswith(".parquet")]
        else:
            root = Path(self.root)
            if not root.is_dir():
                return []
            out = []
            for path in root.glob("*/*.parquet"):
                with contextlib.suppress(FileNotFoundError):  # removed by another worker
                    out.append(CaptureFile(path.relative_to(root).as_posix(),
                                           path.stat().st_size))
        return sorted(out, key=lambda f: f.path)

    def remove(self, relative: str) -> None:
        if self.s3:
            with contextlib.suppress(FileNotFoundError):
                self._filesystem().rm(f"{self.root}/{relative}")
            return
        with contextlib.suppress(FileNotFoundError):
            (Path(self.root) / relative).unlink()

    def keep_within(self, max_bytes: int) -> int:
        """Remove the oldest files until the folder holds at most `max_bytes`; the
        number removed."""
        if self._inventory is None or time.monotonic() - self._listed_at > RELIST_SECONDS:
            self._inventory = self.files()
            self._inventory_bytes = sum(f.size for f in self._inventory)
            self._listed_at = time.monotonic()
        removed = 0
        while self._inventory and self._inventory_bytes > max_bytes:
            oldest = self._inventory.pop(0)
            self.remove(oldest.path)
            self._inventory_bytes -= oldest.size
            removed += 1
        return removed

    # -- reading ---------------------------------------------------------------------------
    def _read(self, relative: str) -> pa.Table:
        if self.s3:
            with self._filesystem().open(f"{self.root}/{relative}", "rb") as f:
                return pq.read_table(f)
        return pq.read_table(Path(self.root) / relative)

    def read_since(self, since: datetime,
                   expand: Callable[[pa.Table], pa.Table | None] | None = None
                   ) -> pa.Table | None:
        """The records captured at or after `since` (None when there are none), from the
        files of the days that can hold them; a field typed differently in two files is
        read as text. `expand`: what turns a file of the requests layout into records
        (`serving/capture_table.expand_requests`); without it such files are left out."""
        first_day = (since - timedelta(days=1)).date().isoformat()  # a file may span midnight
        tables = []
        for f in self.files():
            if f.path.split("/", 1)[0] < first_day:
                continue
            try:
                table = self._read(f.path)
            except FileNotFoundError:
                continue  # rotated away while we read
            except (OSError, pa.ArrowInvalid) as exc:
                raise DataError(f"cannot read capture file {self.uri}/{f.path}: {exc}"
                                ) from exc
            table = table.filter(pc.greater_equal(
                table.column("time"), pa.scalar(since.astimezone(UTC), table.schema.field(
                    "time").type)))
            if "body" in table.column_names:  # the requests layout
                expanded = expand(table) if expand is not None and table.num_rows else None
                if expanded is None:
                    continue
                table = expanded
            if table.num_rows:
                tables.append(table)
        return concat_tables(tables) if tables else None


def concat_tables(tables: list[pa.Table]) -> pa.Table:
    """Tables whose columns may differ (fields sent by some requests only) or be typed
    differently (a number in one file, text in another: read as text)."""
    if len(tables) == 1:
        return tables[0]
    if all(t.schema == tables[0].schema for t in tables[1:]):  # the common case
        return pa.concat_tables(tables)
    types: dict[str, set[pa.DataType]] = {}
    for t in tables:
        for field in t.schema:
            types.setdefault(field.name, set()).add(field.type)
    fixed = []
    for t in tables:
        columns = {}
        for name, kinds in types.items():
            wanted = _common_type(kinds)
            if name in t.column_names:
                column = t.column(name)
                columns[name] = column if column.type == wanted else column.cast(wanted)
            else:
                columns[name] = pa.nulls(t.num_rows, wanted)
        fixed.append(pa.table(columns))
    return pa.concat_tables(fixed)


def _common_type(kinds: set[pa.DataType]) -> pa.DataType:
    real = {k for k in kinds if k != pa.null()}
    if not real:
        return pa.string()
    if len(real) == 1:
        return next(iter(real))
    if real <= {pa.float64(), pa.int64(), pa.bool_()}:
        return pa.float64()
    return pa.string()
