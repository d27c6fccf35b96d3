"""Batch scoring: a whole CSV or Parquet file (local or S3) through a model, streamed.

The input is read in blocks (CSV: pyarrow's streaming reader with every column as text,
so no value can break a block's types; Parquet: row batches), each block is validated,
scored and written out before the next is read: memory stays constant whatever the file
size. The output is the input's columns plus `cluster`, `segment` and `distance`. Rows
that fail validation (a numeric field that is not a number, an infinite value) go to a
reject file with the reason, unless `strict`, which stops at the first one instead.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from custseg.artifact.scorer import Model
from custseg.core.preprocessing import NUMBER, encode
from custseg.errors import DataError
from custseg.io.data import (
    decompressed_head,
    detect_delimiter,
    header_names,
    publish,
    returning_memory_pool,
)

__all__ = ["PredictSummary", "predict_file", "rejects_path"]

SUFFIXES = (".csv.gz", ".csv", ".parquet", ".pq", ".txt", ".tsv")


def rejects_path(output_uri: str) -> str:
    """Where rejected rows go by default: `out.csv.gz` -> `out.rejects.csv.gz`."""
    for suffix in SUFFIXES:
        if output_uri.lower().endswith(suffix):
            return output_uri[: -len(suffix)] + ".rejects" + output_uri[-len(suffix):]
    return output_uri + ".rejects"

BLOCK_BYTES = 2 << 20  # parse blocks: the reader's read-ahead makes memory a few times this
Progress = Callable[[int], None]  # bytes read so far


@dataclass(frozen=True)
class PredictSummary:
    rows: int
    scored: int
    rejected: int
    output: str
    rejects: str | None


def _kind(uri: str) -> str:
    lower = uri.lower()
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if lower.endswith((".csv", ".csv.gz", ".txt", ".tsv")):
        return "csv"
    raise DataError(f"{uri}: expected a .csv, .csv.gz or .parquet file")


def _fs(uri: str, s3_endpoint_url: str | None) -> Any:
    if uri.startswith("s3://"):
        from custseg.io.data import s3_filesystem

        return s3_filesystem(s3_endpoint_url)
    import fsspec

    return fsspec.filesystem("file")


def _batches(uri: str, s3_endpoint_url: str | None, progress: Progress,
             malformed: list[str]) -> Iterator[pa.RecordBatch]:
    """The input's record batches; CSV lines with the wrong number of values are skipped
    and described in `malformed` (they go to the reject file)."""
    try:
        yield from _read_batches(uri, s3_endpoint_url, progress, malformed)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"cannot read {uri}: {exc}") from exc


def _read_batches(uri: str, s3_endpoint_url: str | None, progress: Progress,
                  malformed: list[str]) -> Iterator[pa.RecordBatch]:
    fs = _fs(uri, s3_endpoint_url)
    path = uri.removeprefix("s3://")
    try:
        raw = fs.open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"input not found: {uri}") from None
    with raw:
        if _kind(uri) == "parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(raw)
            for batch in parquet.iter_batches(batch_size=65536):
                progress(raw.tell())
                yield batch
            return
        head = decompressed_head(raw.read(65536), uri)
        raw.seek(0)
        delimiter = detect_delimiter(head)
        names = header_names(head, delimiter)
        if not names:
            raise DataError(f"{uri} is empty (expected a header line and rows)")
        for name in dict.fromkeys(names):
            if names.count(name) > 1:
                raise DataError(f"{uri}: column {name!r} appears {names.count(name)} times in "
                                f"the header; every column needs a unique name")
        stream = pa.input_stream(pa.PythonFile(raw, mode="r"),
                                 compression="gzip" if uri.lower().endswith(".gz") else None)
        def skip(row: Any) -> str:
            where = f"line {row.number}" if row.number is not None else "a line"
            malformed.append(f"{where}: expected {row.expected_columns} values, "
                             f"found {row.actual_columns}: {row.text[:200]}")
            return "skip"

        reader = pacsv.open_csv(
            stream, read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=skip),
            # bytes, not text: a line of invalid UTF-8 is rejected, not the whole file
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.binary() for n in names}, strings_can_be_null=True))
        for batch in reader:
            progress(raw.tell())
            yield batch


def _as_text(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, np.ndarray, list[str | None]]:
    """A CSV batch read as bytes, as text: rows with invalid UTF-8 (their values become
    null) and rows whose values hold line breaks (an unterminated quote swallows the
    lines after it) are marked bad, with the reason."""
    n = batch.num_rows
    bad = np.zeros(n, dtype=bool)
    reasons: list[str | None] = [None] * n
    columns = []
    for name, col in zip(batch.schema.names, batch.columns, strict=True):
        if not (pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type)):
            columns.append(col)
            continue
        try:
            text = col.cast(pa.string())
        except pa.ArrowInvalid:  # find the rows: rare, so per value
            values = []
            for i, v in enumerate(col.to_pylist()):
                try:
                    values.append(None if v is None else v.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    values.append(None)
                    if not bad[i]:
                        reasons[i] = f"{name}: not valid UTF-8 ({exc.reason} at byte {exc.start})"
                    bad[i] = True
            text = pa.array(values, pa.string())
        # a plain substring search (no regex): this runs over every value of the file
        breaks = np.asarray(pc.fill_null(pc.match_substring(text, "\n"), False)
                            .to_numpy(zero_copy_only=False), dtype=bool)
        for row in np.flatnonzero(breaks & ~bad).tolist():
            lines = len([part for part in str(text[row].as_py()).splitlines() if part])
            reasons[row] = (f"{name}: a value spans {lines} lines (an unterminated quote? "
                          f"the lines after it are inside this value)")
        bad |= breaks
        columns.append(text)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names), bad, reasons


def _invalid(batch: pa.RecordBatch, model: Model, bad: np.ndarray,
             reasons: list[str | None]) -> tuple[np.ndarray, list[str | None]]:
    """Rows that cannot be scored, and why (None for good rows), added to `bad`."""
    names = batch.schema.names
    for column in model.input_columns:
        if column not in names:
            raise DataError(f"the input has no column {column!r} (the model needs "
                            f"{', '.join(model.input_columns)})")
    for column in model.transform.numeric:
        values = batch.column(names.index(column))
        fmt = model.transform.dates.get(column)
        if fmt is not None:
            wrong = _bad_dates(values, fmt)
            for i in np.flatnonzero(wrong & ~bad):
                reasons[i] = f"{column}: {values[int(i)].as_py()!r} is not a date ({fmt})"
            bad |= wrong
            continue
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            ok = pc.fill_null(pc.match_substring_regex(values, NUMBER), True)
            ok = pc.and_(ok, pc.invert(pc.match_substring_regex(
                values, r"^\s*[-+]?(inf|infinity|nan)\s*$", ignore_case=True)))
            wrong = np.asarray(ok.to_numpy(zero_copy_only=False) == 0)
            # a number too large for a double (1e309) parses as infinite
            numbers = pc.cast(pc.if_else(ok, pc.utf8_trim_whitespace(values),
                                         pa.scalar(None, pa.string())), pa.float64())
            wrong |= np.isinf(np.asarray(numbers.fill_null(0.0).to_numpy(zero_copy_only=False)))
        elif pa.types.is_floating(values.type):
            floats = values.to_numpy(zero_copy_only=False)
            wrong = np.isinf(floats)
        else:
            continue
        for i in np.flatnonzero(wrong & ~bad):
            reasons[i] = f"{column}: {values[int(i)].as_py()!r} is not a finite number"
        bad |= wrong
    return bad, reasons


def _bad_dates(values: pa.Array, fmt: str) -> np.ndarray:
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return np.zeros(len(values), dtype=bool)
    text = pc.utf8_trim_whitespace(values)
    present = pc.and_(pc.is_valid(text), pc.not_equal(text, ""))
    if fmt == "iso":
        parsed = pc.strptime(text, format="%Y-%m-%d", unit="s", error_is_null=True)
        parsed = pc.coalesce(parsed, pc.strptime(text, format="%Y-%m-%dT%H:%M:%S", unit="s",
                                                 error_is_null=True),
                             pc.strptime(text, format="%Y-%m-%d %H:%M:%S", unit="s",
                                         error_is_null=True))
    else:
        parsed = pc.strptime(text, format=fmt, unit="s", error_is_null=True)
    wrong = pc.fill_null(pc.and_(present, pc.is_null(parsed)), False)
    return np.asarray(wrong.to_numpy(zero_copy_only=False), dtype=bool)


@contextmanager
def _sink(uri: str, s3_endpoint_url: str | None) -> Iterator[IO[bytes]]:
    """A file to write `uri` through: a temporary file renamed (or uploaded) on success."""
    local = not uri.startswith("s3://")
    folder = Path(uri).parent if local else Path(tempfile.gettempdir())
    if local and not folder.is_dir():
        raise DataError(f"cannot write {uri}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".custseg-predict-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        if local:
            publish(tmp, uri)
        else:
            _fs(uri, s3_endpoint_url).put_file(tmp, uri.removeprefix("s3://"))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class _Writer:
    def __init__(self, f: IO[bytes], kind: str, gzip: bool = False) -> None:
        self.kind = kind
        self.f: Any = pa.CompressedOutputStream(pa.PythonFile(f, mode="w"), "gzip") if gzip \
            else f
        self.writer: Any = None

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            if self.kind == "parquet":
                import pyarrow.parquet as pq

                self.writer = pq.ParquetWriter(self.f, table.schema)
            else:
                self.writer = pacsv.CSVWriter(self.f, table.schema)
        self.writer.write_table(table)

    def close(self, schema: pa.Schema | None = None) -> None:
        if self.writer is None:
            if schema is None:
                return
            self.write(schema.empty_table())  # no rows at all: still a file with a header
        self.writer.close()
        if isinstance(self.f, pa.CompressedOutputStream):
            self.f.close()


def _rows_from(first: int) -> Callable[[int], str]:
    """Name a row of the good rows of a block that starts at data row `first`."""
    return lambda r: f"data row {first + r} or later"


def _same_place(a: str, b: str) -> bool:
    if a.startswith("s3://") or b.startswith("s3://"):
        return a.rstrip("/") == b.rstrip("/")
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _check_distinct(input_uri: str, output_uri: str, rejects_uri: str | None) -> None:
    """Refuse to write over the input, or to write rejects over the output."""
    if _same_place(input_uri, output_uri):
        raise DataError(f"--output {output_uri} is the input file: choose another output "
                        f"(the input would be overwritten)")
    if rejects_uri and _same_place(rejects_uri, output_uri):
        raise DataError(f"--rejects {rejects_uri} is the output file: choose another place "
                        f"for the rejected rows")
    if rejects_uri and _same_place(rejects_uri, input_uri):
        raise DataError(f"--rejects {rejects_uri} is the input file: choose another place "
                        f"for the rejected rows")


def _typed(table: pa.Table, model: Model) -> pa.Table:
    """CSV text columns the model reads as numbers, as float64 (validated already), so a
    Parquet output keeps them numeric."""
    for name in model.transform.numeric:
        if name in model.transform.dates or name not in table.column_names:
            continue
        i = table.column_names.index(name)
        col = table.column(i)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            text = pc.utf8_trim_whitespace(col)
            text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
            table = table.set_column(i, name, pc.cast(text, pa.float64()))
    return table


def predict_file(model: Model, input_uri: str, output_uri: str, *, rejects_uri: str | None,
                 strict: bool = False, s3_endpoint_url: str | None = None,
                 progress: Progress = lambda _: None) -> PredictSummary:
    """Score every row of `input_uri` into `output_uri` (see the module docstring).

    The reject file is written only when some rows were rejected.
    """
    out_kind = _kind(output_uri)
    _check_distinct(input_uri, output_uri, rejects_uri)
    pa.set_memory_pool(returning_memory_pool())  # freed blocks go back: constant memory
    names = model.meta.get("segment_names") or [str(i) for i in range(model.k)]
    segment_of = np.asarray(names, dtype=object)
    rows = scored = rejected = 0
    with tempfile.TemporaryDirectory(prefix="custseg-rejects-") as scratch:
        reject_path = os.path.join(scratch, "rejects." + out_kind)
        with _sink(output_uri, s3_endpoint_url) as out_file, open(reject_path, "wb") as rf:
            gz = output_uri.lower().endswith(".gz")
            out, rejects = _Writer(out_file, out_kind, gz), _Writer(rf, out_kind, gz)
            schema = None
            malformed: list[str] = []
            for batch in _batches(input_uri, s3_endpoint_url, progress, malformed):
                if malformed:
                    if strict:
                        raise DataError(f"{input_uri} {malformed[0]} (without --strict such "
                                        f"lines go to the reject file)")
                    reason = pa.array(malformed, pa.string())
                    empty = {n: pa.nulls(len(malformed), pa.string())
                             for n in batch.schema.names}
                    rejects.write(pa.table({**empty, "reason": reason}))
                    rejected += len(malformed)
                    rows += len(malformed)
                    malformed.clear()
                batch, bad, reasons = _as_text(batch)
                bad, reasons = _invalid(batch, model, bad, reasons)
                if bad.any() and strict:
                    i = int(np.argmax(bad))
                    raise DataError(f"{input_uri} row {rows + i + 1}: {reasons[i]} "
                                    f"(without --strict such rows go to the reject file)")
                table = pa.Table.from_batches([batch])
                good = table.filter(pa.array(~bad)) if bad.any() else table
                if good.num_rows:
                    labels, distances = model.score_encoded(encode(
                        good, model.transform, locate=_rows_from(rows + 1)))
                else:  # every row of the block rejected
                    labels, distances = np.zeros(0, dtype=np.int32), np.zeros(0)
                if out_kind == "parquet":
                    good = _typed(good, model)
                result = (good.append_column("cluster", pa.array(labels))
                          .append_column("segment", pa.array(segment_of[labels], pa.string()))
                          .append_column("distance", pa.array(distances)))
                schema = result.schema
                out.write(result)
                if bad.any():
                    reason = pa.array([r for r in reasons if r is not None], pa.string())
                    rejects.write(table.filter(pa.array(bad)).append_column("reason", reason))
                rows += batch.num_rows
                scored += good.num_rows
                rejected += int(bad.sum())
            if schema is None:
                raise DataError(f"{input_uri} has no rows")
            out.close(schema)
            rejects.close()
        if rejected and rejects_uri:
            with _sink(rejects_uri, s3_endpoint_url) as f, open(reject_path, "rb") as src:
                while chunk := src.read(1 << 20):
                    f.write(chunk)
    return PredictSummary(rows, scored, rejected, output_uri,
                          rejects_uri if rejected and rejects_uri else None)
