"""Segment profiles and names: what sets each segment apart, in the data's own units.

Pure computation on the encoded training rows and their cluster labels. Per segment:
size and share; for numeric features the mean (exact) and median and quartiles (from a
seeded sample of at most `QUANTILE_SAMPLE` rows, recorded), in original units; for
categorical features the share of each category; and the standardised difference of
every feature from the whole population (for a numeric feature its segment mean in
standard deviations of the model's feature space; for a category its share difference
over the population's binomial sd). Values are after imputation (missing values count as
the median or the most frequent category). `binary_numeric` lists the numeric columns
that hold only 0 and 1 (booleans read as numbers), which names read as shares.

Names read as an analyst would write them, e.g. "Very high Income · Gender: 92% Female".
`segment_names` in the config overrides them. The rules:

1. Candidates are the segment's differences by |z|. A numeric feature whose |r| with a
   feature already in the name is at least `COLLINEAR` (from `numeric_correlations`) is
   skipped, and so is a second level of a categorical column already in the name.
2. "High X" / "Very high X" (|z| >= `NOTABLE` / `STRONG`) only when the segment's mean
   is above the population mean and the segment ranks in the top half of segments on X;
   "Low X" / "Very low X" likewise for the bottom half. With three or more segments, the
   top (bottom) segment is "Highest X" ("Lowest X") when it is very high (low) and leads
   the runner-up by at least `NOTABLE`.
3. Categories keep their column and use shares: "Channel: Retail" when at least `ALL` of
   the segment is one level, "Gender: 75% Female" when at least `MOSTLY` is (and the
   share is notably above the population's). `value_labels` maps codes to words; an
   unlabelled code reads "Channel 2", a boolean (true/false, 0/1, yes/no) "85% Weekend"
   or "Not Weekend".
4. Two such phrases make a name. A segment with none (typically the largest one) is
   described by its most distinguishing features even when weak: "Above-average X",
   "Below-average X", "Mid X" (far from the mean but not at either end of the
   segments), "Average X", "55% Male". Only a segment with no features at all is
   "Mainstream (N% of customers)".
5. Clashing names take more phrases (up to four), then " #i".
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from custseg.core.preprocessing import Encoded, FeatureTransform
from custseg.core.segment_sums import SegmentSums, curved_columns, segment_sums

__all__ = [
    "QUANTILE_SAMPLE",
    "category_label",
    "name_segments",
    "numeric_correlations",
    "profile_segments",
]

QUANTILE_SAMPLE = 200_000
STRONG, NOTABLE, SLIGHT = 1.0, 0.4, 0.15  # |standardised difference|: "Very", plain, "-average"
COLLINEAR = 0.8  # |r| at which a second numeric feature adds nothing to a name
ALL, MOSTLY, OFTEN = 0.9, 0.6, 0.3  # category shares: "Channel: Retail", "75% ...", z >= STRONG
MAX_PHRASES = 4
BOOLEAN_LEVELS = ({"false", "true"}, {"0", "1"}, {"no", "yes"}, {"n", "y"})
TRUE_WORDS = {"true", "1", "yes", "y"}


@functools.lru_cache(maxsize=2)
def _sample(n: int, random_state: int) -> np.ndarray:
    """The rows the quantiles and correlations read (sorted; read-only, since it is
    shared: profiles and correlations draw the same one, and drawing it permutes all
    `n` row numbers)."""
    rng = np.random.default_rng([random_state, 17])
    rows = np.arange(n) if n <= QUANTILE_SAMPLE else np.sort(
        rng.choice(n, QUANTILE_SAMPLE, replace=False))
    rows.flags.writeable = False
    return rows


def _quantiles(values: np.ndarray) -> list[float | None]:
    if len(values) == 0:
        return [None, None, None]
    # a quantile depends on the values only, not their order: sorting first (numpy's
    # vectorised sort) and then selecting is faster than selecting in unsorted values
    return [float(q) for q in np.percentile(np.sort(values), [25, 50, 75])]


def profile_segments(enc: Encoded, transform: FeatureTransform, labels: np.ndarray, k: int,
                     random_state: int = 0, sums: SegmentSums | None = None
                     ) -> list[dict[str, Any]]:
    """One profile per segment (see the module docstring); `sums`: the segments' totals
    (`core/segment_sums`, with every curved column's original sum), when the caller has
    them."""
    n = enc.n
    totals = sums or segment_sums(enc, transform, labels, k,
                                  original=curved_columns(enc, transform))
    sizes = totals.sizes
    per_row = np.maximum(sizes, 1)
    sample = _sample(n, random_state)
    sample_labels = labels[sample]
    members = [np.flatnonzero(sample_labels == c) for c in range(k)]  # once for all columns
    profiles: list[dict[str, Any]] = [
        {"id": c, "size": int(sizes[c]), "share": float(sizes[c] / n), "numeric": {},
         "categorical": {}, "differences": []} for c in range(k)]
    binary = []
    for j, name in enumerate(transform.numeric):
        z_means = totals.numeric[:, j] / per_row
        if j in totals.original:
            means = totals.original[j] / per_row
            sampled = transform.original(enc, j, sample)
        else:
            means = z_means * transform.scales[j] + transform.means[j]
            sampled = enc.num[sample, j] * transform.scales[j] + transform.means[j]
        if len(sampled) and bool(((np.abs(sampled) < 1e-9) | (np.abs(sampled - 1) < 1e-9)).all()):
            binary.append(name)
        for c in range(k):
            q1, median, q3 = _quantiles(sampled[members[c]])
            profiles[c]["numeric"][name] = {
                "mean": float(means[c]), "median": median, "q1": q1, "q3": q3}
            profiles[c]["differences"].append(
                {"feature": name, "kind": "numeric", "z": float(z_means[c])})
    for j, name in enumerate(transform.categorical):
        cats = transform.categories[j]
        table = totals.levels[j]
        population = table.sum(axis=0) / n
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
        p["binary_numeric"] = list(binary)
    return profiles


def numeric_correlations(enc: Encoded, transform: FeatureTransform,
                         random_state: int = 0) -> dict[str, Any]:
    """Pearson r between the numeric features (in feature space), on a seeded sample.

    `{"features": [names], "matrix": [[r, ...], ...]}`; a feature without variance in the
    sample has r = 0 with the others (1 with itself).
    """
    names = list(transform.numeric)
    sample = _sample(enc.n, random_state)
    if not names or len(sample) < 2:
        return {"features": names, "matrix": np.eye(len(names)).tolist()}
    x = np.asarray(enc.num[sample], dtype=np.float64)
    x = x - x.mean(axis=0)
    norms = np.sqrt((x * x).sum(axis=0))
    safe = np.where(norms > 0, norms, 1.0)
    r = (x.T @ x) / np.outer(safe, safe)
    r[norms == 0, :] = 0.0
    r[:, norms == 0] = 0.0
    np.fill_diagonal(r, 1.0)
    return {"features": names, "matrix": np.clip(r, -1.0, 1.0).round(6).tolist()}


# -- names -------------------------------------------------------------------------------


def _normal_code(text: str) -> str:
    """A label key or category as text that matches however it was written (1.0 == 1)."""
    s = text.strip()
    if s.lower() in ("true", "false"):
        return "1" if s.lower() == "true" else "0"
    try:
        x = float(s)
    except ValueError:
        return s.lower()
    return str(int(x)) if x.is_integer() else repr(x)


def _value_label(column: str, category: str,
                 value_labels: dict[str, dict[str, str]] | None) -> str | None:
    labels = (value_labels or {}).get(column)
    if not labels:
        return None
    if category in labels:
        return labels[category]
    wanted = _normal_code(category)
    return next((v for key, v in labels.items() if _normal_code(key) == wanted), None)


def category_label(column: str, category: str,
                   value_labels: dict[str, dict[str, str]] | None = None) -> str:
    """A category with its column, in words where `value_labels` has some: "Channel: Retail"."""
    return f"{column}: {_value_label(column, category, value_labels) or category}"


def _is_code(category: str) -> bool:
    try:
        float(category)
    except ValueError:
        return False
    return True


def _level_words(column: str, category: str, value_labels: dict[str, dict[str, str]] | None,
                 boolean: bool) -> tuple[str, str]:
    """How a level reads when all of the segment has it, and with a share ("{pct}")."""
    label = _value_label(column, category, value_labels)
    if label is None and boolean:
        whole = column if category.strip().lower() in TRUE_WORDS else f"Not {column}"
        return whole, f"{{pct}}% {whole}"
    if label is None and _is_code(category):
        return f"{column} {category}", f"{{pct}}% {column} {category}"
    word = label if label is not None else category
    return f"{column}: {word}", f"{column}: {{pct}}% {word}"


def _level_phrase(words: tuple[str, str], share: float, z: float) -> tuple[str | None, bool]:
    """(phrase, strong) for a level the segment holds `share` of, `z` above the population."""
    whole, part = words
    pct = min(round(100 * share), 99) if share < 1 else 100
    if z >= NOTABLE and share >= ALL:
        return whole, True
    if (z >= NOTABLE and share >= MOSTLY) or (z >= STRONG and share >= OFTEN):
        return part.format(pct=pct), True
    if z > 0 and share >= 0.5:
        return part.format(pct=pct), False
    return None, False


class _Segments:
    """What names compare a segment with: every segment's means, z and the population."""

    def __init__(self, profiles: list[dict[str, Any]], correlations: dict[str, Any] | None,
                 value_labels: dict[str, dict[str, str]] | None) -> None:
        self.k = len(profiles)
        self.value_labels = value_labels
        weights = np.array([max(p["size"], 0) for p in profiles], dtype=np.float64)
        total = weights.sum() or 1.0
        self.means: dict[str, np.ndarray] = {}
        self.pop: dict[str, float] = {}
        for f in profiles[0]["numeric"] if profiles else []:
            m = np.array([p["numeric"][f]["mean"] for p in profiles], dtype=np.float64)
            self.means[f], self.pop[f] = m, float((weights * m).sum() / total)
        self.z = {f: np.array([next((d["z"] for d in p["differences"] if d["feature"] == f),
                                    0.0) for p in profiles]) for f in self.means}
        self.binary = set(profiles[0].get("binary_numeric", [])) if profiles else set()
        self.levels = {col: set(shares) for col, shares in
                       (profiles[0]["categorical"].items() if profiles else [])}
        names = (correlations or {}).get("features", [])
        matrix = (correlations or {}).get("matrix", [])
        self.r = {(a, b): float(matrix[i][j]) for i, a in enumerate(names)
                  for j, b in enumerate(names)}

    def collinear(self, f: str, used: list[str]) -> bool:
        return any(abs(self.r.get((f, g), 0.0)) >= COLLINEAR for g in used)

    def boolean(self, column: str) -> bool:
        levels = {c.strip().lower() for c in self.levels.get(column, set())}
        return levels in BOOLEAN_LEVELS

    def numeric(self, i: int, f: str, z: float) -> tuple[str | None, bool]:
        """(phrase, strong) for numeric feature f of segment i."""
        means, mean, pop = self.means[f], self.means[f][i], self.pop[f]
        if f in self.binary:
            if z >= 0:
                return _level_phrase(_level_words(f, "true", self.value_labels, True), mean, z)
            return _level_phrase(_level_words(f, "false", self.value_labels, True), 1 - mean, -z)
        higher, lower = int((means > mean).sum()), int((means < mean).sum())
        up, down = z > 0 and mean > pop, z < 0 and mean < pop
        if abs(z) >= NOTABLE:
            others = np.delete(self.z[f], i)
            if up and higher < self.k / 2:
                if self.k >= 3 and higher == 0 and z >= STRONG and z - others.max() >= NOTABLE:
                    return f"Highest {f}", True
                return f"{'Very high' if z >= STRONG else 'High'} {f}", True
            if down and lower < self.k / 2:
                if self.k >= 3 and lower == 0 and z <= -STRONG and others.min() - z >= NOTABLE:
                    return f"Lowest {f}", True
                return f"{'Very low' if z <= -STRONG else 'Low'} {f}", True
            return f"Mid {f}", False
        if abs(z) >= SLIGHT and (up or down):
            return f"{'Above' if up else 'Below'}-average {f}", False
        return f"Average {f}", False

    def phrases(self, i: int, profile: dict[str, Any]) -> tuple[list[str], int]:
        """Segment i's phrases, strong ones first, each by |z|; and how many are strong."""
        diffs = sorted(profile["differences"], key=lambda d: -abs(d["z"]))
        used_numeric: list[str] = []
        used_columns: set[str] = set()
        out: list[list[str]] = [[], []]
        for want_strong in (True, False):
            for d in diffs:
                if d["kind"] == "numeric":
                    f = d["feature"]
                    if f in used_numeric or f not in self.means or self.collinear(
                            f, used_numeric):
                        continue
                    phrase, strong = self.numeric(i, f, d["z"])
                else:
                    col = d["column"]
                    if col in used_columns:
                        continue
                    words = _level_words(col, d["category"], self.value_labels,
                                         self.boolean(col))
                    phrase, strong = _level_phrase(words, d["share"], d["z"])
                if phrase is None or strong != want_strong:
                    continue
                out[0 if strong else 1].append(phrase)
                if d["kind"] == "numeric":
                    used_numeric.append(d["feature"])
                else:
                    used_columns.add(d["column"])
        return out[0] + out[1], len(out[0])


def name_segments(profiles: list[dict[str, Any]], overrides: list[str] | None = None, *,
                  value_labels: dict[str, dict[str, str]] | None = None,
                  correlations: dict[str, Any] | None = None) -> list[str]:
    """A short descriptive name per segment, unique within the model (rules: module doc).

    `value_labels` maps column -> {category -> words}; `correlations` is the output of
    `numeric_correlations` (without it no feature is skipped as collinear).
    """
    if overrides:
        return list(overrides)
    ctx = _Segments(profiles, correlations, value_labels)
    found = [ctx.phrases(i, p) for i, p in enumerate(profiles)]
    phrases = [ph[:MAX_PHRASES] for ph, _ in found]
    depth = [min(2, strong) if strong else 2 for _, strong in found]

    def name(i: int) -> str:
        if not phrases[i]:
            return f"Mainstream ({100 * profiles[i]['share']:.0f}% of customers)"
        return " · ".join(phrases[i][:depth[i]])

    names = [name(i) for i in range(len(profiles))]
    while True:
        clashing = [i for i, n in enumerate(names) if names.count(n) > 1
                    and depth[i] < len(phrases[i])]
        if not clashing:
            break
        for i in clashing:
            depth[i] += 1
        names = [name(i) for i in range(len(profiles))]
    return [n if names.count(n) == 1 else f"{n} #{i}" for i, n in enumerate(names)]
