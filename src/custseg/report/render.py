"""The whole report, top to bottom: warnings, the run, its input columns, quality, the
candidates for k, the metrics against k, the fit (silhouettes, PCA scatter), the profiles
(segment sizes, heatmap) and one card per segment."""

from __future__ import annotations

from typing import Any

from custseg.report import cards, charts, sections
from custseg.report.base import CSS, e, figure
from custseg.report.features import feature_rows, segment_name
from custseg.report.heatmap import heatmap
from custseg.report.scatter import scatter

__all__ = ["render_report"]

CURVES = [("silhouette", "Silhouette", "higher is better"),
          ("calinski_harabasz", "Calinski-Harabasz", "higher is better"),
          ("davies_bouldin", "Davies-Bouldin", "lower is better"),
          ("inertia", "Inertia", "look for the elbow")]


def _curves(meta: dict[str, Any]) -> list[str]:
    cands, chosen = meta.get("candidates") or [], (meta.get("metrics") or {}).get("k")
    if len(cands) < 2:
        return []
    out = ["<h2>Metrics by k</h2>"]
    any_ineligible = any(c.get("eligible") is False for c in cands)
    for key, label, reading in CURVES:
        points = [(int(c["k"]), float(c[key]), c.get("eligible") is not False)
                  for c in cands if c.get(key) is not None]
        if len(points) < 2:
            continue
        chart, width = charts.line_chart(points, int(chosen or 0), label)
        note = f"{reading}; red: the chosen k" + (
            "; hollow: not eligible" if any_ineligible else "")
        out.append(figure(f"plot-k-{key}", chart, e(note), width))
    return out


def _fit(meta: dict[str, Any], names: dict[int, str], categorical: set[str]) -> list[str]:
    sample, m = meta.get("report_sample"), meta.get("metrics") or {}
    if not sample or not sample.get("labels"):
        return []
    mean = float((m.get("silhouette") or {}).get("value") or 0.0)
    sil, sil_w = charts.silhouette_plot(sample, int(m.get("k") or 0), mean)
    dots, dots_w, caption = scatter(sample, names, categorical, meta.get("value_labels") or {})
    return ["<h2>Fit</h2>",
            figure("plot-silhouette", sil,
                   f"Silhouette of {int(sample['rows']):,} sampled customers, sorted within "
                   f"each segment: above 0 a customer is closer to its own segment than to the "
                   f"next; dashed: the mean. Colours as in the scatter.", sil_w),
            figure("plot-scatter", dots, caption, dots_w)]


def render_report(meta: dict[str, Any], *, title: str, subtitle: str) -> str:
    """The HTML report of a model, from its metadata (`Model.meta`, plus `schema`: the
    model's `Schema.to_dict()`). Every field beyond the metrics is optional."""
    segments = list(meta.get("segments") or [])
    names = {int(p["id"]): segment_name(p) for p in segments}
    value_labels = meta.get("value_labels") or {}
    categorical = set((meta.get("schema") or {}).get("categorical") or [])
    for p in segments:
        categorical |= set(p.get("categorical") or {})
    body = [f"<h1>{e(title)}</h1><div class='muted'>{e(subtitle)}</div>",
            sections.warnings(meta), sections.run(meta), sections.features(meta),
            sections.quality(meta), sections.candidates(meta), *_curves(meta),
            *_fit(meta, names, categorical)]
    if segments:
        rows = feature_rows(segments, value_labels)
        sizes, sizes_w = charts.size_bars(segments, names)
        heat, heat_w, heat_caption = heatmap(rows, segments, names)
        body += ["<h2>Profiles</h2>",
                 figure("plot-sizes", sizes, "Customers in each segment", sizes_w),
                 figure("plot-heatmap", heat, heat_caption, heat_w),
                 "<h2>Segments</h2>", cards.cards(segments, rows, names, value_labels)]
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><meta "
            "name='viewport' content='width=device-width,initial-scale=1'><title>"
            f"{e(title)}</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>")
