"""The small sample of training rows a report draws: silhouettes and a 2-D view.

Computed at train time (when the rows are at hand) and stored in the model: a seeded
sample of at most `REPORT_SAMPLE` rows with their segment, their silhouette in the space
KMeans clustered, and their coordinates on the first two principal components of the
full feature space (fitted on the sample), for the report's silhouette and scatter plots,
with each axis's share of the variance and its strongest loadings ("axes"). Each axis is
signed so that its largest loading is positive, which makes the picture reproducible.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from custseg.core import metrics
from custseg.core.preprocessing import Encoded, FeatureTransform
from custseg.core.train import Projection, project

__all__ = ["REPORT_SAMPLE", "report_sample"]

REPORT_SAMPLE = 2000
LOADINGS = 3  # strongest loadings kept per axis


def report_sample(enc: Encoded, transform: FeatureTransform, projection: Projection,
                  labels: np.ndarray, k: int, random_state: int = 0) -> dict[str, Any]:
    n = enc.n
    rng = np.random.default_rng([random_state, 23])
    index = np.arange(n) if n <= REPORT_SAMPLE else np.sort(
        rng.choice(n, REPORT_SAMPLE, replace=False))
    sample = Encoded(num=enc.num[index], codes=enc.codes[index])
    dense = sample.dense(transform)
    centred = dense - dense.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    vt = vt[:2]
    peaks = vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)]
    vt = vt * np.where(peaks < 0, -1.0, 1.0)[:, None]
    xy = centred @ vt.T
    if xy.shape[1] < 2:
        xy = np.column_stack([xy, np.zeros(len(xy))])
    variance = singular**2
    explained = variance[:2] / variance.sum() if variance.sum() > 0 else np.zeros(2)
    lab = labels[index]
    sil = metrics.silhouette_values(project(sample, transform, projection), lab, k,
                                    sampled=True)  # shown to 4 decimals
    return {"rows": len(index), "of": n, "labels": lab.tolist(),
            "silhouette": np.round(sil, 4).tolist(), "xy": np.round(xy, 4).tolist(),
            "axes": _axes(vt, explained, transform.feature_names)}


def _axes(vt: np.ndarray, explained: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    """Per principal axis: its label, share of the variance and strongest loadings."""
    axes = []
    for i in range(2):
        if i >= len(vt):
            axes.append({"label": f"PC{i + 1} (none: one feature)", "explained": 0.0,
                         "loadings": []})
            continue
        top = np.argsort(-np.abs(vt[i]), kind="stable")[:LOADINGS]
        share = float(explained[i])
        axes.append({"label": f"PC{i + 1} ({100 * share:.0f}% of variance)",
                     "explained": round(share, 4),
                     "loadings": [[names[j], round(float(vt[i, j]), 4)] for j in top]})
    return axes
