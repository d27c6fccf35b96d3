"""The traffic `custseg monitor` judges, as a `drift.Window`: the records an endpoint
captured since a time (`io/capture_files`), or a CSV/Parquet file (`--data`), read
column by column against the model's inputs.

Values are read as the endpoint reads them: a number may arrive as text ("30", from a
CSV request), a category as a number (3 and "3" are one level), a missing value as
null or an empty string. A value of the wrong type (text that is not a number, a date
that does not parse) is counted, not fatal. Captured records carry their segment and
distance; the records of a file are scored here, with the model the endpoint serves.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from custseg.artifact.scorer import Model
from custseg.core.columns import NUMBER, date_column_days, date_days
from custseg.core.preprocessing import Encoded, category_key
from custseg.errors import DataError
from custseg.io.capture_files import CaptureFolder
from custseg.monitor.drift import NumericValues, Window
from custseg.serving.capture_table import expand_requests

__all__ = ["Traffic", "captured_traffic", "file_traffic"]

_NUMBER = re.compile(NUMBER)


@dataclass(frozen=True)
class Traffic:
    """A window and where it came from."""

    window: Window
    source: str
    notes: list[str]


def _distinct(col: pa.ChunkedArray) -> tuple[list[Any], np.ndarray]:
    """The column's distinct values and each row's index into them (-1: null)."""
    array = col.combine_chunks() if col.num_chunks else pa.array([], col.type)
    encoded = array.dictionary_encode()
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    if encoded.indices.null_count:
        indices = np.where(pc.is_valid(encoded.indices).to_numpy(zero_copy_only=False),
                           indices, -1)
    return encoded.dictionary.to_pylist(), np.asarray(indices, dtype=np.int64)


def _by_value(col: pa.ChunkedArray, parse: Callable[[Any], float]) -> np.ndarray:
    """`parse` of each distinct value, per row: NaN when missing, -inf when invalid."""
    values, index = _distinct(col)
    parsed = np.empty(len(values) + 1)
    parsed[-1] = np.nan  # null
    for i, value in enumerate(values):
        try:
            parsed[i] = parse(value)
        except (TypeError, ValueError):
            parsed[i] = -np.inf
    return np.asarray(parsed[index])


def _number(value: Any) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        return np.nan
    if isinstance(value, str) and not _NUMBER.match(value.strip()):
        raise ValueError(value)
    if isinstance(value, dict | list):
        raise TypeError(value)
    number = float(value)
    if not np.isfinite(number):
        raise ValueError(value)
    return number


def _raw_numeric(model: Model, name: str, col: pa.ChunkedArray) -> np.ndarray:
    """Raw values in the model's units (a date as days before the newest training date);
    NaN when missing, -inf when of the wrong type."""
    t = model.transform
    fmt = t.dates.get(name)
    if fmt is None:
        kind = col.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            return np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
                              .astype(float))
        return _by_value(col, _number)
    if pa.types.is_date(col.type) or pa.types.is_timestamp(col.type):
        days = date_column_days(name, col, fmt, lambda row: f"row {row + 1}")
    else:
        days = _by_value(col, lambda v: date_days(v, fmt))
    out = t.date_reference[name] - days
    out[np.isneginf(days)] = -np.inf
    return np.asarray(out)


def _categories(col: pa.ChunkedArray) -> tuple[list[str | None], np.ndarray]:
    values, index = _distinct(col)
    keys: list[str | None] = []
    for v in values:
        key = category_key(v) if not isinstance(v, dict | list) else None
        keys.append(None if key == "" else key)
    return keys, index


def _window(model: Model, table: pa.Table, skip: dict[str, str],
            scored: tuple[np.ndarray, np.ndarray] | None) -> Window:
    """The window of `table` (columns named as the request fields); scored here with
    `model` when `scored` (segments, distances) is not given."""
    t = model.transform
    n = table.num_rows
    numeric: dict[str, NumericValues] = {}
    raws: dict[str, np.ndarray] = {}
    for name in t.numeric:
        if name in table.column_names and name not in skip:
            raw = raws[name] = _raw_numeric(model, name, table.column(name))
            numeric[name] = NumericValues(raw[np.isfinite(raw)], int(np.isnan(raw).sum()),
                                          int(np.isneginf(raw).sum()))
    categorical: dict[str, dict[str | None, int]] = {}
    codes: dict[str, tuple[list[str | None], np.ndarray]] = {}
    for name in t.categorical:
        if name in table.column_names and name not in skip:
            keys, index = codes[name] = _categories(table.column(name))
            counts = np.bincount(index + 1, minlength=len(keys) + 1)
            tally: dict[str | None, int] = {None: int(counts[0])}
            for key, count in zip(keys, counts[1:].tolist(), strict=True):
                tally[key] = tally.get(key, 0) + count
            categorical[name] = tally
    if scored is None and all(c in table.column_names for c in model.input_columns):
        scored = model.score_encoded(_encoded(model, raws, codes, n))
    return Window(rows=n, numeric=numeric, categorical=categorical,
                  fields=list(table.column_names),
                  clusters=None if scored is None else np.asarray(scored[0], dtype=np.int64),
                  distances=None if scored is None else np.asarray(scored[1]), skipped=skip)


def _encoded(model: Model, raws: dict[str, np.ndarray],
             codes: dict[str, tuple[list[str | None], np.ndarray]], n: int) -> Encoded:
    """The rows as the scorer encodes them: missing (and wrong-typed) numbers take the
    training median, missing categories the mode, unseen ones all zeros."""
    t = model.transform
    num = np.empty((n, len(t.numeric)))
    for j, name in enumerate(t.numeric):
        values = raws[name].copy()
        values[~np.isfinite(values)] = t.medians[j]
        num[:, j] = t.finish(values, j)
    out = np.empty((n, len(t.categorical)), dtype=np.int32)
    for j, name in enumerate(t.categorical):
        keys, index = codes[name]
        lookup = {c: i for i, c in enumerate(t.categories[j])}
        mode = lookup[t.modes[j]]
        mapped = np.array([mode if k is None else lookup.get(k, -1) for k in keys] + [mode],
                          dtype=np.int32)
        out[:, j] = mapped[index]  # index -1 (null) picks the last entry: the mode
    return Encoded(num=num, codes=out)


def captured_traffic(model: Model, version: str, folder: CaptureFolder, since: datetime,
                     skip: dict[str, str]) -> Traffic:
    """The records `folder` captured since `since` for model `version` (records of other
    versions are left out, and said so). A DataError when there are none."""
    table = folder.read_since(since, lambda t: expand_requests(t, model.input_columns))
    where = f"{folder.uri} since {since.isoformat(timespec='seconds')}"
    if table is None:
        raise DataError(f"no captured records in {where}: is data capture on "
                        f"(endpoint.capture in the config, then `custseg serve --restart`)?")
    notes = []
    mine = pc.equal(table.column("model_version"), version)
    others = table.num_rows - int(pc.sum(mine).as_py() or 0)
    if others:
        notes.append(f"{others:,} records of other model versions left out (the endpoint "
                     f"serves {version})")
        table = table.filter(mine)
    if table.num_rows == 0:
        raise DataError(f"no records of {version} captured in {where}")
    fields = {c.removeprefix("input."): table.column(c) for c in table.column_names
              if c.startswith("input.")}
    if not fields:
        raise DataError(f"the records captured in {where} hold no request fields")
    scored = (table.column("cluster").to_numpy(), table.column("distance").to_numpy())
    return Traffic(_window(model, pa.table(fields), skip, scored), where, notes)


def file_traffic(model: Model, uri: str, s3_endpoint_url: str | None, skip: dict[str, str]
                 ) -> Traffic:
    """The records of a CSV or Parquet file (local or s3://), scored with `model`."""
    table = _read_file(uri, s3_endpoint_url)
    return Traffic(_window(model, table, skip, None), uri, [])


def _read_file(uri: str, s3_endpoint_url: str | None) -> pa.Table:
    from custseg.io.data import is_parquet, open_source, read_data

    if not is_parquet(uri):
        return read_data(uri, s3_endpoint_url=s3_endpoint_url).table
    import pyarrow.parquet as pq

    try:
        with open_source(uri, s3_endpoint_url=s3_endpoint_url) as f:
            return pq.read_table(f)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"cannot read {uri} as Parquet: {exc}") from exc
