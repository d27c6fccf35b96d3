"""The 2-D PCA scatter: axes named by their explained variance, robust limits so that a
few outliers do not squash the picture into a corner (the points beyond drawn hollow at
the edge and counted), and the strongest loadings of each axis and the segments' colours
in the caption.

The limits of an axis span the points within `REACH` of the 1st-99th percentile range
beyond those percentiles: data without outliers is shown whole, and outliers beyond
that reach take no room.
"""

from __future__ import annotations

import math
from typing import Any

from custseg.report.base import colour, e, fmt, nice_ticks, svg
from custseg.report.features import feature_label

__all__ = ["legend", "percentile", "robust_limits", "scatter"]

REACH = 0.5  # of the 1st-99th percentile range: the most an axis extends beyond them
PAD = 0.03  # of the shown range, on each side, so that edge points are not cut


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation, as numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    pos = (len(ordered) - 1) * q / 100
    below = math.floor(pos)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (pos - below)


def robust_limits(values: list[float]) -> tuple[float, float]:
    """The axis limits for `values` (see the module docstring)."""
    p1, p99 = percentile(values, 1), percentile(values, 99)
    span = (p99 - p1) or (abs(p1) or 1.0)
    inside = [v for v in values if p1 - REACH * span <= v <= p99 + REACH * span]
    lo, hi = min(inside, default=p1), max(inside, default=p99)
    pad = PAD * ((hi - lo) or span)
    return lo - pad, hi + pad


def legend(names: dict[int, str]) -> str:
    items = "".join(f'<li><span class="swatch" style="background:{colour(sid)}"></span>'
                    f"{sid} \u00b7 {e(name)}</li>" for sid, name in sorted(names.items()))
    return f'<ul class="legend">{items}</ul>'


def _loadings(axis: dict[str, Any], categorical: set[str], value_labels: dict[str, Any]
              ) -> str:
    pairs = axis.get("loadings") or []
    return ", ".join(
        f"{float(weight):+.2f} {e(feature_label(str(name), categorical, value_labels))}"
        for name, weight in pairs)


def scatter(sample: dict[str, Any], names: dict[int, str], categorical: set[str],
            value_labels: dict[str, Any]) -> tuple[str, float, str]:
    """(svg, width, caption HTML) of the sample's first two principal components."""
    xy, labels = sample["xy"], sample["labels"]
    axes: list[dict[str, Any]] = list(sample.get("axes") or [])
    titles = [str(axes[i].get("label")) if i < len(axes) else f"PC{i + 1}" for i in (0, 1)]
    w, h, left, right, top, bottom = 480, 380, 56, 14, 12, 46
    x0, x1 = robust_limits([p[0] for p in xy])
    y0, y1 = robust_limits([p[1] for p in xy])

    def sx(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * (w - left - right)

    def sy(v: float) -> float:
        return h - bottom - (v - y0) / (y1 - y0) * (h - top - bottom)

    parts = []
    for t in nice_ticks(x0, x1, 5):
        if x0 <= t <= x1:
            stroke = "#b0bec5" if t == 0 else "#e3e8eb"
            parts.append(f'<line x1="{sx(t):.1f}" y1="{top}" x2="{sx(t):.1f}" '
                         f'y2="{h - bottom}" stroke="{stroke}"/><text x="{sx(t):.1f}" '
                         f'y="{h - bottom + 14}" text-anchor="middle">{fmt(t, 3)}</text>')
    for t in nice_ticks(y0, y1, 5):
        if y0 <= t <= y1:
            stroke = "#b0bec5" if t == 0 else "#e3e8eb"
            parts.append(f'<line x1="{left}" y1="{sy(t):.1f}" x2="{w - right}" '
                         f'y2="{sy(t):.1f}" stroke="{stroke}"/><text x="{left - 5}" '
                         f'y="{sy(t) + 4:.1f}" text-anchor="end">{fmt(t, 3)}</text>')
    clamped = 0
    for (px, py), c in zip(xy, labels, strict=True):
        cx, cy = min(max(px, x0), x1), min(max(py, y0), y1)
        if (cx, cy) != (px, py):
            clamped += 1
            parts.append(f'<circle cx="{sx(cx):.1f}" cy="{sy(cy):.1f}" r="2.8" fill="none" '
                         f'stroke="{colour(c)}"/>')
        else:
            parts.append(f'<circle cx="{sx(cx):.1f}" cy="{sy(cy):.1f}" r="2.2" '
                         f'fill="{colour(c)}" opacity="0.7"/>')
    parts.append(f'<rect x="{left}" y="{top}" width="{w - left - right}" '
                 f'height="{h - top - bottom}" fill="none" stroke="#78909c"/>'
                 f'<text x="{(left + w - right) / 2:.1f}" y="{h - 10}" text-anchor="middle" '
                 f'fill="#37474f">{e(titles[0])}</text><text transform="translate(14 '
                 f'{(top + h - bottom) / 2:.1f}) rotate(-90)" text-anchor="middle" '
                 f'fill="#37474f">{e(titles[1])}</text>')
    caption = (f"The first two principal components of the standardised features, "
               f"{int(sample['rows']):,} of {int(sample['of']):,} customers, coloured by "
               f"segment.")
    loadings = [(titles[i].split(" ")[0], _loadings(axes[i], categorical, value_labels))
                for i in (0, 1) if i < len(axes)]
    if any(text for _, text in loadings):
        caption += " Strongest loadings: " + "; ".join(
            f"{e(axis)}: {text}" for axis, text in loadings if text) + "."
    if clamped:
        caption += (f" {clamped:,} outlying point{'s' if clamped != 1 else ''} (beyond the "
                    f"1st-99th percentile range plus {100 * REACH:.0f}%) "
                    f"{'are' if clamped != 1 else 'is'} drawn hollow at the edge.")
    return svg(w, h, "".join(parts), "PCA scatter"), w, caption + legend(names)
