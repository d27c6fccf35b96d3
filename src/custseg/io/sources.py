"""Where the data is, and its content hash: the files behind a data location (a file, a
folder of CSVs, an `s3://` prefix), opening them, and the sha256 of their bytes that the
Train cache and the lineage key on.

Kept apart from `io/data` (which reads the rows with pyarrow) so that a run can start
hashing the data before pyarrow and numpy are even imported: `fingerprint_in_background`.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from custseg.config import CSV_SUFFIXES
from custseg.errors import DataError

__all__ = [
    "fingerprint",
    "fingerprint_in_background",
    "is_parquet",
    "list_sources",
    "open_source",
    "s3_filesystem",
]

PARQUET_SUFFIX = ".parquet"
_HASH_BLOCK = 1 << 20


def s3_filesystem(endpoint_url: str | None) -> Any:
    try:
        import s3fs
    except ImportError as exc:  # pragma: no cover - s3fs is a core dependency
        raise DataError("reading s3:// needs s3fs: uv sync") from exc
    kwargs: dict[str, Any] = {}
    if endpoint_url:
        kwargs["client_kwargs"] = {"endpoint_url": endpoint_url}
    return s3fs.S3FileSystem(**kwargs)


def _is_csv(name: str) -> bool:
    return name.lower().endswith(CSV_SUFFIXES)


def is_parquet(name: str) -> bool:
    return name.lower().endswith(PARQUET_SUFFIX)


def list_sources(location: str, *, s3_endpoint_url: str | None = None) -> list[str]:
    """The files behind a location: itself, or the CSV files of a folder/prefix, sorted
    (its Parquet files when it has no CSV: the Spark engine reads them)."""
    if location.startswith("s3://"):
        fs = s3_filesystem(s3_endpoint_url)
        path = location.removeprefix("s3://")
        bucket = path.split("/", 1)[0]
        try:
            if not fs.exists(bucket):
                raise DataError(f"S3 bucket {bucket!r} not found (data location {location})")
            if fs.isfile(path):
                return [location]
            found = fs.find(path.rstrip("/") + "/")
            names = [n for n in found if _is_csv(n)] or [n for n in found if is_parquet(n)]
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"cannot list {location}: {exc}") from exc
        if not names:
            raise DataError(f"no CSV files found at {location}")
        return ["s3://" + n for n in sorted(names)]
    p = Path(location)
    if p.is_file():
        return [str(p)]
    if p.is_dir():
        files = sorted(str(f) for f in p.iterdir() if f.is_file() and _is_csv(f.name)) or sorted(
            str(f) for f in p.iterdir() if f.is_file() and is_parquet(f.name))
        if not files:
            raise DataError(f"no CSV files (*.csv, *.csv.gz) in folder {p}")
        return files
    raise DataError(f"data not found: {location} (check data_uri and data_file in the config)")


def open_source(uri: str, *, s3_endpoint_url: str | None = None) -> IO[bytes]:
    """Open a file's raw bytes (not decompressed)."""
    try:
        if uri.startswith("s3://"):
            return s3_filesystem(s3_endpoint_url).open(uri.removeprefix("s3://"), "rb")  # type: ignore[no-any-return]
        return open(uri, "rb")
    except FileNotFoundError as exc:
        raise DataError(f"data not found: {uri}") from exc
    except Exception as exc:
        raise DataError(f"cannot open {uri}: {exc}") from exc


def _hash_file(uri: str, s3_endpoint_url: str | None) -> str:
    h = hashlib.sha256()
    with open_source(uri, s3_endpoint_url=s3_endpoint_url) as f:
        for block in iter(lambda: f.read(_HASH_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def _combine(per_file: list[str]) -> str:
    """One content hash for several files: the hash of their hashes, in order."""
    return (
        hashlib.sha256("".join(per_file).encode()).hexdigest()
        if len(per_file) > 1
        else (per_file[0])
    )


def fingerprint(location: str, *, s3_endpoint_url: str | None = None) -> tuple[list[str], str]:
    """The files at `location` and the sha256 of their content (the cache and lineage key)."""
    files = list_sources(location, s3_endpoint_url=s3_endpoint_url)
    return files, _combine([_hash_file(uri, s3_endpoint_url) for uri in files])


def fingerprint_in_background(location: str, *, s3_endpoint_url: str | None = None
                              ) -> Future[tuple[list[str], str]]:
    """`fingerprint(location)` computed on a thread of its own: it reads every byte of
    the data (23 ms at 1M rows, 0.25 s at 10M) and needs nothing else, so it runs while
    the process imports and opens the store. Its result (or error) comes with the
    future's `result()`."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="custseg-hash")
    try:
        return pool.submit(fingerprint, location, s3_endpoint_url=s3_endpoint_url)
    finally:
        pool.shutdown(wait=False)
