"""The report's text sections: warnings, the run, the quality metrics in both spaces, the
candidate table with the sentence explaining the choice of k, and the input columns."""

from __future__ import annotations

from typing import Any

from custseg.report.base import e, fmt, pct

__all__ = ["candidates", "columns", "features", "quality", "run", "scored_note", "warnings"]

FEATURES_OPEN = 40  # longer column tables start folded


def warnings(meta: dict[str, Any]) -> str:
    items = [w for w in meta.get("warnings") or [] if str(w).strip()]
    if not items:
        return ""
    lines = "".join(f"<li>{e(w)}</li>" for w in items)
    return (f"<div class='warnings' id='warnings' role='note'><b>{len(items)} "
            f"warning{'s' if len(items) != 1 else ''}</b><ul>{lines}</ul></div>")


def _stability(stability: dict[str, Any] | None) -> str:
    if not stability:
        return "first version (ids numbered by size)"
    agree = stability.get("agreement")
    share = "n/a" if agree is None else f"{100 * agree:.1f}% of rows keep their id"
    return f"matched to the previous version: {share}"


def run(meta: dict[str, Any]) -> str:
    m, data = meta.get("metrics") or {}, meta.get("data") or {}
    rows = [("data", data.get("uri")), ("rows", f"{int(data.get('rows') or 0):,}"),
            ("data sha256", data.get("sha256")), ("k", m.get("k")),
            ("chosen by", m.get("selection_metric")),
            ("n_components", (meta.get("parameters") or {}).get("n_components")),
            ("created", meta.get("created_at")),
            ("stable ids", _stability(meta.get("stability")))]
    body = "".join(f"<tr><td>{e(k)}</td><td class='text'>{e('-' if v is None else v)}</td></tr>"
                   for k, v in rows)
    return f"<h2>Run</h2><table>{body}</table>"


def _silhouette_note(sil: dict[str, Any]) -> str:
    if sil.get("exact", True) or not sil.get("sample_size"):
        return "exact, over every row"
    note = f"sampled: {int(sil['sample_size']):,} of {int(sil.get('n') or 0):,} rows"
    ci = sil.get("ci95")
    if ci:
        note += f", 95% CI {ci[0]:.4f} to {ci[1]:.4f}"
    return note


def _metric_boxes(m: dict[str, Any], inertia: bool) -> str:
    sil = m.get("silhouette") or {}
    boxes = [f"<div class='metric'>Silhouette<b>{fmt(sil.get('value'))}</b>"
             f"<span class='muted'>{e(_silhouette_note(sil))}</span></div>",
             f"<div class='metric'>Calinski-Harabasz<b>{fmt(m.get('calinski_harabasz'))}</b>"
             f"<span class='muted'>higher is better</span></div>",
             f"<div class='metric'>Davies-Bouldin<b>{fmt(m.get('davies_bouldin'))}</b>"
             f"<span class='muted'>lower is better</span></div>"]
    if inertia:
        boxes.append(f"<div class='metric'>Inertia<b>{fmt(m.get('inertia'))}</b><span "
                     f"class='muted'>sum of squared distances to the centroids</span></div>")
    return "<div class='metrics'>" + "".join(boxes) + "</div>"


def _space(meta: dict[str, Any]) -> str:
    space = (meta.get("metrics") or {}).get("space")
    if space:
        return str(space)
    p = (meta.get("parameters") or {}).get("n_components")
    return f"PCA, {p} components" if isinstance(p, int) else "PCA"


def quality(meta: dict[str, Any]) -> str:
    m = meta.get("metrics") or {}
    out = ["<h2>Quality</h2>", f"<h3 id='quality-kmeans'>In the space KMeans ran in: "
           f"{e(_space(meta))}</h3>", _metric_boxes(m, inertia=True)]
    full = m.get("feature_space")
    if full:
        out += ["<h3 id='quality-features'>In the full standardised feature space</h3>",
                _metric_boxes(full, inertia=False)]
    return "".join(out)


def _min_share(c: dict[str, Any]) -> float | None:
    if c.get("min_share") is not None:
        return float(c["min_share"])
    sizes = c.get("sizes") or []
    return min(sizes) / sum(sizes) if sizes and sum(sizes) else None


def candidates(meta: dict[str, Any]) -> str:
    cands, chosen = meta.get("candidates") or [], (meta.get("metrics") or {}).get("k")
    head = ("<h2>Candidates</h2><table id='candidates'><tr><th>k</th><th>silhouette</th>"
            "<th>Calinski-Harabasz</th><th>Davies-Bouldin</th><th>inertia</th>"
            "<th>smallest share</th><th>stability</th><th class='text'>sizes</th></tr>")
    rows = []
    for c in cands:
        eligible = c.get("eligible", True) is not False
        cls = "chosen" if c.get("k") == chosen else ("" if eligible else "ineligible")
        tag = "" if eligible else " <span class='tag'>not eligible</span>"
        sizes = ", ".join(f"{int(s):,}" for s in c.get("sizes") or [])
        rows.append(f"<tr class='{cls}'><td>{e(c.get('k'))}{tag}</td>"
                    f"<td>{fmt(c.get('silhouette'))}</td>"
                    f"<td>{fmt(c.get('calinski_harabasz'))}</td>"
                    f"<td>{fmt(c.get('davies_bouldin'))}</td><td>{fmt(c.get('inertia'))}</td>"
                    f"<td>{pct(_min_share(c))}</td><td>{fmt(c.get('stability'), 3)}</td>"
                    f"<td class='text'>{sizes}</td></tr>")
    sentence = (meta.get("selection") or {}).get("sentence")
    note = f"<p class='sentence' id='selection'>{e(sentence)}</p>" if sentence else ""
    return head + "".join(rows) + "</table>" + note + _scored_note(cands)


def scored_note(cands: list[dict[str, Any]]) -> str:
    """What a sweep's candidate rows were computed on, when not all rows."""
    rows = {int(c["scored_rows"]) for c in cands if c.get("scored_rows")}
    if not rows:
        return ""
    return (f"k other than the chosen one: centres fitted on the seeding sample, inertia "
            f"(scaled to all rows), Calinski-Harabasz, Davies-Bouldin and sizes on a seeded "
            f"sample of {max(rows):,} rows; the chosen k is refitted and scored on all rows")


def _scored_note(cands: list[dict[str, Any]]) -> str:
    text = scored_note(cands)
    return f"<p class='note' id='scored-rows'>{e(text)}</p>" if text else ""


def columns(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Every input column with its role, transform and reason (from the schema; older
    models' schemas only list the roles and reasons)."""
    schema = meta.get("schema") or {}
    if schema.get("columns"):
        return [dict(c) for c in schema["columns"]]
    reasons = schema.get("reasons") or {}
    transforms = {"numeric": "median imputation, standardised",
                  "categorical": "most-frequent imputation, one-hot", "ignored": "-"}
    return [{"name": name, "role": role, "transform": transforms[role],
             "reason": reasons.get(name, "declared" if not schema.get("inferred") else "")}
            for role in ("numeric", "categorical", "ignored") for name in schema.get(role) or []]


def features(meta: dict[str, Any]) -> str:
    cols = columns(meta)
    if not cols:
        return ""
    counts: dict[str, int] = {}
    for c in cols:
        counts[str(c.get("role"))] = counts.get(str(c.get("role")), 0) + 1
    summary = ", ".join(f"{n} {e(role.replace('_', '-'))}" for role, n in counts.items())
    rows = "".join(f"<tr><td>{e(c.get('name'))}</td><td>{e(c.get('role') or '-')}</td>"
                   f"<td>{e(c.get('transform') or '-')}</td><td>{e(c.get('reason') or '-')}"
                   f"</td></tr>" for c in cols)
    table = (f"<table class='features' id='features'><tr><th>column</th><th>role</th>"
             f"<th>transform</th><th>reason</th></tr>{rows}</table>")
    opened = " open" if len(cols) <= FEATURES_OPEN else ""
    return (f"<h2>Features</h2><details{opened}><summary>{len(cols)} input column"
            f"{'s' if len(cols) != 1 else ''}: {summary}</summary>{table}</details>")
