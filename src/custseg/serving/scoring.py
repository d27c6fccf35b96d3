"""A request body in, the response body out: parse, score, check and render.

Small bodies are scored in one go on the event loop. A big batch is scored in a thread,
and in pieces of about `CHUNK_BYTES`: a JSON list of records is cut at record
boundaries, and each piece is parsed, encoded, scored and rendered in turn. Parsing
6 MB of JSON in one call would hold the GIL for about 30 ms, and every one-record
request of the worker would wait behind it; a piece holds it for well under a
millisecond, and Python hands the GIL to the event loop between pieces.

Cutting is only an optimisation: a cut that falls inside a string leaves a piece that is
not valid JSON (its string never ends), and any piece that does not parse, or holds a
bad record, sends the whole body through the one-go path, whose error names the record
by its index in the whole request.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from custseg.errors import CustsegError
from custseg.serving.typed_records import TypedRecords
from custseg.serving.wire import JSON_TYPES, WireError, as_records, media_type, parse_body, render

__all__ = ["CHUNK_BYTES", "Observed", "check_distances", "record_chunks", "score_body",
           "score_response"]

CHUNK_BYTES = 128 * 1024
_WRAPPED = re.compile(rb'\A\s*\{\s*"(?:instances|dataframe_records|inputs)"\s*:\s*\[')
_WRAPPED_END = re.compile(rb"\]\s*\}\s*\Z")
_BOUNDARY = re.compile(rb"\}\s*,\s*\{")


@dataclass
class Observed:
    """What scoring a request reports besides its response: the categories the model
    never saw, per categorical column (`unseen`), and, when `keep` (data capture), the
    cluster ids and distances of the scored records (`scored`, in order), with the
    records themselves when `keep_records`."""

    unseen: list[int]
    keep: bool = False
    keep_records: bool = False  # the records too (capture's records layout), not only answers
    scored: list[tuple[Sequence[Mapping[str, Any]], list[int], list[float]]] = field(
        default_factory=list)

    def add(self, records: Sequence[Mapping[str, Any]], labels: list[int],
            distances: list[float]) -> None:
        if self.keep:
            self.scored.append((records if self.keep_records else (), labels, distances))


_TYPED: OrderedDict[int, tuple[Any, TypedRecords]] = OrderedDict()  # by id(model)
TYPED_MODELS = 16  # models whose record types a worker keeps (old versions drop out)
TYPED_BYTES = 2048  # smaller bodies (one record, a few) take the general path


def _typed(model: Any) -> TypedRecords:
    """The model's typed record decoder, made once per model."""
    entry = _TYPED.get(id(model))
    if entry is not None and entry[0] is model:
        _TYPED.move_to_end(id(model))
        return entry[1]
    t = model.transform
    typed = TypedRecords(list(t.numeric), set(t.dates), list(t.categorical))
    _TYPED[id(model)] = (model, typed)
    while len(_TYPED) > TYPED_MODELS:
        _TYPED.popitem(last=False)
    return typed


def _score_typed(model: Any, body: bytes, content_type: str, observed: Observed | None
                 ) -> tuple[list[int], list[float]] | None:
    """A JSON batch decoded into typed records and scored (see `typed_records`); None
    when the general path must take it. Not for a request kept for capture in the
    records layout, which needs the records as dicts."""
    if (len(body) < TYPED_BYTES or (observed is not None and observed.keep_records)
            or media_type(content_type) not in JSON_TYPES):
        return None
    typed = _typed(model)
    records = typed.decode(body)
    if records is None or len(records) < 2:
        return None
    try:
        encoded = model.encode_columns(typed.column(records), len(records))
    except (KeyError, TypeError, ValueError):
        return None
    return _score_encoded(model, encoded, (), observed)  # never keep_records here (see above)


def _score_encoded(model: Any, encoded: Any, records: Sequence[Mapping[str, Any]],
                   observed: Observed | None) -> tuple[list[int], list[float]]:
    """Score encoded records: their unseen categories counted, distances checked, and
    the answers (with `records`) reported to `observed`."""
    if observed is not None:
        model.count_unseen(encoded, observed.unseen)
    scored = model.score_encoded(encoded)
    check_distances(scored[1])
    labels, distances = scored[0].tolist(), scored[1].tolist()
    if observed is not None:
        observed.add(records, labels, distances)
    return labels, distances


def score_body(model: Any, body: bytes, content_type: str, observed: Observed | None = None
               ) -> tuple[list[int], list[float]]:
    """Parse a request body and score its records: cluster ids and distances."""
    done = _score_typed(model, body, content_type, observed)
    if done is not None:
        return done
    records = parse_body(body, content_type, model.input_columns)
    if len(records) > 1:
        return _score_encoded(model, model.encode_records(records), records, observed)
    # the common case, one record: plain Python, no numpy per call
    label, distance = model.score_record(
        records[0], None if observed is None else observed.unseen)
    labels, distances = [label], [distance]
    if not math.isfinite(distance):
        check_distances(distances)  # raises, naming the record
    if observed is not None:
        observed.add(records, labels, distances)
    return labels, distances


def check_distances(distances: Sequence[float] | np.ndarray) -> None:
    """A distance that overflowed (values near 1e200 in a model without clipping) would
    be sent as null: the record is refused instead, by number. (An array is checked in
    one numpy call: 1 us for 1,000 records instead of 22.)"""
    if isinstance(distances, np.ndarray):
        if np.isfinite(distances).all():
            return
        distances = distances.tolist()
    for i, d in enumerate(distances):
        if not math.isfinite(d):
            raise WireError(400, f"record {i}: its values are too large to score (the "
                                 f"distance to the nearest centroid overflows)")


def record_chunks(body: bytes, chunk_bytes: int = CHUNK_BYTES) -> list[bytes] | None:
    """A JSON list of record objects (bare, or wrapped in `instances`,
    `dataframe_records` or `inputs`) cut at record boundaries into JSON arrays of about
    `chunk_bytes` each; None for any other shape, or a body too small to cut."""
    wrapped = _WRAPPED.match(body)
    if wrapped is not None:
        end = _WRAPPED_END.search(body)
        if end is None:
            return None
        start, stop = wrapped.end(), end.start()
    else:
        stripped = body.strip()
        if not (stripped.startswith(b"[") and stripped.endswith(b"]")):
            return None
        offset = body.index(b"[")
        start, stop = offset + 1, offset + len(stripped) - 1
    if stop - start <= chunk_bytes:
        return None
    chunks, begin = [], start
    while True:
        cut = _BOUNDARY.search(body, begin + chunk_bytes, stop)
        if cut is None:
            chunks.append(b"[" + body[begin:stop] + b"]")
            return chunks
        chunks.append(b"[" + body[begin:cut.start() + 1] + b"]")
        begin = cut.end() - 1  # the next record's "{"


def _render_part(labels: list[int], distances: list[float], names: Sequence[str],
                 csv: bool) -> bytes:
    out, _ = render(labels, distances, names, "text/csv" if csv else "application/json")
    if csv:
        return out[out.index(b"\n") + 1:]  # the lines without the header
    return out[len(b'{"predictions":['):-2]  # the predictions without the brackets


def _score_chunks(model: Any, chunks: list[bytes], names: Sequence[str], csv: bool,
                  observed: Observed | None) -> tuple[bytes, str, int] | None:
    """The response for a body cut into chunks, or None when a chunk is not a valid
    list of good records (the caller then scores the whole body at once)."""
    parts, n = [], 0
    # what the chunks report, kept only when every chunk scores
    mine = Observed([0] * len(model.transform.categorical),
                    keep=observed is not None and observed.keep,
                    keep_records=observed is not None and observed.keep_records)
    try:
        for chunk in chunks:
            records = as_records(orjson.loads(chunk), model.input_columns)
            labels, distances = _score_encoded(model, model.encode_records(records), records,
                                               mine)
            parts.append(_render_part(labels, distances, names, csv))
            n += len(labels)
    except (orjson.JSONDecodeError, WireError, CustsegError):
        return None
    if observed is not None:
        for j, count in enumerate(mine.unseen):
            observed.unseen[j] += count
        observed.scored += mine.scored
    if csv:
        return b"cluster,segment,distance\n" + b"".join(parts), "text/csv", n
    return b'{"predictions":[' + b",".join(parts) + b"]}", "application/json", n


def score_response(model: Any, body: bytes, content_type: str, names: Sequence[str],
                   accept: str, *, chunked: bool = False, observed: Observed | None = None
                   ) -> tuple[bytes, str, int]:
    """The response body, its media type and the number of records scored. With
    `chunked`, a JSON list of records is scored piece by piece (see the module's doc).
    `observed` collects unseen categories (and the scored records, for data capture).
    Raises WireError or CustsegError for a request that cannot be scored."""
    csv = "text/csv" in accept.lower()
    if chunked and content_type.split(";", 1)[0].strip().lower() in ("application/json", ""):
        chunks = record_chunks(body)
        if chunks is not None:
            done = _score_chunks(model, chunks, names, csv, observed)
            if done is not None:
                return done
    labels, distances = score_body(model, body, content_type, observed)
    out, media = render(labels, distances, names, accept)
    return out, media, len(labels)
