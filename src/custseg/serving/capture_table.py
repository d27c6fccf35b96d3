"""Captured requests as capture files' tables (`io/capture_files` has the columns), in
one of two layouts:

* records (`chunk_table`): a row per record, its fields as `input.FIELD` columns. Used
  when the endpoint has PII fields, which must be hashed or left out before anything is
  written. A request is kept as the scorer parsed it (its records, as orjson made them,
  with their cluster ids and distances) and `pa.Table.from_pylist` converts the records
  in C++: about 0.5 ms per 1,000 records. Fields whose values do not share a type (30
  and "30" in one block) are converted field by field, as text.
* requests (`requests_table`): a row per request, its body as sent and the answers as
  lists: nothing is parsed or converted per record, so a captured 1,000-record batch
  costs the worker some 20 us instead of a millisecond. `expand_requests` turns such a
  table into the records layout when it is read (`custseg monitor`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from custseg.core.preprocessing import category_key

__all__ = ["INPUT_PREFIX", "Chunk", "Request", "chunk_table", "expand_requests", "hashed",
           "is_requests_table", "requests_table"]

INPUT_PREFIX = "input."  # the request's fields are the columns input.NAME


@dataclass(frozen=True)
class Chunk:
    """One captured request: its records beside their cluster ids and distances."""

    time_ms: int
    version: str
    request: str
    records: list[Mapping[str, Any]]
    labels: list[int]
    distances: list[float]
    names: Sequence[str]  # segment names by cluster id


@dataclass(frozen=True)
class Request:
    """One captured request as sent: its body, and its answers in order."""

    time_ms: int
    version: str
    request: str
    content_type: str
    body: bytes
    labels: list[int]
    distances: list[float]
    names: Sequence[str]  # segment names by cluster id


def requests_table(requests: list[Request]) -> pa.Table:
    """The requests layout: time, model_version, request, content_type, body, cluster
    (list), distance (list), segment_names (the model's, as a JSON list)."""
    names = {id(r.names): orjson.dumps(list(r.names)).decode() for r in requests}
    return pa.table({
        "time": pa.array([r.time_ms for r in requests], pa.timestamp("ms", "UTC")),
        "model_version": pa.array([r.version for r in requests], pa.string()),
        "request": pa.array([r.request for r in requests], pa.string()),
        "content_type": pa.array([r.content_type for r in requests], pa.string()),
        "body": pa.array([r.body for r in requests], pa.binary()),
        "cluster": pa.array([r.labels for r in requests], pa.list_(pa.int32())),
        "distance": pa.array([r.distances for r in requests], pa.list_(pa.float64())),
        "segment_names": pa.array([names[id(r.names)] for r in requests], pa.string()),
    })


def is_requests_table(table: pa.Table) -> bool:
    return "body" in table.column_names


def expand_requests(table: pa.Table, columns: Sequence[str]) -> pa.Table | None:
    """A requests-layout table in the records layout: each body parsed as the endpoint
    parsed it (`columns`: the model's inputs, for CSV bodies without a header). A body
    that no longer parses (a model with other inputs) gives its records with no fields;
    None when the table holds no records."""
    from custseg.serving.wire import WireError, parse_body

    chunks = []
    rows = table.to_pylist()
    for row in rows:
        labels, distances = row["cluster"], row["distance"]
        try:
            records = parse_body(row["body"], row["content_type"], columns)
        except WireError:
            records = []
        if len(records) != len(labels):
            records = [{} for _ in labels]
        chunks.append(Chunk(int(row["time"].timestamp() * 1000), row["model_version"],
                            row["request"], list(records), labels, distances,
                            orjson.loads(row["segment_names"])))
    chunks = [c for c in chunks if c.records]
    return chunk_table(chunks) if chunks else None


def hashed(column: pa.ChunkedArray, digest: Callable[[Any], str | None]) -> pa.ChunkedArray:
    """`digest` of each value (each distinct value once); missing values stay missing."""
    encoded = (column.combine_chunks() if column.num_chunks else pa.array([], column.type)
               ).dictionary_encode()
    digests = pa.array([digest(v) for v in encoded.dictionary.to_pylist()], pa.string())
    return pa.chunked_array([pc.take(digests, encoded.indices)])


def _repeat(values: list[Any], counts: list[int], kind: pa.DataType) -> pa.Array:
    """Each of `values` repeated `counts` times, in C++ (a take by repeated positions)."""
    positions = np.repeat(np.arange(len(values), dtype=np.int32), counts)
    return pc.take(pa.array(values, kind), pa.array(positions))


def _inputs(records: list[Mapping[str, Any]]) -> pa.Table:
    """The records' fields as columns: integers as float64, else as Arrow infers them;
    a field of mixed types as text."""
    try:
        table = pa.Table.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        names = list(dict.fromkeys(name for record in records for name in record))
        table = pa.table({name: _field([r.get(name) for r in records]) for name in names})
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_integer(column.type) or pa.types.is_null(column.type):
            column = column.cast(pa.float64())
        elif pa.types.is_nested(column.type):
            column = pa.chunked_array([_field(column.to_pylist())])
        columns[INPUT_PREFIX + name] = column
    return pa.table(columns)


def _field(values: list[Any]) -> pa.Array:
    present = [v for v in values if v is not None]
    if present and all(type(v) is bool for v in present):
        return pa.array(values, pa.bool_())
    if all(type(v) in (int, float) for v in present):
        return pa.array(values, pa.float64())
    return pa.array([None if v is None else _text(v) for v in values], pa.string())


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return category_key(value) or ""


def chunk_table(chunks: list[Chunk]) -> pa.Table:
    """The chunks' records as one table: time, model_version, request, cluster, segment,
    distance, then input.FIELD for each field sent."""
    counts = [len(c.records) for c in chunks]
    labels = pa.array([label for c in chunks for label in c.labels], pa.int32())
    if all(c.names == chunks[0].names for c in chunks):  # one model: one lookup
        segments = pc.take(pa.array(list(chunks[0].names), pa.string()), labels)
    else:
        segments = pa.concat_arrays([
            pc.take(pa.array(list(c.names), pa.string()), pa.array(c.labels, pa.int32()))
            for c in chunks])
    meta = pa.table({
        "time": _repeat([c.time_ms for c in chunks], counts, pa.timestamp("ms", "UTC")),
        "model_version": _repeat([c.version for c in chunks], counts, pa.string()),
        "request": _repeat([c.request for c in chunks], counts, pa.string()),
        "cluster": labels,
        "segment": segments,
        "distance": pa.array([d for c in chunks for d in c.distances], pa.float64()),
    })
    inputs = _inputs([r for c in chunks for r in c.records])
    for name in inputs.column_names:
        meta = meta.append_column(name, inputs.column(name))
    return meta
