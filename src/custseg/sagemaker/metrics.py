"""The training job's metric log lines and the regexes SageMaker reads them with.

The seed tracks three scores (silhouette, Calinski-Harabasz, Davies-Bouldin); the
training entry point prints one line per score and the pipeline's TrainingStep declares
one metric definition per line. Both come from here, so they cannot drift apart.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["METRIC_DEFINITIONS", "metric_lines"]

# (metric name in SageMaker, log label): a line is `{label}: {value}`
_METRICS = (
    ("silhouette_score", "Silhouette Score"),
    ("calinski_harabasz_score", "Calinski-Harabasz Index"),
    ("davies_bouldin_score", "Davies-Bouldin Index"),
)
_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"

METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": name, "Regex": f"{label}: {_NUMBER}"} for name, label in _METRICS
]


def metric_lines(metrics: dict[str, Any]) -> list[str]:
    """The three log lines for a model's `meta["metrics"]` (a score that could not be
    computed, e.g. NaN, is printed as `nan` and matches no regex, so SageMaker records
    nothing rather than a wrong number)."""
    silhouette = metrics["silhouette"]
    values = (
        silhouette["value"] if isinstance(silhouette, dict) else silhouette,
        metrics["calinski_harabasz"],
        metrics["davies_bouldin"],
    )
    out = []
    for (_, label), value in zip(_METRICS, values, strict=True):
        number = float(value) if value is not None else math.nan
        out.append(f"{label}: {number:.6f}" if math.isfinite(number) else f"{label}: nan")
    return out
