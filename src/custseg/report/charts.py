"""The report's simple charts, as hand-made SVG: a metric against k, the silhouette plot
and the segment sizes."""

from __future__ import annotations

from typing import Any

from custseg.report.base import colour, e, fmt, nice_ticks, pct, svg, text_width, tick, truncate

__all__ = ["line_chart", "silhouette_plot", "size_bars"]

GRID = "#e3e8eb"
AXIS = "#78909c"


def line_chart(points: list[tuple[int, float, bool]], chosen: int, title: str
               ) -> tuple[str, float]:
    """A metric against k: `points` are (k, value, eligible); the y axis spans round ticks
    around the values, with a gridline and a label at each. Returns (svg, width)."""
    w, h, left, right, top, bottom = 250, 210, 46, 12, 28, 38
    ks = [k for k, _, _ in points]
    values = [v for _, v, _ in points]
    ticks = nice_ticks(min(values), max(values))
    lo, hi = ticks[0], ticks[-1]
    k0, k1 = min(ks), max(ks)

    def x(k: int) -> float:
        return left + (k - k0) / max(k1 - k0, 1) * (w - left - right)

    def y(v: float) -> float:
        return top + (hi - v) / ((hi - lo) or 1.0) * (h - top - bottom)

    parts = [f'<text x="4" y="16" font-size="13" font-weight="600">{e(title)}</text>']
    for t in ticks:
        parts.append(f'<line x1="{left}" y1="{y(t):.1f}" x2="{w - right}" y2="{y(t):.1f}" '
                     f'stroke="{GRID}"/><text x="{left - 5}" y="{y(t) + 4:.1f}" '
                     f'text-anchor="end">{tick(t)}</text>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="{AXIS}"/>'
                 f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" '
                 f'stroke="{AXIS}"/>')
    line = " ".join(f"{x(k):.1f},{y(v):.1f}" for k, v, _ in points)
    parts.append(f'<polyline points="{line}" fill="none" stroke="#4e79a7" stroke-width="2"/>')
    every = 1 if len(ks) <= 12 else 2
    for i, (k, v, eligible) in enumerate(points):
        fill = "#e15759" if k == chosen else ("#4e79a7" if eligible else "#ffffff")
        parts.append(f'<circle cx="{x(k):.1f}" cy="{y(v):.1f}" r="{5 if k == chosen else 3.5}" '
                     f'fill="{fill}" stroke="{"#e15759" if k == chosen else "#4e79a7"}">'
                     f"<title>k={k}: {fmt(v)}</title></circle>")
        if i % every == 0 or k == chosen:
            parts.append(f'<text x="{x(k):.1f}" y="{h - bottom + 14}" '
                         f'text-anchor="middle">{k}</text>')
    parts.append(f'<text x="{(left + w - right) / 2:.1f}" y="{h - 6}" text-anchor="middle" '
                 f'fill="#546e7a">k (number of segments)</text>')
    return svg(w, h, "".join(parts), title), w


def silhouette_plot(sample: dict[str, Any], k: int, mean: float) -> tuple[str, float]:
    """Each sampled customer's silhouette, sorted within its segment, on an x axis that
    always shows 0 (the line between fitting its own segment and a neighbour's)."""
    values, labels = sample["silhouette"], sample["labels"]
    w, h, left, right, top, bottom = 460, 330, 40, 14, 10, 44
    lo_data = min(values, default=0.0)
    lo = min(-0.2, nice_ticks(lo_data, 1.0, 6)[0])
    ticks = [t for t in nice_ticks(lo, 1.0, 6) if lo - 1e-9 <= t <= 1.0 + 1e-9]
    order = sorted(range(len(values)), key=lambda i: (labels[i], -values[i]))
    row_h = (h - top - bottom) / max(len(order), 1)

    def x(v: float) -> float:
        return left + (v - lo) / (1.0 - lo) * (w - left - right)

    parts = []
    for t in ticks:
        parts.append(f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{h - bottom}" '
                     f'stroke="{GRID}"/><text x="{x(t):.1f}" y="{h - bottom + 14}" '
                     f'text-anchor="middle">{t:g}</text>')
    position = {i: pos for pos, i in enumerate(order)}
    for c in range(k):
        rows = sorted((position[i], values[i]) for i in range(len(values)) if labels[i] == c)
        if not rows:
            continue
        y0, y1 = top + rows[0][0] * row_h, top + (rows[-1][0] + 1) * row_h
        pts = [f"{x(0):.1f},{y0:.1f}"]
        pts += [f"{x(v):.1f},{top + (pos + 0.5) * row_h:.1f}" for pos, v in rows]
        pts.append(f"{x(0):.1f},{y1:.1f}")
        parts.append(f'<polygon points="{" ".join(pts)}" fill="{colour(c)}" opacity="0.85"/>'
                     f'<text x="{left - 6}" y="{(y0 + y1) / 2 + 4:.1f}" text-anchor="end" '
                     f'font-weight="600" fill="{colour(c)}">{c}</text>')
    parts.append(f'<line x1="{x(0):.1f}" y1="{top}" x2="{x(0):.1f}" y2="{h - bottom}" '
                 f'stroke="#37474f" stroke-width="1.5"/>'
                 f'<line x1="{x(mean):.1f}" y1="{top}" x2="{x(mean):.1f}" y2="{h - bottom}" '
                 f'stroke="#e15759" stroke-dasharray="4 3" stroke-width="1.5"/>'
                 f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" '
                 f'stroke="{AXIS}"/><text x="{(left + w - right) / 2:.1f}" y="{h - 8}" '
                 f'text-anchor="middle" fill="#546e7a">silhouette (mean {mean:.3f}, dashed)'
                 f"</text>")
    return svg(w, h, "".join(parts), "silhouette plot"), w


def size_bars(segments: list[dict[str, Any]], names: dict[int, str]) -> tuple[str, float]:
    """One horizontal bar per segment: its number of customers and share."""
    row_h, top, right = 24, 8, 120
    labels = {int(p["id"]): truncate(f"{p['id']} \u00b7 {names[int(p['id'])]}", 48)
              for p in segments}
    left = min(max((text_width(t) for t in labels.values()), default=60) + 14, 300)
    w, h = left + 300 + right, top * 2 + row_h * len(segments)
    biggest = max((float(p.get("share", 0)) for p in segments), default=1.0) or 1.0
    parts = []
    for i, p in enumerate(segments):
        sid, share = int(p["id"]), float(p.get("share", 0))
        y = top + i * row_h
        width = max(share / biggest * 300, 1.0)
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">'
                     f"<title>{e(names[sid])}</title>{e(labels[sid])}</text>"
                     f'<rect x="{left}" y="{y + 4}" width="{width:.1f}" height="{row_h - 8}" '
                     f'fill="{colour(sid)}"/><text x="{left + width + 6:.1f}" y="{y + 15}">'
                     f"{int(p.get('size', 0)):,} ({pct(share)})</text>")
    return svg(w, h, "".join(parts), "segment sizes"), w
