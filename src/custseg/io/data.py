"""Reading customer data: local files, folders of CSVs, `.csv.gz`, and `s3://` URIs.

This is an edge module: it touches files and S3 and returns an Arrow table plus where
each row came from, so that later errors can name the file and line.
Parsing is pyarrow's multi-threaded CSV reader.
"""

from __future__ import annotations

import csv as pycsv
import gzip
import io
import os
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from custseg.errors import DataError

__all__ = [
    "DataSet",
    "decompressed_head",
    "detect_delimiter",
    "fingerprint",
    "header_names",
    "is_parquet",
    "list_sources",
    "open_source",
    "publish",
    "read_data",
    "returning_memory_pool",
    "s3_filesystem",
]

from custseg.io.sources import (
    _combine,
    _hash_file,
    fingerprint,
    is_parquet,
    list_sources,
    open_source,
    s3_filesystem,
)

DELIMITERS = ",;\t|"


@dataclass
class DataSet:
    """An Arrow table read from one or more files, with the row offsets of each file."""

    table: pa.Table
    files: list[str]
    offsets: list[int]  # first global row index of each file
    sha256: str  # of the files' bytes, in order (the content hash used for lineage)
    delimiter: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        return int(self.table.num_rows)

    def release(self) -> None:
        """Drop the table (keeping files and offsets) to free its memory."""
        self.table = pa.table({})

    def locate(self, row: int) -> str:
        """Where global data row `row` (0-based) lives: file, data row and line number.

        Called only to report an error, so it may read the file again to count lines
        (the CSV reader skips blank lines, so row and line numbers can drift apart).
        """
        i = max(j for j, off in enumerate(self.offsets) if off <= row)
        local = row - self.offsets[i]
        line = _line_of_row(self.files[i], local, self.meta.get("s3_endpoint_url"))
        return f"{self.files[i]} row {local + 1} (line {line})"


def _line_of_row(uri: str, row: int, s3_endpoint_url: str | None) -> int:
    """The 1-based line of data row `row` (0-based), skipping blank lines like the reader."""
    try:
        with open_source(uri, s3_endpoint_url=s3_endpoint_url) as raw:
            stream: Any = gzip.GzipFile(fileobj=raw) if uri.lower().endswith(".gz") else raw
            seen = -1  # the header is the first non-blank line
            for number, line in enumerate(stream, start=1):
                if line.strip():
                    if seen == row:
                        return number
                    seen += 1
    except (OSError, EOFError, DataError):
        pass
    return row + 2  # best effort: one line per row after the header


def _read_bytes(uri: str, s3_endpoint_url: str | None) -> bytes:
    with open_source(uri, s3_endpoint_url=s3_endpoint_url) as f:
        return f.read()


def decompressed_head(raw: bytes, uri: str, size: int = 65536) -> bytes:
    if uri.lower().endswith(".gz"):
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as g:
                return g.read(size)
        except (OSError, EOFError) as exc:
            raise DataError(f"{uri} is not a valid gzip file: {exc}") from exc
    return raw[:size]


def detect_delimiter(head: bytes) -> str:
    """Guess the delimiter from the first lines; ',' when nothing else fits better."""
    text = head.decode("utf-8", errors="replace")
    lines = [ln for ln in text.splitlines()[:20] if ln.strip()]
    if len(lines) > 1 and not text.endswith("\n"):
        lines = lines[:-1]  # the last line may be cut mid-way
    if not lines:
        return ","
    try:
        return pycsv.Sniffer().sniff("\n".join(lines), delimiters=DELIMITERS).delimiter
    except pycsv.Error:
        counts = {d: lines[0].count(d) for d in DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","


def publish(tmp: str | Path, dest: str | Path) -> None:
    """Move a finished temporary file into place atomically, with the usual permissions
    (temporary files are created private)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, dest)


def returning_memory_pool() -> pa.MemoryPool:
    """A memory pool that gives freed memory back to the OS at once.

    Parsing a large CSV allocates transient buffers several times the size of the final
    table; Arrow's default pool keeps them, which at 10M rows doubled peak memory.
    jemalloc with decay 0 returns them immediately (system malloc where jemalloc is absent).
    """
    try:
        pool = pa.jemalloc_memory_pool()
        pa.jemalloc_set_decay_ms(0)
        return pool
    except (NotImplementedError, pa.ArrowNotImplementedError):
        return pa.system_memory_pool()


def _csv_source(uri: str, s3_endpoint_url: str | None) -> Any:
    """What pyarrow's CSV reader reads: a local path itself (pyarrow memory-maps and
    decompresses it by extension), an S3 object's bytes."""
    if not uri.startswith("s3://"):
        return uri
    raw = _read_bytes(uri, s3_endpoint_url)
    compression = "gzip" if uri.lower().endswith(".gz") else None
    return pa.input_stream(pa.BufferReader(raw), compression=compression)


def _parse(
    uri: str, delimiter: str, s3_endpoint_url: str | None, columns: list[str] | None = None
) -> pa.Table:
    parse = pacsv.ParseOptions(delimiter=delimiter)
    convert = pacsv.ConvertOptions(strings_can_be_null=True, include_columns=columns)
    read = pacsv.ReadOptions(use_threads=True, block_size=1 << 24)
    try:
        return pacsv.read_csv(
            _csv_source(uri, s3_endpoint_url),
            read_options=read,
            parse_options=parse,
            convert_options=convert,
            memory_pool=returning_memory_pool(),
        )
    except pa.ArrowInvalid as exc:
        msg = str(exc)
        if "Empty CSV file" in msg:
            with open_source(uri, s3_endpoint_url=s3_endpoint_url) as f:
                head = decompressed_head(f.read(65536), uri)
            if head.strip():  # a header line with no newline after it
                raise DataError(f"{uri} has a header but no data rows") from exc
            raise DataError(f"{uri} is empty (expected a header line and data rows)") from exc
        ragged = _ragged_row(uri, delimiter, s3_endpoint_url) if " columns, got " in msg else None
        if ragged is not None:
            record, expected, found, text = ragged
            line = _line_of_row(uri, record - 2, s3_endpoint_url)
            raise DataError(
                f"cannot parse {uri} row {record - 1} (line {line}) as CSV (delimiter "
                f"{delimiter!r}): expected {expected} fields like the header, found {found}: "
                f"{text!r}"
            ) from exc
        raise DataError(f"cannot parse {uri} as CSV (delimiter {delimiter!r}): {msg}") from exc
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {uri}: {exc}") from exc


def _ragged_row(uri: str, delimiter: str, s3_endpoint_url: str | None
                ) -> tuple[int, int, int, str] | None:
    """The first row whose number of fields is not the header's: its record number (the
    header is 1; blank lines are not counted), the fields expected and found, and its
    text. None if it cannot be found.

    Reads the file again on one thread: the multi-threaded reader does not number rows.
    """
    found: list[tuple[int, int, int, str]] = []

    def handler(row: Any) -> str:
        if row.number is not None:
            found.append((row.number, row.expected_columns, row.actual_columns, row.text))
        return "error"

    parse = pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=handler)
    # only a column that no file has: every row is split and counted, but no value is
    # converted (a column typed by its first block could fail on a later one first)
    convert = pacsv.ConvertOptions(include_columns=["\0"], include_missing_columns=True)
    try:
        with pacsv.open_csv(_csv_source(uri, s3_endpoint_url),
                            read_options=pacsv.ReadOptions(use_threads=False),
                            parse_options=parse, convert_options=convert) as reader:
            for _ in reader:
                pass
    except (pa.ArrowInvalid, OSError, EOFError, DataError):
        pass  # the handler's error, or another: the caller reports the first read's
    return found[0] if found else None


def _iter_heads(files: list[str], s3_endpoint_url: str | None) -> Iterator[tuple[str, bytes]]:
    for uri in files:
        with open_source(uri, s3_endpoint_url=s3_endpoint_url) as f:
            yield uri, f.read(65536)


def _concat(files: list[str], tables: list[pa.Table]) -> pa.Table:
    """Concatenate per-file tables, unifying types; a column text in one file and
    numeric in another becomes text (and is reported by row if declared numeric)."""
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    fixed = []
    for t in tables:
        columns = []
        for name in t.column_names:
            kinds = {str(other.schema.field(name).type) for other in tables}
            col = t.column(name)
            columns.append(col.cast(pa.string()) if len(kinds) > 1 else col)
        fixed.append(pa.table(columns, names=t.column_names))
    try:
        return pa.concat_tables(fixed, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(
            f"files {files[0]} to {files[-1]} do not share column types: {exc}"
        ) from exc


def header_names(head: bytes, delimiter: str) -> list[str] | None:
    """The column names on the first non-blank line (None if it is cut off)."""
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    for line in text.splitlines(keepends=True):
        if line.strip():
            if not line.endswith(("\n", "\r")) and len(head) >= 65536:
                return None
            return next(pycsv.reader([line.rstrip("\r\n")], delimiter=delimiter))
    return None


def read_data(
    location: str,
    *,
    delimiter: str = "auto",
    s3_endpoint_url: str | None = None,
    include: Collection[str] | None = None,
    exclude: Collection[str] = (),
    skip: Callable[[str], bool] | None = None,
    known_sha256: str | None = None,
) -> DataSet:
    """Read every CSV at `location` into one Arrow table (same header in every file).

    Only the columns in `include` (all when None), not in `exclude` and not named by
    `skip` are parsed: skipping an unused id column alone halves the parse time of a
    10M-row file. `meta["header"]` names every column of the files.
    """
    files = list_sources(location, s3_endpoint_url=s3_endpoint_url)
    if any(is_parquet(f) for f in files):
        raise DataError(f"{location} holds Parquet files: the local engine reads CSV; train "
                        "them with engine: spark (uv sync --extra spark)")
    heads = [
        (uri, decompressed_head(raw, uri)) for uri, raw in _iter_heads(files, s3_endpoint_url)
    ]
    for uri, head in heads:
        if not head.strip():
            raise DataError(f"{uri} is empty (expected a header line and data rows)")
    if delimiter == "auto":
        delimiter = detect_delimiter(heads[0][1])
    headers = [header_names(head, delimiter) for _, head in heads]
    first = headers[0]
    if first is not None:
        for name in dict.fromkeys(first):
            if first.count(name) > 1:
                raise DataError(
                    f"{files[0]}: column {name!r} appears {first.count(name)} times in the "
                    f"header; every column needs a unique name"
                )
        for uri, header in zip(files, headers, strict=True):
            if header is not None and header != first:
                raise DataError(
                    f"{uri} has columns {header}, but {files[0]} has "
                    f"{first}: every file in a folder must share one header"
                )
    columns = None
    if first is not None and (include is not None or exclude or skip is not None):
        columns = [c for c in first if (include is None or c in include) and c not in exclude
                   and not (skip is not None and skip(c))]
    if known_sha256 is not None:  # hashed already (see fingerprint)
        tables = [_parse(uri, delimiter, s3_endpoint_url, columns) for uri in files]
        per_file = [known_sha256]
    else:
        with ThreadPoolExecutor(max_workers=1) as pool:
            # the content hash reads the same bytes again, overlapping with parsing
            digests = pool.map(lambda u: _hash_file(u, s3_endpoint_url), files)
            tables = [_parse(uri, delimiter, s3_endpoint_url, columns) for uri in files]
            per_file = list(digests)
    for uri, t in zip(files, tables, strict=True):
        if t.num_rows == 0:
            raise DataError(f"{uri} has a header but no data rows")
        if t.column_names != tables[0].column_names:
            raise DataError(
                f"{uri} has columns {t.column_names}, but {files[0]} has "
                f"{tables[0].column_names}: every file in a folder must share one header"
            )
    offsets, total = [], 0
    for t in tables:
        offsets.append(total)
        total += t.num_rows
    table = tables[0] if len(tables) == 1 else _concat(files, tables)
    combined = _combine(per_file)
    return DataSet(
        table=table,
        files=files,
        offsets=offsets,
        sha256=combined,
        delimiter=delimiter,
        meta={"s3_endpoint_url": s3_endpoint_url, "header": first},
    )
