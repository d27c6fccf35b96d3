"""The segment report: one self-contained HTML file (inline CSS and SVG, no scripts, no
network) describing a model, and its profiles as CSV. Pure: model metadata in, text out.

Modules: `render` (the page, top to bottom), `sections` (warnings, run, features,
quality, candidates), `charts` (metric against k, silhouettes, segment sizes),
`scatter` (the PCA view), `heatmap`, `cards` (one per segment), `features` (profiles as
labelled feature rows), `export` (the CSV), `base` (palette, CSS, escaping, ticks).
"""

from __future__ import annotations

from custseg.report.base import PALETTE
from custseg.report.export import PROFILE_COLUMNS, profiles_csv
from custseg.report.render import render_report

__all__ = ["PALETTE", "PROFILE_COLUMNS", "profiles_csv", "render_report"]
