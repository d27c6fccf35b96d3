"""`custseg monitor --html`: the drift report as an HTML section in the segment report's
style (`report/base`), and as a self-contained page. Everything shown is escaped."""

from __future__ import annotations

from typing import Any

from custseg.report.base import CSS, e, fmt, pct

__all__ = ["drift_page", "drift_section"]


def _flag(drift: list[str]) -> str:
    return f" <span class='tag'>drift: {e(', '.join(drift))}</span>" if drift else ""


def _headline(report: dict[str, Any]) -> str:
    segments, distance = report.get("segments") or {}, report.get("distance") or {}
    psis = [f["psi"] for f in report["features"] if f.get("psi") is not None]
    cards = [
        ("Records", f"{report['records']:,}", report.get("source", "")),
        ("Largest feature PSI", fmt(max(psis) if psis else None, 3),
         f"threshold {fmt(report['thresholds']['psi'], 3)}"),
        ("Segment-share PSI", fmt(segments.get("psi"), 3),
         f"chi-square p {fmt(segments.get('p_value'), 2)}"),
        ("Beyond training p95", pct(distance.get("far_share")), "5% expected"),
    ]
    return "<div class='metrics'>" + "".join(
        f"<div class='metric'><span class='muted'>{e(t)}</span><b>{e(v)}</b>"
        f"<span class='muted'>{e(n)}</span></div>" for t, v, n in cards) + "</div>"


def _features(report: dict[str, Any]) -> str:
    rows = ["<tr><th>feature</th><th class='text'>kind</th><th>PSI</th><th>missing</th>"
            "<th>missing (training)</th><th>unseen</th><th>wrong type</th></tr>"]
    for f in report["features"]:
        note = f" <span class='muted'>{e(f['note'])}</span>" if f.get("note") else ""
        rows.append(
            f"<tr><td>{e(f['feature'])}{_flag(f['drift'])}{note}</td>"
            f"<td class='text'>{e(f['kind'])}</td><td>{fmt(f['psi'], 3)}</td>"
            f"<td>{pct(f['missing_share'])}</td><td>{pct(f['training_missing_share'])}</td>"
            f"<td>{pct(f['unseen_share'])}</td><td>{pct(f['invalid_share'])}</td></tr>")
    return "<h3>Features</h3><table class='features'>" + "".join(rows) + "</table>"


def _segments(report: dict[str, Any]) -> str:
    segments = report.get("segments")
    if not segments:
        return ""
    rows = ["<tr><th>segment</th><th>records</th><th>share</th><th>training share</th></tr>"]
    training = segments["training_shares"]
    for i, (count, share) in enumerate(zip(segments["counts"], segments["shares"],
                                           strict=True)):
        expected = training[i] if i < len(training) else None
        rows.append(f"<tr><td>{i}</td><td>{count:,}</td><td>{pct(share)}</td>"
                    f"<td>{pct(expected)}</td></tr>")
    return (f"<h3>Segment shares{_flag(segments['drift'])}</h3><table>" + "".join(rows)
            + "</table>")


def _alerts(report: dict[str, Any]) -> str:
    if not report["alerts"]:
        return "<p class='sentence'>No drift past the thresholds.</p>"
    items = "".join(f"<li>{e(a)}</li>" for a in report["alerts"])
    return f"<div class='warnings'><b>Drift</b><ul>{items}</ul></div>"


def _schema(report: dict[str, Any]) -> str:
    schema = report["schema"]
    parts = []
    if schema["missing_columns"]:
        parts.append("missing: " + ", ".join(schema["missing_columns"]))
    if schema["extra_columns"]:
        parts.append("not used by the model: " + ", ".join(schema["extra_columns"]))
    return f"<p class='muted'>Fields {e('; '.join(parts))}</p>" if parts else ""


def drift_section(result: dict[str, Any]) -> str:
    """The section (`MonitorResult.to_dict()`): headline, alerts, features, segments."""
    notes = "".join(f"<p class='muted'>{e(n)}</p>" for n in result.get("notes", []))
    return (f"<section id='drift'><h2>Drift of {e(result['endpoint'])} "
            f"({e(result['model_version'])})</h2>"
            f"<div class='muted'>{e(result['source'])}</div>{_headline(result)}"
            f"{_alerts(result)}{notes}{_features(result)}{_segments(result)}"
            f"{_schema(result)}</section>")


def drift_page(result: dict[str, Any]) -> str:
    title = f"Drift of {result['endpoint']}"
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><meta "
            "name='viewport' content='width=device-width,initial-scale=1'><title>"
            f"{e(title)}</title><style>{CSS}</style></head><body>"
            f"{drift_section(result)}</body></html>")
