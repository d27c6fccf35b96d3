"""The endpoint's wire format: request bodies in, responses out. Pure functions.

Requests (SPEC section 6): `application/json` as one record object, a list of records,
`{"instances": [...]}`, or MLflow's `{"dataframe_records": [...]}` /
`{"dataframe_split": {"columns": [...], "data": [[...]]}}`; `text/csv` rows, with a
header line naming the columns or in the model's input column order. Responses: JSON
`{"predictions": [{"cluster", "segment", "distance"}, ...]}`, or CSV with `Accept:
text/csv`.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

__all__ = ["WireError", "as_records", "media_type", "parse_body", "render"]

JSON_TYPES = ("application/json", "application/jsonlines", "")
CSV_TYPES = ("text/csv",)


class WireError(Exception):
    """A request the endpoint cannot take: HTTP status and a specific message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@functools.lru_cache(maxsize=256)  # a handful of distinct values in practice
def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _records_from_split(split: Any) -> list[Mapping[str, Any]]:
    if not isinstance(split, Mapping) or "columns" not in split or "data" not in split:
        raise WireError(400, 'dataframe_split must be {"columns": [...], "data": [[...]]}')
    columns, rows = split["columns"], split["data"]
    if not isinstance(columns, list) or not isinstance(rows, list):
        raise WireError(400, "dataframe_split: columns and data must be lists")
    for j, column in enumerate(columns):
        if not isinstance(column, str):
            raise WireError(400, f"dataframe_split: column {j} must be a name (a string), "
                                 f"found {type(column).__name__}")
    out: list[Mapping[str, Any]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            raise WireError(
                400, f"dataframe_split: data row {i} must be a list of {len(columns)} values"
            )
        out.append(dict(zip(columns, row, strict=True)))
    return out


def as_records(payload: Any, columns: Sequence[str], wrapped: bool = False
                ) -> list[Mapping[str, Any]]:
    if type(payload) is dict or isinstance(payload, Mapping):  # dict: what JSON gives
        for key in ("instances", "dataframe_records", "inputs"):
            if key in payload and not wrapped:  # one level of wrapping, no deeper
                return as_records(payload[key], columns, wrapped=True)
        if "dataframe_split" in payload:
            return _records_from_split(payload["dataframe_split"])
        return [payload]
    if isinstance(payload, list):
        if all(type(item) is dict for item in payload):  # the common case, checked fast
            return payload
        records: list[Mapping[str, Any]] = []
        for i, item in enumerate(payload):
            if isinstance(item, Mapping):
                records.append(item)
            elif isinstance(item, list) and len(item) == len(columns):
                records.append(dict(zip(columns, item, strict=True)))
            else:
                raise WireError(
                    400,
                    f"record {i}: expected an object of fields (or a list of "
                    f"{len(columns)} values: {', '.join(columns)})",
                )
        return records
    raise WireError(
        400, f"expected a JSON object or a list of records, found {type(payload).__name__}"
    )


def _csv_records(body: bytes, columns: Sequence[str]) -> list[Mapping[str, Any]]:
    try:
        text = body.decode("utf-8-sig")  # a byte-order mark (Excel's) is no part of a name
    except UnicodeDecodeError as exc:
        raise WireError(400, f"CSV body is not UTF-8: {exc}") from None
    reader = csv.reader(io.StringIO(text))
    try:
        rows = [r for r in reader if any(cell.strip() for cell in r)]
    except csv.Error as exc:  # e.g. a field over the csv module's size limit
        raise WireError(400, f"CSV line {reader.line_num}: {exc}") from None
    if not rows:
        raise WireError(400, "CSV body has no rows")
    header = [c.strip() for c in rows[0]]
    if set(columns) <= set(header):
        names, data = header, rows[1:]
        if not data:
            raise WireError(400, "CSV body has a header but no data rows")
    else:
        names, data = list(columns), rows
    out: list[Mapping[str, Any]] = []
    for i, row in enumerate(data):
        if len(row) != len(names):
            raise WireError(
                400,
                f"CSV row {i + 1}: expected {len(names)} values "
                f"({', '.join(names)}), found {len(row)}",
            )
        out.append({n: (None if v.strip() == "" else v) for n, v in zip(names, row, strict=True)})
    return out


def parse_body(body: bytes, content_type: str, columns: Sequence[str]) -> list[Mapping[str, Any]]:
    """The records in a request body (raises WireError 400/415 with the reason)."""
    media = media_type(content_type)
    if media in CSV_TYPES:
        return _csv_records(body, columns)
    if media == "application/x-www-form-urlencoded" and body.lstrip()[:1] in (b"{", b"["):
        media = "application/json"  # `curl -d '{...}'` without a Content-Type header
    if media not in JSON_TYPES:
        raise WireError(
            415, f"unsupported Content-Type {content_type!r}: send application/json or text/csv"
        )
    if not body.strip():
        raise WireError(400, "empty request body: send a JSON record or records")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WireError(400, f"malformed JSON: {exc}") from None
    records = as_records(payload, columns)
    if not records:
        raise WireError(400, "no records in the request")
    return records


def render(
    labels: Sequence[int], distances: Sequence[float], names: Sequence[str], accept: str
) -> tuple[bytes, str]:
    """The response body and its media type (CSV when asked for, else JSON)."""
    if "text/csv" in accept.lower():
        lines = ["cluster,segment,distance"]
        lines += [
            f"{c},{_csv_cell(names[c])},{d!r}"
            for c, d in zip(labels, distances, strict=True)
        ]
        return ("\n".join(lines) + "\n").encode(), "text/csv"
    return _json_predictions(labels, distances, names), "application/json"


@functools.lru_cache(maxsize=64)
def _heads(names: tuple[str, ...]) -> tuple[list[bytes], list[bytes]]:
    """Each cluster's `{"cluster":c,"segment":"name","distance":` (first record) and the
    same after the previous record's `},` (the others): written once per model."""
    first = [orjson.dumps({"cluster": c, "segment": n})[:-1] + b',"distance":'
             for c, n in enumerate(names)]
    return first, [b"}," + head for head in first]


def _json_predictions(labels: Sequence[int], distances: Sequence[float],
                      names: Sequence[str]) -> bytes:
    """`{"predictions": [{"cluster", "segment", "distance"}, ...]}`, byte for byte as
    orjson writes it, without a dict per record: each cluster's head is written once,
    the distances by one orjson call, and the pieces interleaved and joined in C (twice
    as fast at 1,000 records)."""
    if not labels:
        return b'{"predictions":[]}'
    first, later = _heads(names if type(names) is tuple else tuple(names))
    if len(labels) == 1:  # one record: the common request
        return b'{"predictions":[' + first[labels[0]] + orjson.dumps(distances[0]) + b"}]}"
    numbers = orjson.dumps(list(distances))[1:-1].split(b",")
    pieces = [b""] * (2 * len(numbers))
    pieces[0] = first[labels[0]]
    pieces[2::2] = map(later.__getitem__, labels[1:])
    pieces[1::2] = numbers
    return b'{"predictions":[' + b"".join(pieces) + b"}]}"


def _csv_cell(value: str) -> str:
    if any(ch in value for ch in ',"\n'):
        return '"' + value.replace('"', '""') + '"'
    return value
