"""Columns described in the profiles but kept out of distances (`profile_only`: target-like
columns such as churn or response flags, or any column the config lists there).

Their values are taken from the training table before it is released, as numbers (the
mean per segment: for a 0/1 or true/false flag, the share of true) or as categories
(the share of each level per segment). Pure: Arrow in, numpy and dicts out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["describe_profile_only", "profile_only_columns"]

Described = dict[str, tuple[str, np.ndarray, list[str]]]


def profile_only_columns(table: pa.Table, names: list[str]) -> Described:
    """name -> ("numeric", values with NaN for missing, []) or ("categorical", codes with
    -1 for missing, levels)."""
    out: Described = {}
    for name in names:
        if name not in table.column_names:
            continue
        col = table.column(name)
        t = col.type
        if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t):
            floats = pc.cast(col, pa.float64()).combine_chunks()
            values = np.array(floats.fill_null(np.nan).to_numpy(zero_copy_only=False),
                              dtype=np.float64)
            out[name] = ("numeric", values, [])
        else:
            text = pc.cast(col, pa.string()).combine_chunks().dictionary_encode()
            levels = [str(v) for v in text.dictionary.to_pylist()]
            order = np.argsort(levels)
            rank = np.empty(len(levels), dtype=np.int64)
            rank[order] = np.arange(len(levels))
            idx = np.asarray(text.indices.fill_null(-1).to_numpy(zero_copy_only=False))
            codes = (np.where(idx >= 0, rank[np.maximum(idx, 0)], -1) if len(levels)
                     else np.full(len(idx), -1, dtype=np.int64))  # no value at all
            out[name] = ("categorical", codes, sorted(levels))
    return out


def describe_profile_only(profiles: list[dict[str, Any]], described: Described,
                          labels: np.ndarray, k: int) -> None:
    """Add `profile_only` to each segment's profile: {name: {"mean": x}} for a number
    (NaN ignored), {name: {"shares": {level: share}}} for categories."""
    for profile in profiles:
        profile.setdefault("profile_only", {})
    for name, (kind, values, levels) in described.items():
        if kind == "numeric":
            present = ~np.isnan(values)
            sums = np.bincount(labels[present], weights=values[present], minlength=k)
            counts = np.bincount(labels[present], minlength=k)
            for c in range(k):
                mean = float(sums[c] / counts[c]) if counts[c] else None
                profiles[c]["profile_only"][name] = {"mean": mean}
        else:
            present = values >= 0
            table = np.bincount(labels[present] * len(levels) + values[present],
                                minlength=k * len(levels)).reshape(k, len(levels))
            for c in range(k):
                total = max(int(table[c].sum()), 1)
                profiles[c]["profile_only"][name] = {
                    "shares": {lvl: float(v / total) for lvl, v in zip(levels, table[c],
                                                                         strict=True)}}
