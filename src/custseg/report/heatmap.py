"""The profile heatmap: the features that set the segments apart most (largest |z| over the
segments), one row each, one column per segment titled with its name."""

from __future__ import annotations

import math
from typing import Any

from custseg.report.base import e, fmt, pct, svg, text_width, truncate
from custseg.report.features import FeatureRow

__all__ = ["HEATMAP_ROWS", "heatmap"]

HEATMAP_ROWS = 15
SLANT = math.sqrt(0.5)  # column titles run up at 45 degrees


def heat_colour(z: float) -> str:
    t = max(-1.0, min(1.0, z / 2.0))
    if t >= 0:
        r, g, b = 255, int(255 - 150 * t), int(255 - 170 * t)
    else:
        r, g, b = int(255 + 170 * t), int(255 + 100 * t), 255
    return f"rgb({r},{g},{b})"


def _value(row: FeatureRow, value: float | None) -> str:
    return pct(value) if row.as_share else fmt(value)


def heatmap(rows: list[FeatureRow], segments: list[dict[str, Any]], names: dict[int, str],
            limit: int = HEATMAP_ROWS) -> tuple[str, float, str]:
    """(svg, width, caption HTML) of the `limit` strongest of `rows` (sorted strongest
    first, as `feature_rows` returns them)."""
    shown = rows[:limit]
    ids = [int(p["id"]) for p in segments]
    cell_w, cell_h = 58, 24
    labels = [truncate(r.label, 46) for r in shown]
    titles = [truncate(f"{sid} \u00b7 {names[sid]}", 34) for sid in ids]
    left = min(max((text_width(t) for t in labels), default=40) + 12, 300)
    head = max((text_width(t) for t in titles), default=40) * SLANT + 14
    w = max([left + cell_w * len(ids)] + [left + c * cell_w + cell_w / 2 + text_width(t) * SLANT
                                          for c, t in enumerate(titles)]) + 12
    h = head + cell_h * len(shown) + 6
    parts = []
    for c, (sid, title) in enumerate(zip(ids, titles, strict=True)):
        cx, cy = left + c * cell_w + cell_w / 2, head - 6
        parts.append(f'<text x="{cx:.1f}" y="{cy:.1f}" transform="rotate(-45 {cx:.1f} '
                     f'{cy:.1f})" font-weight="600"><title>{e(names[sid])}</title>'
                     f"{e(title)}</text>")
    for r, (row, label) in enumerate(zip(shown, labels, strict=True)):
        y = head + r * cell_h
        parts.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">'
                     f"<title>{e(row.label)}</title>{e(label)}</text>")
        for c, sid in enumerate(ids):
            z = row.z.get(sid, 0.0)
            what = "share" if row.as_share else "mean"
            parts.append(
                f'<rect x="{left + c * cell_w}" y="{y}" width="{cell_w - 2}" '
                f'height="{cell_h - 2}" fill="{heat_colour(z)}"><title>{e(names[sid])}: '
                f"{e(row.label)} {what} {_value(row, row.value.get(sid))} (all customers "
                f"{_value(row, row.overall)}), {z:+.2f} sd</title></rect>"
                f'<text x="{left + c * cell_w + cell_w / 2 - 1}" y="{y + 15}" '
                f'text-anchor="middle">{z:+.2f}</text>')
    caption = ("Standardised difference of each feature from all customers (red above, "
               "blue below; numeric features in standard deviations, category levels in "
               "binomial standard deviations of their share).")
    if len(rows) > len(shown):
        caption += (f" The {len(shown)} of {len(rows)} features that differ most between "
                    f"segments; every feature is in each segment's card and the CSV export.")
    return svg(w, h, "".join(parts), "profile heatmap"), w, caption
