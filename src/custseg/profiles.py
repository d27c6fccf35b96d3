"""Segment profiles and names: what sets each segment apart, in the data's own units.

Pure computation on the encoded training rows and their cluster labels. Per segment:
size and share; for numeric features the mean (exact) and median and quartiles (from a
seeded sample of at most `QUANTILE_SAMPLE` rows, recorded); for categorical features the
share of each category; and the standardised difference of every feature from the whole
population (for a numeric feature its segment mean in standard deviations; for a
category its share difference over the population's binomial sd). Values are after
imputation (missing values count as the median or the most frequent category).

Names are made from the two most distinguishing features, e.g. "High Income · Low Age";
`segment_names` in the config overrides them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from custseg.preprocessing import Encoded, FeatureTransform

__all__ = ["QUANTILE_SAMPLE", "name_segments", "profile_segments"]

QUANTILE_SAMPLE = 200_000
STRONG, NOTABLE = 1.0, 0.4  # |standardised difference| for "Very high" / "High"


def _quantiles(values: np.ndarray) -> list[float | None]:
    if len(values) == 0:
        return [None, None, None]
    return [float(q) for q in np.percentile(values, [25, 50, 75])]


def profile_segments(enc: Encoded, transform: FeatureTransform, labels: np.ndarray, k: int,
                     random_state: int = 0) -> list[dict[str, Any]]:
    """One profile per segment (see the module docstring)."""
    n = enc.n
    sizes = np.bincount(labels, minlength=k)
    rng = np.random.default_rng([random_state, 17])
    sample = np.arange(n) if n <= QUANTILE_SAMPLE else np.sort(
        rng.choice(n, QUANTILE_SAMPLE, replace=False))
    sample_labels = labels[sample]
    profiles: list[dict[str, Any]] = [
        {"id": c, "size": int(sizes[c]), "share": float(sizes[c] / n), "numeric": {},
         "categorical": {}, "differences": []} for c in range(k)]
    for j, name in enumerate(transform.numeric):
        scaled = enc.num[:, j]
        z_means = np.bincount(labels, weights=scaled, minlength=k) / np.maximum(sizes, 1)
        original = scaled[sample] * transform.scales[j] + transform.means[j]
        for c in range(k):
            q1, median, q3 = _quantiles(original[sample_labels == c])
            profiles[c]["numeric"][name] = {
                "mean": float(z_means[c] * transform.scales[j] + transform.means[j]),
                "median": median, "q1": q1, "q3": q3}
            profiles[c]["differences"].append(
                {"feature": name, "kind": "numeric", "z": float(z_means[c])})
    for j, name in enumerate(transform.categorical):
        cats = transform.categories[j]
        codes = enc.codes[:, j]
        population = np.bincount(codes, minlength=len(cats)) / n
        table = np.bincount(labels * len(cats) + codes, minlength=k * len(cats)).reshape(
            k, len(cats))
        for c in range(k):
            shares = table[c] / max(int(sizes[c]), 1)
            profiles[c]["categorical"][name] = dict(zip(cats, shares.tolist(), strict=True))
            for cat, share, pop in zip(cats, shares, population, strict=True):
                sd = math.sqrt(pop * (1 - pop)) if 0 < pop < 1 else 1.0
                profiles[c]["differences"].append(
                    {"feature": f"{name}={cat}", "column": name, "category": cat,
                     "kind": "categorical", "share": float(share), "z": float((share - pop) / sd)})
    for p in profiles:
        p["differences"].sort(key=lambda d: -abs(d["z"]))
        p["quantile_sample_rows"] = len(sample)
    return profiles


def _phrase(diff: dict[str, Any]) -> str | None:
    z = diff["z"]
    if diff["kind"] == "numeric":
        if abs(z) < NOTABLE:
            return None
        level = ("Very high" if z >= STRONG else "High") if z > 0 else (
            "Very low" if z <= -STRONG else "Low")
        return f"{level} {diff['feature']}"
    if z >= STRONG and diff["share"] >= 0.5:
        return f"Mostly {diff['category']}"
    if z >= STRONG:
        return f"More {diff['category']}"
    return None


def name_segments(profiles: list[dict[str, Any]], overrides: list[str] | None = None
                  ) -> list[str]:
    """A short descriptive name per segment, unique within the model."""
    if overrides:
        return list(overrides)
    phrases = [[p for p in (_phrase(d) for d in prof["differences"]) if p] for prof in profiles]
    names = [" · ".join(ph[:2]) if ph else "Typical" for ph in phrases]
    for depth in (3, 4):
        clashes = {n for n in names if names.count(n) > 1}
        if not clashes:
            break
        names = [" · ".join(ph[:depth]) if n in clashes and len(ph) >= depth else n
                 for n, ph in zip(names, phrases, strict=True)]
    seen: dict[str, int] = {}
    unique = []
    for i, name in enumerate(names):
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if names.count(name) == 1 else f"{name} #{i}")
    return unique
