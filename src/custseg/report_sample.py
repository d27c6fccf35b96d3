"""The small sample of training rows a report draws: silhouettes and a 2-D view.

Computed at train time (when the rows are at hand) and stored in the model: a seeded
sample of at most `REPORT_SAMPLE` rows with their segment, their silhouette in the space
KMeans clustered, and their coordinates on the first two principal components of the
full feature space (fitted on the sample), for the report's silhouette and scatter plots.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from custseg import metrics
from custseg.preprocessing import Encoded, FeatureTransform
from custseg.train import Projection, project

__all__ = ["REPORT_SAMPLE", "report_sample"]

REPORT_SAMPLE = 2000


def report_sample(enc: Encoded, transform: FeatureTransform, projection: Projection,
                  labels: np.ndarray, k: int, random_state: int = 0) -> dict[str, Any]:
    n = enc.n
    rng = np.random.default_rng([random_state, 23])
    index = np.arange(n) if n <= REPORT_SAMPLE else np.sort(
        rng.choice(n, REPORT_SAMPLE, replace=False))
    sample = Encoded(num=enc.num[index], codes=enc.codes[index])
    dense = sample.dense(transform)
    centred = dense - dense.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    if xy.shape[1] < 2:
        xy = np.column_stack([xy, np.zeros(len(xy))])
    lab = labels[index]
    sil = metrics.silhouette_values(project(sample, transform, projection), lab, k)
    return {"rows": len(index), "of": n, "labels": lab.tolist(),
            "silhouette": np.round(sil, 4).tolist(), "xy": np.round(xy, 4).tolist()}
