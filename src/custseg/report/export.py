"""The segment profiles as CSV: one row per segment and feature (a numeric column, a
category level, or a column described but not used for segmenting)."""

from __future__ import annotations

import csv
import io
from typing import Any

from custseg.core.profiles import category_label
from custseg.report.features import segment_name, z_by_feature

__all__ = ["PROFILE_COLUMNS", "profiles_csv"]

PROFILE_COLUMNS = ["segment_id", "segment_name", "size", "segment_share", "feature", "column",
                   "level", "kind", "mean", "median", "q1", "q3", "share", "z"]
# kind: numeric | category (used for segmenting), profile_numeric | profile_category
# (described only: no z, since they took no part in the distances)


def _cell(value: Any) -> Any:
    return "" if value is None else value


def profiles_csv(meta: dict[str, Any]) -> str:
    """The profiles of `meta["segments"]` as CSV text (a header row, then `PROFILE_COLUMNS`);
    floats at full precision, empty cells where a value does not apply."""
    value_labels = meta.get("value_labels") or {}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(PROFILE_COLUMNS)
    for p in meta.get("segments") or []:
        z = z_by_feature(p)
        head = [p["id"], segment_name(p), p.get("size"), p.get("share")]

        def row(feature: str, column: str, level: str | None, kind: str,
                stats: dict[str, Any], share: float | None, zed: float | None,
                head: list[Any] = head) -> None:
            writer.writerow([_cell(v) for v in [
                *head, feature, column, level, kind, stats.get("mean"), stats.get("median"),
                stats.get("q1"), stats.get("q3"), share, zed]])

        for column, stats in (p.get("numeric") or {}).items():
            row(column, column, None, "numeric", stats, None, z.get(column))
        for column, shares in (p.get("categorical") or {}).items():
            for level, share in shares.items():
                row(category_label(column, level, value_labels), column, level, "category",
                    {}, share, z.get(f"{column}={level}"))
        for column, described in (p.get("profile_only") or {}).items():
            if "shares" in described:
                for level, share in (described.get("shares") or {}).items():
                    row(category_label(column, level, value_labels), column, level,
                        "profile_category", {}, share, None)
            else:
                row(column, column, None, "profile_numeric", described, None, None)
    return out.getvalue()
