"""How good a clustering is, and which k to choose.

* Stability: KMeans refitted on `STABILITY_FITS` seeded subsamples (80% of the rows, at
  most `STABILITY_ROWS`), each compared with the full fit on the same rows by the
  adjusted Rand index (ARI); the mean is the stability. Cheap at any size: it reads
  only the projected sample, never the data again. Not measured (None) where the
  subsample is too small for k (fewer than `STABILITY_MIN_ROWS` rows a cluster).
* The choice of k (when swept): a candidate is eligible when its smallest segment holds
  at least `min_share` of the rows and its stability is at least `stability`; among the
  eligible, the smallest k whose score is within `tolerance` (a fraction) of the best
  eligible score is chosen. A stability not measured does not make a candidate
  eligible. With no eligible candidate, the best score among the stable ones wins (else
  the best score), with a warning.
* Metrics in the full standardised feature space (the space distances use before PCA,
  one-hot weights included), computed from the encoded rows without building the
  one-hot matrix: Calinski-Harabasz and Davies-Bouldin exact; silhouette exact up to
  `FEATURE_SILHOUETTE_SAMPLE` rows (3,000: each pair costs d dimensions, not PCA's p)
  and sampled above it, reported with the sample size and a 95% CI.

Pure computation: arrays in, values out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from custseg.core import kmeans, metrics, rowblocks
from custseg.core.preprocessing import Encoded, FeatureTransform
from custseg.core.segment_sums import SegmentSums, segment_sums

__all__ = [
    "FEATURE_SILHOUETTE_SAMPLE",
    "STABILITY_FITS",
    "STABILITY_MIN_ROWS",
    "STABILITY_ROWS",
    "Choice",
    "adjusted_rand",
    "choose_k",
    "feature_space_metrics",
    "stability",
]

FEATURE_SILHOUETTE_SAMPLE = 3_000
STABILITY_FITS = 3
STABILITY_ROWS = 10_000
STABILITY_MIN_ROWS = 5  # subsampled rows a cluster, at least, for a refit to say anything


def adjusted_rand(a: np.ndarray, b: np.ndarray) -> float:
    """The adjusted Rand index of two labelings (scikit-learn's, in numpy)."""
    n = len(a)
    if n < 2:
        return 1.0
    a = np.unique(a, return_inverse=True)[1]
    b = np.unique(b, return_inverse=True)[1]
    kb = int(b.max()) + 1
    table = np.bincount(a * kb + b, minlength=(int(a.max()) + 1) * kb).astype(np.float64)

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1) / 2).sum())

    table = table.reshape(-1, kb)
    together = pairs(table)
    rows, cols = pairs(table.sum(axis=1)), pairs(table.sum(axis=0))
    expected = rows * cols / (n * (n - 1) / 2)
    best = (rows + cols) / 2
    if best == expected:
        return 1.0
    return (together - expected) / (best - expected)


def stability(z: np.ndarray, centers: np.ndarray, k: int, *, random_state: int = 0,
              n_init: int = 3) -> float | None:
    """Mean ARI between refits on seeded subsamples and the fit whose centres are given
    (see module); only the subsampled rows are assigned to them. None (not measured) when
    the subsample holds fewer than `STABILITY_MIN_ROWS` rows a cluster."""
    n = len(z)
    m = min(int(0.8 * n), STABILITY_ROWS)
    if m < STABILITY_MIN_ROWS * k:
        return None
    rng = np.random.default_rng([random_state, 41, k])
    scores = []
    for b in range(STABILITY_FITS):
        index = np.sort(rng.choice(n, m, replace=False))
        fit = kmeans.fit(z[index], k, n_init=n_init, random_state=random_state + 1000 * (b + 1))
        scores.append(adjusted_rand(fit.labels, kmeans.assign(z[index], centers)[0]))
    return float(np.mean(scores))


def _below(value: float, limit: float, start: int) -> str:
    """`value` with enough decimals to read as below `limit` (2.1 < 2.5, 0.7996 < 0.8)."""
    for digits in range(start, 7):
        text = f"{value:.{digits}f}"
        if float(text) < limit:
            return text
    return f"{value:.6g}"


@dataclass(frozen=True)
class Choice:
    """The chosen candidate's position, why, and each candidate's eligibility."""

    index: int
    sentence: str
    eligible: list[bool]
    notes: list[str]  # per candidate: why it is not eligible ("" when it is)
    warnings: list[str]


def choose_k(ks: list[int], scores: list[float], min_shares: list[float],
             stabilities: list[float | None], *, metric: str, min_share: float,
             min_stability: float, tolerance: float, shown: list[float],
             swept: tuple[int, int] | None = None) -> Choice:
    """Pick k (see the module docstring). `scores` are higher-is-better; `shown` are the
    metric's own values for the sentence; a stability of None was not measured.
    `swept`: the range asked for, when the data allowed only part of it (`ks`)."""
    notes = []
    for k, share, stab in zip(ks, min_shares, stabilities, strict=True):
        why = []
        if share < min_share:
            why.append(f"smallest segment {_below(share * 100, min_share * 100, 1)}% < "
                       f"{min_share * 100:g}%")
        if stab is None:
            why.append(f"stability not measured (too few rows for k={k})")
        elif stab < min_stability:
            why.append(f"stability {_below(stab, min_stability, 2)} < {min_stability:g}")
        notes.append("; ".join(why))
    eligible = [not note for note in notes]
    warnings = []
    name = metric.replace("_", "-")
    if len(ks) == 1:
        i = 0
        sentence = f"k={ks[0]} was fixed in the config."
        if not eligible[0]:
            warnings.append(f"k={ks[0]}: {notes[0]} (tuning.min_share, tuning.stability)")
        return Choice(0, sentence, eligible, notes, warnings)
    pool = [i for i in range(len(ks)) if eligible[i]]
    if not pool:
        stable = [j for j, stab in enumerate(stabilities)
                  if stab is not None and stab >= min_stability]
        i = max(stable or range(len(ks)), key=lambda j: scores[j])
        among = "the stable candidates" if stable else "all candidates"
        warnings.append(
            f"no k in {ks[0]}..{ks[-1]} gives every segment {min_share * 100:g}% of the rows and "
            f"stability {min_stability:g}; chose k={ks[i]} by {name} among {among}")
        return Choice(i, f"k={ks[i]} has the best {name} ({shown[i]:.4g}) among {among}; "
                      f"no candidate met the share and stability thresholds.", eligible, notes,
                      warnings)
    best = max(pool, key=lambda j: scores[j])
    bar = scores[best] - tolerance * abs(scores[best])
    i = min(j for j in pool if scores[j] >= bar)
    ruled_out = len(ks) - len(pool)
    tail = f"; {ruled_out} candidate{'s' if ruled_out > 1 else ''} ruled out" \
        if ruled_out else ""
    if i == best:
        head = f"k={ks[i]} has the best {name} ({shown[i]:.4g})"
    else:
        head = (f"k={ks[i]} is the smallest k whose {name} ({shown[i]:.4g}) is within "
                f"{tolerance:.0%} of the best ({shown[best]:.4g} at k={ks[best]})")
    sentence = (f"{head} among candidates whose smallest segment holds at least "
                f"{min_share * 100:g}% of the rows and whose subsample refits agree with the full "
                f"fit (stability {stabilities[i]:.2f} >= {min_stability:g}){tail}.")
    if swept is not None and ks[-1] < swept[1]:
        warnings.append(f"only {ks[-1]} distinct rows after feature engineering and PCA: k was "
                        f"swept over {ks[0]}..{ks[-1]}, not {swept[0]}..{swept[1]}")
    elif ks[i] == ks[-1]:
        warnings.append(f"k={ks[i]} is the top of the range {ks[0]}..{ks[-1]}: more segments "
                        f"may fit better (raise n_clusters.max)")
    elif ks[i] == ks[0] and ks[0] > 2:
        warnings.append(f"k={ks[i]} is the bottom of the range {ks[0]}..{ks[-1]}: fewer "
                        f"segments may fit better (lower n_clusters.min)")
    return Choice(i, sentence, eligible, notes, warnings)


def _feature_sums(sums: SegmentSums, transform: FeatureTransform
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-cluster sizes, feature sums (k, d) and sums of squared norms in the weighted
    feature space, from the segments' totals (no one-hot matrix of the data)."""
    a = sums.numeric.shape[1]
    k = len(sums.sizes)
    features = np.zeros((k, transform.n_features))
    features[:, :a] = sums.numeric
    squares = sums.squares.copy()
    for j, (off, counts) in enumerate(zip(transform.offsets, sums.levels, strict=True)):
        w = float(transform.weights[j])
        features[:, off : off + counts.shape[1]] = w * counts
        squares += w * w * counts.sum(axis=1)
    return sums.sizes.astype(np.float64), features, squares


def _distance_sums(enc: Encoded, transform: FeatureTransform, labels: np.ndarray,
                   means: np.ndarray) -> np.ndarray:
    """Per cluster, the sum of its rows' Euclidean distances to its mean in the feature
    space."""
    a = enc.num.shape[1]
    k = len(means)
    mean_sq_cat = np.zeros(k)
    tables = []  # per categorical column: its block of the means, a 0 column for unknowns
    for off, cats in zip(transform.offsets, transform.categories, strict=True):
        block = means[:, off : off + len(cats)]
        mean_sq_cat += (block**2).sum(axis=1)
        tables.append(np.hstack([block, np.zeros((k, 1))]))

    def work(s: int, e: int) -> np.ndarray:
        lab = labels[s:e]
        diff = enc.num[s:e] - means[lab, :a]
        d2 = rowblocks.sq_norms(diff)
        d2 += mean_sq_cat[lab]
        for j, table in enumerate(tables):
            w = float(transform.weights[j])
            codes = enc.codes[s:e, j]
            d2 += (w * w) * (codes >= 0) - (2.0 * w) * table[lab, codes]  # -1: the 0 column
        np.maximum(d2, 0.0, out=d2)
        return np.asarray(rowblocks.indicator(lab, k) @ np.sqrt(d2, out=d2))

    total = np.zeros(k)
    for part in rowblocks.map_blocks(work, enc.n):
        total += part
    return total


def feature_space_metrics(enc: Encoded, transform: FeatureTransform, labels: np.ndarray,
                          k: int, *, sample_index: np.ndarray | None,
                          totals: SegmentSums | None = None) -> dict[str, Any]:
    """Silhouette, Calinski-Harabasz and Davies-Bouldin in the feature space (`totals`:
    the segments' totals, when the caller has them)."""
    n = enc.n
    totals = totals or segment_sums(enc, transform, labels, k, original=[])
    sizes, sums, sq = _feature_sums(totals, transform)
    means = sums / np.maximum(sizes, 1)[:, None]
    overall = sums.sum(axis=0) / n
    extra = float((sizes * ((means - overall) ** 2).sum(axis=1)).sum())
    intra = float(sq.sum() - (sizes * (means**2).sum(axis=1)).sum())
    ch = 1.0 if intra <= 0.0 else extra * (n - k) / (intra * (k - 1))
    dist = _distance_sums(enc, transform, labels, means) / np.maximum(sizes, 1)
    centroid = np.sqrt(((means[:, None, :] - means[None, :, :]) ** 2).sum(axis=2))
    if np.allclose(dist, 0) or np.allclose(centroid, 0):
        db = 0.0
    else:
        centroid[centroid == 0] = np.inf
        scores = (dist[:, None] + dist[None, :]) / centroid
        np.fill_diagonal(scores, -np.inf)
        db = float(scores.max(axis=1).mean())
    if sample_index is None:
        sil = metrics.silhouette(enc.dense(transform), labels, k, sample_size=max(n, 1))
    else:
        dense = enc.take(sample_index).dense(transform)
        sil = metrics.sampled_silhouette(
            metrics.silhouette_values(dense, labels[sample_index], k, sampled=True), n)
    return {"silhouette": sil.to_dict(), "calinski_harabasz": ch, "davies_bouldin": db}
