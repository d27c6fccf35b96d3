"""One card per segment: its name, size and share, the features that set it apart (against
all customers), every feature folded under "All features", and the columns described but
not used for segmenting. Cards wrap their text: nothing overflows at any number of
features or length of name (tested in Chromium)."""

from __future__ import annotations

from typing import Any

from custseg.report.base import colour, e, fmt, pct
from custseg.report.features import FeatureRow

__all__ = ["cards"]

APART = 5  # features listed as setting a segment apart
CARD_ROWS = 60  # rows under "All features" before pointing to the CSV export
LEVELS = 6  # category levels listed per column


def _value(row: FeatureRow, value: float | None) -> str:
    return pct(value) if row.as_share else fmt(value)


def _apart(sid: int, rows: list[FeatureRow]) -> str:
    top = sorted(rows, key=lambda r: -abs(r.z.get(sid, 0.0)))[:APART]
    if not top:
        return ""
    body = "".join(
        f"<tr><td>{e(r.label)}</td><td>{_value(r, r.value.get(sid))}</td>"
        f"<td>{_value(r, r.overall)}</td><td>{r.z.get(sid, 0.0):+.2f}</td></tr>" for r in top)
    return ("<h4>Sets it apart</h4><table class='apart'><colgroup><col style='width:43%'>"
            "<col style='width:21%'><col style='width:21%'><col style='width:15%'></colgroup>"
            "<tr><th>feature</th><th>here</th><th>all</th><th>z</th></tr>" + body + "</table>")


def _level(column: str, level: str, value_labels: dict[str, Any]) -> str:
    return str((value_labels.get(column) or {}).get(level, level))


def _shares(column: str, shares: dict[str, float], value_labels: dict[str, Any]) -> str:
    ordered = sorted(shares.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{e(_level(column, k, value_labels))} {pct(v, 0)}"
                     for k, v in ordered[:LEVELS])
    return text + (f", \u2026 {len(ordered) - LEVELS} more" if len(ordered) > LEVELS else "")


def _all_features(p: dict[str, Any], value_labels: dict[str, Any]) -> str:
    numeric, categorical = p.get("numeric") or {}, p.get("categorical") or {}
    rows = [f"<tr><td>{e(col)}</td><td>{fmt(s.get('mean'))}</td><td>{fmt(s.get('median'))}"
            f"</td><td>{fmt(s.get('q1'))} to {fmt(s.get('q3'))}</td></tr>"
            for col, s in numeric.items()]
    rows += [f"<tr><td>{e(col)}</td><td colspan='3' class='text'>"
             f"{_shares(col, shares, value_labels)}</td></tr>"
             for col, shares in categorical.items()]
    if not rows:
        return ""
    more = ""
    if len(rows) > CARD_ROWS:
        more = (f"<p class='muted'>{len(rows) - CARD_ROWS} more in the CSV export "
                f"(<code>custseg report ID --profiles-csv FILE</code>).</p>")
    return (f"<details><summary>All features ({len(rows)})</summary><table class='all'>"
            "<colgroup><col style='width:34%'><col style='width:20%'><col style='width:20%'>"
            "<col style='width:26%'></colgroup><tr><th>feature</th><th>mean</th>"
            "<th>median</th><th>quartiles</th></tr>" + "".join(rows[:CARD_ROWS])
            + f"</table>{more}</details>")


def _profile_only(p: dict[str, Any], overall: dict[str, Any], value_labels: dict[str, Any]
                  ) -> str:
    described = p.get("profile_only") or {}
    rows = []
    for col, s in described.items():
        if "mean" in s:
            value = f"mean {fmt(s['mean'])} (all {fmt(overall.get(col))})"
        else:
            value = _shares(col, s.get("shares") or {}, value_labels)
        rows.append(f"<tr><td>{e(col)}</td><td class='text'>{value}</td></tr>")
    if not rows:
        return ""
    return ("<h4>Described, not used for segmenting</h4><table><colgroup>"
            "<col style='width:34%'><col style='width:66%'></colgroup>" + "".join(rows)
            + "</table>")


def _overall_means(segments: list[dict[str, Any]]) -> dict[str, float]:
    sums: dict[str, tuple[float, float]] = {}
    for p in segments:
        for col, s in (p.get("profile_only") or {}).items():
            if s.get("mean") is not None:
                w, total = sums.get(col, (0.0, 0.0))
                sums[col] = (w + p.get("size", 0), total + p.get("size", 0) * s["mean"])
    return {col: total / w for col, (w, total) in sums.items() if w}


def cards(segments: list[dict[str, Any]], rows: list[FeatureRow], names: dict[int, str],
          value_labels: dict[str, Any]) -> str:
    overall = _overall_means(segments)
    out = ["<div class='cards'>"]
    for p in segments:
        sid, share = int(p["id"]), float(p.get("share", 0))
        out.append(
            f"<div class='card' id='segment-{sid}' style='border-top-color:{colour(sid)}'>"
            f"<h3>{sid}: {e(names[sid])}</h3><div class='muted'>"
            f"{int(p.get('size', 0)):,} customers ({pct(share)})</div><div class='bar'>"
            f"<span style='width:{100 * share:.1f}%;background:{colour(sid)}'></span></div>"
            + _apart(sid, rows) + _all_features(p, value_labels)
            + _profile_only(p, overall, value_labels) + "</div>")
    out.append("</div>")
    return "".join(out)
