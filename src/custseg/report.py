"""The segment report: one self-contained HTML file (inline CSS and SVG, no scripts, no
network) describing a model: run summary, metrics, the candidate table, metric-vs-k
curves (when k was swept), a silhouette plot, a 2-D PCA scatter coloured by segment, a
profile heatmap and one card per segment. Pure: model metadata in, HTML text out.
"""

from __future__ import annotations

import html
import math
from typing import Any

__all__ = ["PALETTE", "render_report"]

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac"]
CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;color:#263238}
h1{font-size:24px;margin-bottom:4px}h2{font-size:19px;margin-top:32px;border-bottom:1px solid
#cfd8dc;padding-bottom:4px}.muted{color:#607d8b}table{border-collapse:collapse;margin:8px 0}
td,th{padding:4px 10px;border-bottom:1px solid #eceff1;text-align:right}th{background:#f5f7f8}
td:first-child,th:first-child{text-align:left}tr.chosen{background:#fff8e1;font-weight:600}
.metrics{display:flex;gap:16px;flex-wrap:wrap}.metric{border:1px solid #cfd8dc;border-radius:8px;
padding:10px 16px;min-width:180px}.metric b{display:block;font-size:22px}
figure.plot{margin:12px 18px 12px 0;
display:inline-block;vertical-align:top}figcaption{font-size:13px;color:#607d8b;max-width:300px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:14px}
.card{border:1px solid #cfd8dc;border-radius:10px;padding:12px 16px;border-top-width:6px}
.card h3{margin:4px 0 6px;font-size:16px}.card table{font-size:13px;width:100%}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _svg(width: int, height: int, body: str, label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(label)}" '
            f'font-family="Helvetica,Arial,sans-serif" font-size="11">{body}</svg>')


def _figure(plot_id: str, svg: str, caption: str) -> str:
    return f'<figure class="plot" id="{plot_id}">{svg}<figcaption>{caption}</figcaption></figure>'


def _line_chart(ks: list[int], values: list[float], chosen: int, title: str) -> str:
    w, h, left, right, top, bottom = 300, 200, 62, 12, 26, 30
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0

    def x(k: int) -> float:
        return left + (k - ks[0]) / max(ks[-1] - ks[0], 1) * (w - left - right)

    def y(v: float) -> float:
        return top + (hi - v) / span * (h - top - bottom)

    points = " ".join(f"{x(k):.1f},{y(v):.1f}" for k, v in zip(ks, values, strict=True))
    parts = [f'<text x="{left}" y="16" font-size="13" font-weight="600">{_e(title)}</text>',
             f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" '
             f'stroke="#90a4ae"/>',
             f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{_fmt(hi, 3)}</text>',
             f'<text x="{left - 4}" y="{h - bottom}" text-anchor="end">{_fmt(lo, 3)}</text>',
             f'<polyline points="{points}" fill="none" stroke="#4e79a7" stroke-width="2"/>']
    for k, v in zip(ks, values, strict=True):
        colour = "#e15759" if k == chosen else "#4e79a7"
        parts.append(f'<circle cx="{x(k):.1f}" cy="{y(v):.1f}" r="{5 if k == chosen else 3}" '
                     f'fill="{colour}"/><text x="{x(k):.1f}" y="{h - bottom + 14}" '
                     f'text-anchor="middle">{k}</text>')
    return _svg(w, h, "".join(parts), title)


def _silhouette_plot(sample: dict[str, Any], k: int, mean: float) -> str:
    values, labels = sample["silhouette"], sample["labels"]
    w, h, left = 420, 320, 40
    order = sorted(range(len(values)), key=lambda i: (labels[i], -values[i]))
    row_h = (h - 30) / max(len(order), 1)

    def x(v: float) -> float:
        return left + (v + 0.2) / 1.2 * (w - left - 10)

    parts = [f'<line x1="{x(0):.1f}" y1="0" x2="{x(0):.1f}" y2="{h - 24}" stroke="#90a4ae"/>']
    for c in range(k):
        rows = [(pos, values[i]) for pos, i in enumerate(order) if labels[i] == c]
        if not rows:
            continue
        pts = [f"{x(0):.1f},{rows[0][0] * row_h:.1f}"]
        pts += [f"{x(v):.1f},{pos * row_h:.1f}" for pos, v in rows]
        pts.append(f"{x(0):.1f},{(rows[-1][0] + 1) * row_h:.1f}")
        label_y = (rows[0][0] + len(rows) / 2) * row_h
        parts.append(f'<polygon points="{" ".join(pts)}" fill="{PALETTE[c % 10]}" '
                     f'opacity="0.85"/><text x="{left - 6}" y="{label_y:.1f}" '
                     f'text-anchor="end">{c}</text>')
    parts.append(f'<line x1="{x(mean):.1f}" y1="0" x2="{x(mean):.1f}" y2="{h - 24}" '
                 f'stroke="#e15759" stroke-dasharray="4 3"/>')
    for v in (-0.2, 0, 0.2, 0.4, 0.6, 0.8, 1.0):
        parts.append(f'<text x="{x(v):.1f}" y="{h - 8}" text-anchor="middle">{v:g}</text>')
    return _svg(w, h, "".join(parts), "silhouette plot")


def _scatter(sample: dict[str, Any]) -> str:
    xy, labels = sample["xy"], sample["labels"]
    w, h, pad = 420, 320, 16
    xs, ys = [p[0] for p in xy], [p[1] for p in xy]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx, sy = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    dots = "".join(
        f'<circle cx="{pad + (px - x0) / sx * (w - 2 * pad):.1f}" '
        f'cy="{h - pad - (py - y0) / sy * (h - 2 * pad):.1f}" r="2.2" '
        f'fill="{PALETTE[c % 10]}" opacity="0.7"/>'
        for (px, py), c in zip(xy, labels, strict=True))
    frame = f'<rect x="0.5" y="0.5" width="{w - 1}" height="{h - 1}" fill="none" stroke="#cfd8dc"/>'
    return _svg(w, h, frame + dots, "PCA scatter")


def _heat_colour(z: float) -> str:
    t = max(-1.0, min(1.0, z / 2.0))
    if t >= 0:
        r, g, b = 255, int(255 - 150 * t), int(255 - 170 * t)
    else:
        r, g, b = int(255 + 170 * t), int(255 + 100 * t), 255
    return f"rgb({r},{g},{b})"


def _heatmap(profiles: list[dict[str, Any]]) -> str:
    features = [d["feature"] for d in sorted(profiles[0]["differences"],
                                             key=lambda d: d["feature"])]
    z = {(p["id"], d["feature"]): d["z"] for p in profiles for d in p["differences"]}
    cell_w, cell_h, left, top = 70, 22, 170, 24
    w, h = left + cell_w * len(profiles) + 10, top + cell_h * len(features) + 10
    parts = [f'<text x="{left + cell_w * i + cell_w / 2}" y="16" text-anchor="middle" '
             f'font-weight="600">segment {p["id"]}</text>' for i, p in enumerate(profiles)]
    for r, feature in enumerate(features):
        y = top + r * cell_h
        parts.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">{_e(feature)}</text>')
        for c, p in enumerate(profiles):
            v = z.get((p["id"], feature), 0.0)
            parts.append(f'<rect x="{left + c * cell_w}" y="{y}" width="{cell_w - 2}" '
                         f'height="{cell_h - 2}" fill="{_heat_colour(v)}"/>'
                         f'<text x="{left + c * cell_w + cell_w / 2}" y="{y + 15}" '
                         f'text-anchor="middle">{v:+.2f}</text>')
    return _svg(w, h, "".join(parts), "profile heatmap")


def _card(p: dict[str, Any]) -> str:
    colour = PALETTE[p["id"] % 10]
    top = p["differences"][:4]
    numeric = "".join(
        f"<tr><td>{_e(col)}</td><td>{_fmt(s['mean'])}</td><td>{_fmt(s['median'])}</td>"
        f"<td>{_fmt(s['q1'])} - {_fmt(s['q3'])}</td></tr>" for col, s in p["numeric"].items())
    cats = "".join(
        f"<tr><td>{_e(col)}</td><td colspan='3'>" + ", ".join(
            f"{_e(k)} {100 * v:.0f}%" for k, v in sorted(shares.items(), key=lambda kv: -kv[1]))
        + "</td></tr>" for col, shares in p["categorical"].items())
    apart = ", ".join(f"{_e(d['feature'])} ({d['z']:+.2f} sd)" for d in top)
    return (f'<div class="card" style="border-top-color:{colour}"><h3>{p["id"]}: '
            f'{_e(p.get("name", p["id"]))}</h3><div class="muted">{p["size"]:,} customers '
            f'({100 * p["share"]:.1f}%)</div><p>Sets it apart: {apart}</p><table><tr><th>'
            f"feature</th><th>mean</th><th>median</th><th>quartiles</th></tr>{numeric}{cats}"
            f"</table></div>")


def render_report(meta: dict[str, Any], *, title: str, subtitle: str) -> str:
    """The HTML report of a model, from its metadata (`Model.meta`)."""
    m, cands = meta["metrics"], meta.get("candidates", [])
    profiles, sample = meta.get("segments") or [], meta.get("report_sample")
    sil = m["silhouette"]
    sil_note = ("exact" if sil["exact"] else
                f"sampled: {sil['sample_size']:,} of {sil['n']:,} rows, 95% CI "
                f"{sil['ci95'][0]:.4f} to {sil['ci95'][1]:.4f}")
    data = meta.get("data", {})
    body = [f"<h1>{_e(title)}</h1><div class='muted'>{_e(subtitle)}</div>",
            "<h2>Run</h2><table>",
            *(f"<tr><td>{_e(k)}</td><td style='text-align:left'>{_e(v)}</td></tr>" for k, v in [
                ("data", data.get("uri")), ("rows", f"{data.get('rows', 0):,}"),
                ("data sha256", data.get("sha256")), ("k", m["k"]),
                ("chosen by", m["selection_metric"]),
                ("n_components", meta.get("parameters", {}).get("n_components")),
                ("created", meta.get("created_at")),
                ("stable ids", _stability(meta.get("stability")))]),
            "</table><h2>Quality</h2><div class='metrics'>",
            f"<div class='metric'>Silhouette<b>{sil['value']:.4f}</b>"
            f"<span class='muted'>{_e(sil_note)}</span></div>",
            f"<div class='metric'>Calinski-Harabasz<b>{_fmt(m['calinski_harabasz'])}</b></div>",
            f"<div class='metric'>Davies-Bouldin<b>{m['davies_bouldin']:.4f}</b></div>",
            f"<div class='metric'>Inertia<b>{_fmt(m['inertia'])}</b></div></div>",
            "<h2>Candidates</h2><table><tr><th>k</th><th>silhouette</th><th>Calinski-Harabasz"
            "</th><th>Davies-Bouldin</th><th>inertia</th><th>sizes</th></tr>"]
    for c in cands:
        cls = " class='chosen'" if c["k"] == m["k"] else ""
        body.append(f"<tr{cls}><td>{c['k']}</td><td>{c['silhouette']:.4f}</td><td>"
                    f"{_fmt(c['calinski_harabasz'])}</td><td>{c['davies_bouldin']:.4f}</td><td>"
                    f"{_fmt(c['inertia'])}</td><td>{', '.join(f'{s:,}' for s in c['sizes'])}"
                    f"</td></tr>")
    body.append("</table>")
    if len(cands) > 1:
        ks = [c["k"] for c in cands]
        body.append("<h2>Metrics by k</h2>")
        for key, label in [("silhouette", "Silhouette (higher is better)"),
                           ("calinski_harabasz", "Calinski-Harabasz (higher is better)"),
                           ("davies_bouldin", "Davies-Bouldin (lower is better)"),
                           ("inertia", "Inertia (elbow)")]:
            body.append(_figure(f"plot-k-{key}", _line_chart(
                ks, [c[key] for c in cands], m["k"], label), f"{label}; red: the chosen k"))
    if sample:
        body.append("<h2>Fit</h2>")
        body.append(_figure("plot-silhouette", _silhouette_plot(sample, m["k"], sil["value"]),
                            f"Silhouette of {sample['rows']:,} sampled customers by segment; "
                            f"dashed: the mean silhouette"))
        body.append(_figure("plot-scatter", _scatter(sample),
                            f"The first two principal components of the features, "
                            f"{sample['rows']:,} of {sample['of']:,} customers, coloured by "
                            f"segment"))
    if profiles:
        body.append("<h2>Profiles</h2>")
        body.append(_figure("plot-heatmap", _heatmap(profiles),
                            "Standardised difference of each feature from the whole "
                            "population (red above, blue below)"))
        body.append("<h2>Segments</h2><div class='cards'>")
        body += [_card(p) for p in profiles]
        body.append("</div>")
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>"
            f"{_e(title)}</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>")


def _stability(stability: dict[str, Any] | None) -> str:
    if not stability:
        return "first version (ids numbered by size)"
    agree = stability.get("agreement")
    share = "n/a" if agree is None else f"{100 * agree:.1f}% of rows keep their id"
    return f"matched to the previous version: {share}"
