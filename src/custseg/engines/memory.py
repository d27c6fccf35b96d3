"""Will the local engine's training fit in this process's memory? Asked before reading.

The local engine holds every row in memory (the Arrow table, then the encoded features,
then PCA and KMeans on them). A table bigger than the memory this process may use would
get it killed by the kernel, or end in a `MemoryError` deep inside numpy: `check_fits`
refuses such a run up front, naming the file, its rows, the estimate, what is available
and what to do instead.

**The estimate** (`estimate_csv`). Rows: exact when the file is smaller than the sample,
else the files' size over the bytes per row of a parsed sample of the first file's first
`SAMPLE_BYTES` (decompressed, for `.gz`: sizes scaled by the sample's compression ratio),
averaged with the bytes a line of the last file's last `SAMPLE_BYTES` (uncompressed).
Memory: `rows x (Arrow's bytes per row of the columns read + PER_COLUMN_FACTOR x 8 x the
columns read)` plus `FIXED_BYTES`; the columns read are those the run parses (all, or
the declared ones), each standing for one float64 feature or category code.

Calibrated on whole `custseg run` processes on this 2-core machine: peak RSS
(`os.wait4`) less the resident memory when the check runs (~100 MB of imports).
`custseg sample` data (5 columns: an id, 3 numeric, a 3-level categorical; Arrow 42 B a
row): 300,000 / 1M / 3M rows added 58-63 / 120-127 / 288 MB, 77 B a row beyond ~35 MB; at 10M
rows benchmarks/RESULTS.md gives a peak of 1,040-1,047 MB (2.1-2.2x the float64 one-hot
feature matrix of 48 B a row), ~99 B a row. A wide table (1M rows: an id, 24 numeric
and 2 categorical columns; Arrow 213 B a row) added 448 MB, 464 B a row.
`PER_COLUMN_FACTOR` 0.9 and `FIXED_BYTES` 32 MB put the estimate just under every one
of these (54 / 107 / 260 MB, 423 MB wide, 798 MB at 10M rows): the check refuses what
clearly does not fit, never a run that would; what slips through ends in the
`MemoryError` that the local engine turns into the same message. The 10M and 50M-row
`custseg sample` files are estimated at 10.4M / 52.6M rows, 0.8 / 3.9 GB: both run on a
24 GiB machine.

**Address space.** `RLIMIT_AS` (`ulimit -v`) and `RLIMIT_DATA` count reserved, not
resident, memory: glibc reserves address space per thread arena and per thread stack,
numpy's and Arrow's allocators keep freed blocks reserved, and some reservations are
elastic (made when the limit allows, skipped when it does not: the same run had 1,520 MB
of address space at the check without a limit, 624 MB under one). Measured under
`RLIMIT_AS`: the smallest limit a run succeeds under, less the address space at the
check, was 555 / 757 / ~1,240 MB for 300,000 / 1M / 3M rows, i.e. ~3.5x the resident
estimate plus ~384 MB (`ADDRESS_SPACE_FACTOR`, `ADDRESS_SPACE_FIXED`). This is the
least certain figure: a limit just above the address space already reserved can be
refused although the run, its reservations skipped, would fit. Below the need, threads
fail to start, which can hang a thread pool or abort the process, so no message could
be given then: the check errs toward the real need.

**What is available** (`available`): the smallest of `MemAvailable` (/proc/meminfo),
each enclosing cgroup's memory limit less its working set (usage without inactive file
pages; cgroup v2 `memory.max`, v1 `memory.limit_in_bytes`), and `RLIMIT_AS` /
`RLIMIT_DATA` less the address space / data in use. Elsewhere than Linux, none is known
and the check passes (the `MemoryError` path still gives the clear message).
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pacsv

from custseg.errors import MemoryLimitError

__all__ = [
    "Need",
    "Room",
    "available",
    "check_fits",
    "estimate_csv",
    "out_of_memory",
]

SAMPLE_BYTES = 1 << 20  # decompressed bytes of the first file parsed for the estimate
PER_COLUMN_FACTOR = 0.9  # float64 copies of each column read, at the peak (see above)
FIXED_BYTES = 32 << 20  # what a run adds whatever its rows (libraries imported later)
ADDRESS_SPACE_FACTOR = 3.5  # address space reserved per resident byte (see above)
ADDRESS_SPACE_FIXED = 384 << 20  # and whatever the rows: thread stacks and arenas
MIB = 1 << 20
Kind = Literal["resident", "address space"]


@dataclass(frozen=True)
class Need:
    """What the local engine will add to the process's memory to train on `source`."""

    source: str
    rows: int
    rows_exact: bool
    resident: int  # bytes of resident memory
    address_space: int  # bytes of address space (what RLIMIT_AS / RLIMIT_DATA count)

    def of(self, kind: Kind) -> int:
        return self.resident if kind == "resident" else self.address_space

    @property
    def rows_text(self) -> str:
        return f"{self.rows:,} rows" if self.rows_exact else f"about {self.rows:,} rows"


@dataclass(frozen=True)
class Room:
    """Memory this process may still take under one limit."""

    bytes: int
    what: str  # e.g. "MemAvailable (/proc/meminfo)"
    kind: Kind


def _mb(n: int) -> str:
    return f"{n / MIB:,.0f} MB"


# -- the estimate ------------------------------------------------------------------------


def _size(uri: str, s3_endpoint_url: str | None) -> int:
    if uri.startswith("s3://"):
        from custseg.io.data import s3_filesystem

        return int(s3_filesystem(s3_endpoint_url).size(uri.removeprefix("s3://")))
    return os.path.getsize(uri)


def _head(uri: str, s3_endpoint_url: str | None) -> tuple[bytes, float]:
    """The first `SAMPLE_BYTES` of the file's text, and its compression ratio (1: none)."""
    from custseg.io.data import open_source

    with open_source(uri, s3_endpoint_url=s3_endpoint_url) as raw:
        if not uri.lower().endswith(".gz"):
            return raw.read(SAMPLE_BYTES), 1.0
        compressed = io.BytesIO(raw.read(SAMPLE_BYTES))
    chunks: list[bytes] = []
    with gzip.GzipFile(fileobj=compressed) as text:
        got = 0
        while got < SAMPLE_BYTES:
            try:
                chunk = text.read(min(1 << 16, SAMPLE_BYTES - got))
            except EOFError:  # the compressed sample ends mid-stream: keep what came out
                break
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    head = b"".join(chunks)
    return head, max(len(head) / max(compressed.tell(), 1), 1.0)


def _tail_bytes_per_row(uri: str, size: int, s3_endpoint_url: str | None) -> float | None:
    """Bytes a line in the file's last `SAMPLE_BYTES` (uncompressed files; None else): ids
    and counters grow longer down a file, so the head alone undercounts the bytes a row."""
    from custseg.io.data import open_source

    if uri.lower().endswith(".gz") or size <= 2 * SAMPLE_BYTES:
        return None
    with open_source(uri, s3_endpoint_url=s3_endpoint_url) as raw:
        raw.seek(size - SAMPLE_BYTES)
        tail = raw.read(SAMPLE_BYTES)
    tail = tail[tail.find(b"\n") + 1:]  # from the first whole line
    lines = tail.count(b"\n")
    return len(tail) / lines if lines else None


def _parse_sample(head: bytes, whole: bool, delimiter: str, include: Collection[str] | None,
                  exclude: Collection[str]) -> tuple[pa.Table, int]:
    """The sample's rows as the run parses them (its columns), and the bytes they took."""
    from custseg.io.data import detect_delimiter

    if not whole:
        head = head[: head.rfind(b"\n") + 1]
    first = head.find(b"\n") + 1
    if delimiter == "auto":
        delimiter = detect_delimiter(head[:65536])
    table = pacsv.read_csv(
        io.BytesIO(head),
        parse_options=pacsv.ParseOptions(delimiter=delimiter),
        convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
        read_options=pacsv.ReadOptions(use_threads=False))
    kept = [c for c in table.column_names
            if (include is None or c in include) and c not in exclude]
    return table.select(kept), len(head) - first


def estimate_csv(files: list[str], *, delimiter: str = "auto",
                 include: Collection[str] | None = None, exclude: Collection[str] = (),
                 s3_endpoint_url: str | None = None) -> Need | None:
    """The local engine's memory need for these CSV files (same header), or None when
    a sample cannot be parsed (reading then reports what is wrong).

    `include`/`exclude`: the columns the run parses, as `io.data.read_data` takes them.
    """
    try:
        sizes = [_size(uri, s3_endpoint_url) for uri in files]
        head, ratio = _head(files[0], s3_endpoint_url)
        whole = len(files) == 1 and sizes[0] <= SAMPLE_BYTES and len(head) < SAMPLE_BYTES
        table, sample_bytes = _parse_sample(head, whole, delimiter, include, exclude)
        tail = None if whole else _tail_bytes_per_row(files[-1], sizes[-1], s3_endpoint_url)
    except Exception:  # no estimate then: reading reports what is wrong, if anything
        return None
    if table.num_rows == 0:
        return None
    per_row = sample_bytes / table.num_rows
    if tail is not None:
        per_row = (per_row + tail) / 2
    rows = table.num_rows if whole else int(sum(sizes) * ratio / max(per_row, 1e-9))
    row_bytes = table.nbytes / table.num_rows + PER_COLUMN_FACTOR * 8 * table.num_columns
    resident = FIXED_BYTES + int(rows * row_bytes)
    address_space = int(ADDRESS_SPACE_FACTOR * resident) + ADDRESS_SPACE_FIXED
    source = files[0] if len(files) == 1 else f"{len(files)} files ({files[0]}, ...)"
    return Need(source, rows, whole, resident, address_space)


# -- what is available -------------------------------------------------------------------


def _meminfo(path: Path = Path("/proc/meminfo")) -> Room | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return Room(int(line.split()[1]) * 1024, "MemAvailable (/proc/meminfo)",
                            "resident")
    except OSError:
        pass
    return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def _stat(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _cgroup_rooms(proc_cgroup: Path = Path("/proc/self/cgroup"),
                  root: Path = Path("/sys/fs/cgroup")) -> list[Room]:
    """Each enclosing cgroup's limit less its working set (v2 and v1 hierarchies)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    rooms = []
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == "":  # v2
            base, files = root, ("memory.max", "memory.current", "memory.stat",
                                 "inactive_file")
        elif "memory" in controllers.split(","):  # v1
            base, files = root / "memory", ("memory.limit_in_bytes", "memory.usage_in_bytes",
                                            "memory.stat", "total_inactive_file")
        else:
            continue
        parts = Path(path.lstrip("/")).parts
        for depth in range(len(parts), -1, -1):
            folder = base.joinpath(*parts[:depth])
            limit, usage = _read_int(folder / files[0]), _read_int(folder / files[1])
            if limit is None or usage is None or limit >= 1 << 60:  # v1's "unlimited"
                continue
            working = usage - _stat(folder / files[2], files[3])
            rooms.append(Room(max(limit - working, 0),
                              f"the cgroup memory limit {_mb(limit)} ({folder / files[0]}) "
                              f"less its {_mb(working)} in use", "resident"))
    return rooms


def _status(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _rlimit_rooms() -> list[Room]:
    try:
        import resource
    except ImportError:  # not a POSIX system
        return []
    rooms = []
    for limit, status, name in ((resource.RLIMIT_AS, "VmSize", "RLIMIT_AS (ulimit -v)"),
                                (resource.RLIMIT_DATA, "VmData", "RLIMIT_DATA (ulimit -d)")):
        soft = resource.getrlimit(limit)[0]
        used = _status(status)
        if soft == resource.RLIM_INFINITY or used is None:
            continue
        rooms.append(Room(max(soft - used, 0),
                          f"{name} {_mb(soft)} less the {_mb(used)} this process has",
                          "address space"))
    return rooms


def available() -> list[Room]:
    """Every limit known on the memory this process may still take ([] elsewhere than
    Linux)."""
    rooms = [room for room in [_meminfo()] if room is not None]
    return rooms + _cgroup_rooms() + _rlimit_rooms()


# -- the verdict -------------------------------------------------------------------------

WHAT_TO_DO = ("train it with -p engine=spark (uv sync --extra spark), run where more "
              "memory is available, or train on a sample of the rows")


def check_fits(need: Need, rooms: list[Room]) -> None:
    """Raise MemoryLimitError when the need is above some room."""
    short = [room for room in rooms if need.of(room.kind) > room.bytes]
    if not short:
        return
    room = min(short, key=lambda r: r.bytes - need.of(r.kind))
    raise MemoryLimitError(
        f"{need.source} ({need.rows_text}) needs about {_mb(need.of(room.kind))} of "
        f"{room.kind} to train on the local engine, and {_mb(room.bytes)} is available "
        f"({room.what}): {WHAT_TO_DO}")


def out_of_memory(source: str, need: Need | None, exc: MemoryError) -> MemoryLimitError:
    """The clear error for a `MemoryError` raised while training on `source`."""
    detail = str(exc).strip() or "an allocation failed"
    at = f"{need.source} ({need.rows_text})" if need is not None else source
    return MemoryLimitError(
        f"ran out of memory training on {at} with the local engine ({detail}); "
        f"{_free_now()}: {WHAT_TO_DO}")


def _free_now() -> str:
    rooms = available()
    if not rooms:
        return "the memory available is not known here"
    room = min(rooms, key=lambda r: r.bytes)
    return f"{_mb(room.bytes)} is available ({room.what})"
