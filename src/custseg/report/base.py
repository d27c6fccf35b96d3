"""What every part of the report shares: the palette, the stylesheet, escaping, number
formatting, SVG and figure wrappers, and axis ticks."""

from __future__ import annotations

import html
import math
from typing import Any

__all__ = ["CSS", "PALETTE", "colour", "e", "figure", "fmt", "nice_ticks", "pct", "svg",
           "text_width", "tick", "truncate"]

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac"]
CHAR_W = 6.2  # rough width of one character at the SVGs' 11 px Helvetica

# min-width:0 on grid items and overflow-wrap:anywhere keep long names and numbers inside
# their card; table-layout:fixed stops a table growing wider than its card.
CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;padding:0 16px;
color:#263238;line-height:1.35}h1{font-size:24px;margin-bottom:4px}h2{font-size:19px;
margin-top:32px;border-bottom:1px solid #cfd8dc;padding-bottom:4px}h3{font-size:15px;
margin:16px 0 6px}.muted{color:#607d8b}table{border-collapse:collapse;margin:8px 0}
td,th{padding:4px 10px;border-bottom:1px solid #eceff1;text-align:right;vertical-align:top}
th{background:#f5f7f8}td:first-child,th:first-child{text-align:left}td.text,th.text{
text-align:left}tr.chosen{background:#fff8e1;font-weight:600}tr.ineligible td{color:#90a4ae}
.tag{font-size:11px;font-weight:400;color:#b71c1c;white-space:nowrap}
.warnings{background:#fff4e5;border:1px solid #f0b35b;border-left:6px solid #e65100;
border-radius:6px;padding:8px 16px;margin:16px 0}.warnings b{color:#b23c00}
.warnings ul{margin:6px 0;padding-left:20px}
.metrics{display:flex;gap:16px;flex-wrap:wrap}.metric{border:1px solid #cfd8dc;
border-radius:8px;padding:10px 16px;min-width:180px;max-width:320px}
.metric b{display:block;font-size:22px}.metric .muted{font-size:12px}
.sentence{background:#f5f7f8;border-radius:6px;padding:8px 12px;max-width:800px}
figure.plot{margin:12px 14px 12px 0;display:inline-block;vertical-align:top;max-width:100%}
figure.plot svg{max-width:100%;height:auto;display:block}
figcaption{font-size:13px;color:#607d8b;overflow-wrap:anywhere}
ul.legend{list-style:none;padding:0;margin:6px 0;display:flex;flex-wrap:wrap;gap:4px 14px}
ul.legend li{display:flex;align-items:baseline;gap:5px;min-width:0}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;flex:none}
table.features td,table.features th{text-align:left}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,330px),1fr));
gap:14px}.card{border:1px solid #cfd8dc;border-radius:10px;padding:12px 14px;
border-top-width:6px;min-width:0;overflow-wrap:anywhere}
.card h3{margin:2px 0 4px;font-size:16px}.card h4{margin:10px 0 2px;font-size:13px}
.card table{font-size:12.5px;width:100%;table-layout:fixed;margin:4px 0}
.card td,.card th{padding:3px 5px;overflow-wrap:anywhere}
.card th{font-weight:600}.bar{background:#eceff1;height:6px;border-radius:3px;margin:6px 0}
.bar span{display:block;height:6px;border-radius:3px;max-width:100%}
.card details{margin-top:8px}.card summary{cursor:pointer;font-size:13px;color:#37474f}
"""


def e(value: Any) -> str:
    """HTML-escaped text (quotes too: safe inside attribute values)."""
    return html.escape(str(value), quote=True)


def fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def tick(value: float) -> str:
    """A short axis label for a round tick value: 0.25, 750, 12k, 1.5M."""
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:g}k"
    if abs(value) >= 1000:
        return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
    return f"{value:.3g}"


def pct(share: float | None, digits: int = 1) -> str:
    return "-" if share is None else f"{100 * share:.{digits}f}%"


def colour(segment_id: int) -> str:
    return PALETTE[segment_id % len(PALETTE)]


def truncate(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: max(limit - 1, 1)] + "\u2026"


def text_width(label: str) -> float:
    return len(label) * CHAR_W


def svg(width: float, height: float, body: str, label: str) -> str:
    w, h = math.ceil(width), math.ceil(height)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}" role="img" aria-label="{e(label)}" '
            f'font-family="Helvetica,Arial,sans-serif" font-size="11">{body}</svg>')


def figure(plot_id: str, svg_text: str, caption: str, width: float) -> str:
    """A plot and its caption (HTML, already escaped), the caption wrapped to the plot."""
    return (f'<figure class="plot" id="{e(plot_id)}" style="width:{math.ceil(width)}px">'
            f"{svg_text}<figcaption>{caption}</figcaption></figure>")


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """Round tick values covering [lo, hi] with about `count` steps (1, 2, 2.5 or 5 x 10^n);
    the first and last ticks bound the data, so they make the axis limits."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    lo, hi = min(lo, hi), max(lo, hi)
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / count
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    start, stop = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    n = max(round((stop - start) / step), 1)
    return [float(f"{start + i * step:.12g}") for i in range(n + 1)]
