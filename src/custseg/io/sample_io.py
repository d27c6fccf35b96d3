"""Writing synthetic customers to CSV (the edge of `custseg sample`)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from custseg.core.sample import CHUNK_ROWS, iter_customer_chunks
from custseg.errors import DataError
from custseg.io.data import publish

__all__ = ["write_sample"]


def write_sample(path: Path, *, rows: int, segments: int, seed: int, console: Any = None) -> None:
    """Write `rows` customers to `path` (gzip when it ends in .gz), atomically."""
    from rich.progress import Progress

    path = Path(path)
    if not path.parent.exists():
        raise DataError(f"cannot write {path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        compression = "gzip" if path.suffix == ".gz" else None
        with (
            pa.output_stream(tmp, compression=compression) as sink,
            Progress(console=console, transient=True) as progress,
        ):
            task = progress.add_task("Writing customers", total=rows)
            writer = None
            for table, _ in iter_customer_chunks(rows, segments, seed):
                if writer is None:
                    writer = pacsv.CSVWriter(
                        sink, table.schema, write_options=pacsv.WriteOptions(quoting_style="needed")
                    )
                writer.write_table(table)
                progress.advance(task, min(CHUNK_ROWS, table.num_rows))
            if writer is not None:
                writer.close()
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
