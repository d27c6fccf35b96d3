"""custseg.core.quality and the k selection of custseg.core.train: the adjusted Rand index and the
feature-space metrics against scikit-learn, subsample stability on blobs, and every rule
of `choose_k` (eligibility, tolerance, fallback, fixed k, range-edge warnings)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    silhouette_score,
)

from custseg.config import Features
from custseg.core import kmeans, metrics, quality
from custseg.core.preprocessing import Encoded, FeatureTransform, fit_features
from custseg.core.sample import generate_customers
from custseg.core.schema import infer_schema
from custseg.core.train import project, train

# -- factories ---------------------------------------------------------------------------------

CORNERS = np.array([[0.0, 0.0], [12.0, 0.0], [0.0, 12.0], [12.0, 12.0]])


def blobs(seed: int, n: int = 300, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """`n` points around `k` corners 12 apart (sd 1): well separated, labels true."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    return CORNERS[truth] + rng.normal(0.0, 1.0, (n, 2)), truth


def mixed(seed: int, n: int = 300, *, numeric: bool = True, categorical: bool = True,
          weight: float = 0.25) -> tuple[FeatureTransform, Encoded]:
    """Encoded rows with a skewed and a normal numeric column and two categorical ones
    (a text tier and a coded Channel), one-hot weighted by `weight`."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    if numeric:
        columns["spend"] = rng.lognormal(4.0, 1.0, n)
        columns["age"] = rng.normal(40.0, 10.0, n)
    if categorical:
        columns["tier"] = rng.choice(["gold", "silver", "bronze"], n, p=[0.6, 0.3, 0.1])
        columns["Channel"] = rng.choice([1, 2], n)
    table = pa.table(columns)
    features = Features(categorical_weight=weight)
    transform, enc = fit_features(table, infer_schema(table, features), features=features)
    return transform, enc


def kmeans_labels(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    return kmeans.fit(x, k, n_init=3, random_state=seed).labels


def kmeans_centers(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    return kmeans.fit(x, k, n_init=3, random_state=seed).centers


# scikit-learn's euclidean_distances expands |x - m|^2, so a row sitting on its cluster's
# mean gets a distance near 1e-8 instead of 0: its Davies-Bouldin is off by up to ~1e-8
# where custseg's is exact (checked against the definition below at 1e-12).
DB_ABS = 1e-7


def davies_bouldin_by_definition(x: np.ndarray, labels: np.ndarray) -> float:
    ids = np.unique(labels)
    means = np.array([x[labels == c].mean(axis=0) for c in ids])
    spread = np.array([np.linalg.norm(x[labels == c] - means[i], axis=1).mean()
                       for i, c in enumerate(ids)])
    apart = np.linalg.norm(means[:, None] - means[None], axis=2)
    np.fill_diagonal(apart, np.inf)
    return float(((spread[:, None] + spread[None]) / apart).max(axis=1).mean())


# -- adjusted_rand ---------------------------------------------------------------------------


labelings = st.integers(min_value=1, max_value=80).flatmap(
    lambda n: st.tuples(st.lists(st.integers(-2, 5), min_size=n, max_size=n),
                        st.lists(st.integers(0, 7), min_size=n, max_size=n)))


@settings(max_examples=300, deadline=None)
@given(labelings)
def test_adjusted_rand_equals_sklearn(pair: tuple[list[int], list[int]]) -> None:
    a, b = (np.array(x) for x in pair)
    assert quality.adjusted_rand(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)


@pytest.mark.parametrize(("a", "b"), [
    pytest.param([0], [3], id="one row"),
    pytest.param([0, 0], [0, 1], id="two rows, split"),
    pytest.param([5, 5], [1, 1], id="two rows, together"),
    pytest.param([0] * 9, [1] * 9, id="one cluster each"),
    pytest.param([0] * 9, list(range(9)), id="one cluster vs singletons"),
    pytest.param(list(range(9)), list(range(9))[::-1], id="singletons both"),
    pytest.param([0, 0, 1, 1, 2, 2], [7, 7, 3, 3, 9, 9], id="a relabeling"),
    pytest.param([0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1], id="crossed"),
    pytest.param(["x", "x", "y", "z"], ["a", "b", "b", "b"], id="text labels"),
])
def test_adjusted_rand_degenerate_labelings_equal_sklearn(a: list[Any], b: list[Any]) -> None:
    ours = quality.adjusted_rand(np.array(a), np.array(b))
    assert ours == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)
    assert ours == pytest.approx(quality.adjusted_rand(np.array(b), np.array(a)), abs=1e-12)


# -- stability ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stability_is_one_at_the_true_k_and_clearly_lower_above_it(seed: int) -> None:
    z, _ = blobs(seed)
    at_truth = quality.stability(z, kmeans_centers(z, 3, seed), 3, random_state=seed)
    too_many = quality.stability(z, kmeans_centers(z, 5, seed), 5, random_state=seed)
    assert at_truth is not None and too_many is not None
    assert at_truth >= 0.99
    assert too_many < 0.9 and too_many <= at_truth - 0.1


def test_stability_is_not_measured_on_too_few_rows_a_cluster() -> None:
    """A 20-row table: 16 subsampled rows cannot say whether 9 segments are stable (it
    was reported as 1.0, which made k=9 eligible and chosen)."""
    z, _ = blobs(0)
    rows = z[:20]
    assert quality.stability(rows, kmeans_centers(rows, 3, 0), 3) is not None  # 16 >= 5 x 3
    assert quality.stability(rows, kmeans_centers(rows, 4, 0), 4) is None  # 16 < 5 x 4
    assert quality.stability(rows, kmeans_centers(rows, 9, 0), 9) is None


def test_stability_is_seeded_and_compares_with_the_given_fit() -> None:
    z, _ = blobs(3)
    centers = kmeans_centers(z, 3, 0)
    assert quality.stability(z, centers, 3) == quality.stability(z, centers, 3)
    # against centres whose cells cut two clusters in half (the line y = 0: far above and
    # below it, and a third far away), the refits cannot agree
    across = np.array([[6.0, -1000.0], [6.0, 1000.0], [6000.0, 6.0]])
    assert (quality.stability(z, across, 3) or 1.0) < 0.3


# -- choose_k: each rule as a case ------------------------------------------------------------


@dataclass
class Case:
    ks: list[int]
    scores: list[float]
    shares: list[float] | None = None  # default: 0.2 each
    stabilities: list[float | None] | None = None  # default: 1.0 each
    metric: str = "silhouette"
    min_share: float = 0.02
    min_stability: float = 0.8
    tolerance: float = 0.03
    chosen: int = 0  # the k expected
    eligible: list[bool] | None = None  # default: all
    notes: dict[int, str] = field(default_factory=dict)  # k -> the note expected
    sentence: list[str] = field(default_factory=list)  # substrings of the sentence
    warnings: list[str] = field(default_factory=list)  # regexes, one per warning, in order
    swept: tuple[int, int] | None = None  # the range asked for, when the data cut it

    def run(self) -> quality.Choice:
        n = len(self.ks)
        scores = [-s for s in self.scores] if self.metric == "davies_bouldin" else self.scores
        return quality.choose_k(
            self.ks, scores, self.shares or [0.2] * n, self.stabilities or [1.0] * n,
            metric=self.metric, min_share=self.min_share, min_stability=self.min_stability,
            tolerance=self.tolerance, shown=list(self.scores), swept=self.swept)


CASES = {
    "ineligible by min share": Case(
        [2, 3, 4], [0.50, 0.60, 0.55], shares=[0.4, 0.01, 0.2], chosen=4,
        eligible=[True, False, True], notes={3: "smallest segment 1.0% < 2%"},
        sentence=["k=4 has the best silhouette (0.55)", "1 candidate ruled out"],
        warnings=[r"^k=4 is the top of the range 2\.\.4: .*raise n_clusters\.max"]),
    "ineligible by stability": Case(
        [2, 3, 4, 5], [0.50, 0.70, 0.60, 0.40], stabilities=[1.0, 0.5, 0.6, 0.9], chosen=2,
        eligible=[True, False, False, True],
        notes={3: "stability 0.50 < 0.8", 4: "stability 0.60 < 0.8"},
        sentence=["k=2 has the best silhouette (0.5)", "(stability 1.00 >= 0.8)",
                  "2 candidates ruled out"]),
    "ineligible by both": Case(
        [2, 3, 4], [0.50, 0.70, 0.45], shares=[0.3, 0.005, 0.2], stabilities=[1, 0.42, 1],
        chosen=2, eligible=[True, False, True],
        notes={3: "smallest segment 0.5% < 2%; stability 0.42 < 0.8"}),
    "smallest k within tolerance": Case(
        [2, 3, 4, 5], [0.50, 0.585, 0.60, 0.40], chosen=3,
        sentence=["k=3 is the smallest k whose silhouette (0.585) is within 3% of the best "
                  "(0.6 at k=4)"]),
    "an ineligible k within tolerance is passed over": Case(
        [2, 3, 4, 5], [0.50, 0.595, 0.60, 0.40], shares=[0.3, 0.01, 0.2, 0.2], chosen=4,
        eligible=[True, False, True, True], notes={3: "smallest segment 1.0% < 2%"},
        sentence=["k=4 has the best silhouette (0.6)"]),
    "the best when nothing is within tolerance": Case(
        [2, 3, 4, 5], [0.50, 0.55, 0.60, 0.40], chosen=4,
        sentence=["k=4 has the best silhouette (0.6)"]),
    "tolerance 0 takes the best": Case(
        [2, 3, 4, 5], [0.50, 0.5999, 0.60, 0.40], tolerance=0.0, chosen=4),
    "no candidate eligible": Case(
        [2, 3, 4], [0.50, 0.70, 0.60], shares=[0.01, 0.01, 0.3], stabilities=[1, 1, 0.5],
        chosen=3, eligible=[False, False, False],
        notes={2: "smallest segment 1.0% < 2%", 3: "smallest segment 1.0% < 2%",
               4: "stability 0.50 < 0.8"},
        sentence=["k=3 has the best silhouette (0.7) among the stable candidates; no "
                  "candidate met the share and stability thresholds."],
        warnings=[r"^no k in 2\.\.4 gives every segment 2% of the rows and stability 0\.8; "
                  r"chose k=3 by silhouette among the stable candidates$"]),
    "no candidate eligible: an unstable best score is passed over": Case(
        [2, 3, 4], [0.93, 0.50, 0.60], shares=[0.001, 0.01, 0.01],
        stabilities=[0.33, 0.9, 0.95], chosen=4, eligible=[False, False, False],
        notes={2: "smallest segment 0.1% < 2%; stability 0.33 < 0.8",
               3: "smallest segment 1.0% < 2%", 4: "smallest segment 1.0% < 2%"},
        warnings=[r"chose k=4 by silhouette among the stable candidates$"]),
    "no candidate eligible nor stable: the best score": Case(
        [2, 3, 4], [0.50, 0.70, 0.60], stabilities=[0.5, 0.4, None], chosen=3,
        eligible=[False, False, False],
        notes={2: "stability 0.50 < 0.8", 3: "stability 0.40 < 0.8",
               4: "stability not measured (too few rows for k=4)"},
        sentence=["k=3 has the best silhouette (0.7) among all candidates"],
        warnings=[r"chose k=3 by silhouette among all candidates$"]),
    "a stability not measured is not eligible": Case(
        [2, 3, 4], [0.50, 0.70, 0.80], stabilities=[1.0, None, None], chosen=2,
        eligible=[True, False, False],
        notes={3: "stability not measured (too few rows for k=3)",
               4: "stability not measured (too few rows for k=4)"}),
    "fixed k within the thresholds": Case(
        [4], [0.30], chosen=4, sentence=["k=4 was fixed in the config."]),
    "fixed k under min share": Case(
        [6], [0.30], shares=[0.012], chosen=6, eligible=[False],
        notes={6: "smallest segment 1.2% < 2%"}, sentence=["k=6 was fixed in the config."],
        warnings=[r"^k=6: smallest segment 1\.2% < 2% \(tuning\.min_share, tuning\.stability\)$"]),
    "fixed k under stability": Case(
        [6], [0.30], stabilities=[0.61], chosen=6, eligible=[False],
        notes={6: "stability 0.61 < 0.8"},
        warnings=[r"^k=6: stability 0\.61 < 0\.8 \(tuning\.min_share"]),
    "top of the range": Case(
        [2, 3, 4, 5, 6], [0.4, 0.5, 0.55, 0.6, 0.7], chosen=6,
        warnings=[r"^k=6 is the top of the range 2\.\.6: more segments may fit better "
                  r"\(raise n_clusters\.max\)$"]),
    "a range the distinct rows cut short: said, with no advice to raise max": Case(
        [2, 3, 4], [0.4, 0.5, 0.7], chosen=4, swept=(2, 10),
        warnings=[r"^only 4 distinct rows after feature engineering and PCA: k was swept "
                  r"over 2\.\.4, not 2\.\.10$"]),
    "bottom of the range above 2": Case(
        [3, 4, 5, 6], [0.7, 0.5, 0.55, 0.6], chosen=3,
        warnings=[r"^k=3 is the bottom of the range 3\.\.6: fewer segments may fit better "
                  r"\(lower n_clusters\.min\)$"]),
    "bottom of the range at 2: no warning": Case(
        [2, 3, 4, 5, 6], [0.7, 0.5, 0.55, 0.6, 0.4], chosen=2),
    "davies_bouldin: lowest wins": Case(
        [2, 3, 4, 5], [0.90, 0.60, 0.50, 0.80], metric="davies_bouldin", tolerance=0.0,
        chosen=4, sentence=["k=4 has the best davies-bouldin (0.5)"]),
    "davies_bouldin: within tolerance of the lowest": Case(
        [2, 3, 4, 5], [0.90, 0.52, 0.50, 0.80], metric="davies_bouldin", tolerance=0.05,
        chosen=3, sentence=["k=3 is the smallest k whose davies-bouldin (0.52) is within 5% "
                            "of the best (0.5 at k=4)"]),
    "calinski_harabasz: by its name": Case(
        [2, 3, 4], [300.0, 900.0, 500.0], metric="calinski_harabasz", chosen=3,
        sentence=["k=3 has the best calinski-harabasz (900)"]),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_choose_k_rules(case: Case) -> None:
    choice = case.run()
    assert case.ks[choice.index] == case.chosen, choice.sentence
    assert choice.eligible == (case.eligible or [True] * len(case.ks))
    for k, note in zip(case.ks, choice.notes, strict=True):
        assert note == case.notes.get(k, ""), k
    for part in case.sentence:
        assert part in choice.sentence
    assert len(choice.warnings) == len(case.warnings), choice.warnings
    for pattern, line in zip(case.warnings, choice.warnings, strict=True):
        assert re.search(pattern, line), line


def _expected_index(ks: list[int], scores: list[float], eligible: list[bool],
                    stable: list[bool], tolerance: float) -> int:
    """The rule of the module docstring, written out independently."""
    pool = [i for i, ok in enumerate(eligible) if ok]
    if not pool:
        fallback = [i for i, ok in enumerate(stable) if ok] or list(range(len(ks)))
        return max(fallback, key=lambda i: (scores[i], -i))
    best = max(scores[i] for i in pool)
    return min((i for i in pool if scores[i] >= best - tolerance * abs(best)),
               key=lambda i: ks[i])


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 8).flatmap(lambda n: st.tuples(
    st.lists(st.floats(-1.0, 1.0), min_size=n, max_size=n),
    st.lists(st.floats(0.0, 0.5), min_size=n, max_size=n),
    st.lists(st.none() | st.floats(0.0, 1.0), min_size=n, max_size=n))),
    st.floats(0.0, 0.2), st.floats(0.0, 0.99), st.floats(0.0, 0.3))
def test_choose_k_follows_the_rule_for_any_table(
        table: tuple[list[float], list[float], list[float | None]], min_share: float,
        min_stability: float, tolerance: float) -> None:
    scores, shares, stabilities = table
    ks = list(range(2, 2 + len(scores)))
    choice = quality.choose_k(ks, scores, shares, stabilities, metric="silhouette",
                              min_share=min_share, min_stability=min_stability,
                              tolerance=tolerance, shown=scores)
    stable = [t is not None and t >= min_stability for t in stabilities]
    eligible = [s >= min_share and ok for s, ok in zip(shares, stable, strict=True)]
    assert choice.eligible == eligible
    assert [note == "" for note in choice.notes] == eligible
    assert choice.index == _expected_index(ks, scores, eligible, stable, tolerance)
    assert f"k={ks[choice.index]} " in choice.sentence
    assert any(line.startswith("no k in") for line in choice.warnings) == (not any(eligible))


@pytest.mark.parametrize(("share", "stab", "min_share", "min_stability"), [
    pytest.param(0.021, 1.0, 0.025, 0.8, id="min_share 0.025"),
    pytest.param(0.3, 0.7996, 0.02, 0.8, id="stability 0.7996"),
])
def test_a_note_never_reads_as_if_the_threshold_were_met(
        share: float, stab: float, min_share: float, min_stability: float) -> None:
    choice = quality.choose_k([3], [0.5], [share], [stab], metric="silhouette",
                              min_share=min_share, min_stability=min_stability,
                              tolerance=0.0, shown=[0.5])
    assert choice.eligible == [False]
    for value, bar in re.findall(r"([\d.]+)%? < ([\d.]+)", choice.notes[0]):
        assert float(value) < float(bar), choice.notes[0]


# -- feature_space_metrics against scikit-learn on the weighted one-hot matrix ---------------


SPACES = {
    "numeric + categorical": {},
    "numeric + categorical, weight 0.05": {"weight": 0.05},
    "categorical only": {"numeric": False},
    "numeric only": {"categorical": False},
}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("space", SPACES.values(), ids=SPACES.keys())
def test_feature_space_metrics_equal_sklearn_exactly_below_the_sample_size(
        space: dict[str, Any], k: int, seed: int) -> None:
    transform, enc = mixed(seed, **space)
    if transform.categorical:  # the weighting is what the dense matrix must carry
        assert not np.allclose(transform.weights, 1.0)
    x = enc.dense(transform)
    labels = kmeans_labels(x, k, seed)
    got = quality.feature_space_metrics(enc, transform, labels, k, sample_index=None)
    assert got["silhouette"] == {"value": pytest.approx(silhouette_score(x, labels), abs=1e-10),
                                 "exact": True, "sample_size": enc.n, "n": enc.n, "ci95": None}
    assert got["calinski_harabasz"] == pytest.approx(calinski_harabasz_score(x, labels),
                                                     rel=1e-9)
    assert got["davies_bouldin"] == pytest.approx(davies_bouldin_score(x, labels), abs=DB_ABS)
    assert got["davies_bouldin"] == pytest.approx(davies_bouldin_by_definition(x, labels),
                                                  rel=1e-12)


def test_feature_space_metrics_over_many_rows_on_threads_with_unknown_categories() -> None:
    """Past rowblocks.PARALLEL_ROWS the sums run on threads: still the definitions, with
    an unknown category (code -1: all zeros) among the rows."""
    from custseg.core import rowblocks

    transform, enc = mixed(3, n=rowblocks.PARALLEL_ROWS + 4321)
    enc.codes[::97, 0] = -1
    x = enc.dense(transform)
    labels = np.random.default_rng(3).integers(0, 4, enc.n).astype(np.int32)
    labels[x[:, 0] > 1.0] = 0  # some structure, so the scores are not all near 0
    index = np.arange(0, enc.n, 211)
    got = quality.feature_space_metrics(enc, transform, labels, 4, sample_index=index)
    assert got["calinski_harabasz"] == pytest.approx(calinski_harabasz_score(x, labels),
                                                     rel=1e-9)
    assert got["davies_bouldin"] == pytest.approx(davies_bouldin_by_definition(x, labels),
                                                  rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_feature_space_silhouette_sampled_is_reported_with_a_ci(seed: int) -> None:
    transform, enc = mixed(seed, n=400)
    x = enc.dense(transform)
    labels = kmeans_labels(x, 3, seed)
    index = np.sort(np.random.default_rng(seed).choice(enc.n, 150, replace=False))
    got = quality.feature_space_metrics(enc, transform, labels, 3, sample_index=index)
    sil = got["silhouette"]
    assert sil["exact"] is False
    assert (sil["sample_size"], sil["n"]) == (150, 400)
    # a sampled silhouette's distances are float32 (metrics.silhouettes): 1e-9 or so off
    assert sil["value"] == pytest.approx(silhouette_score(x[index], labels[index]), abs=1e-6)
    low, high = sil["ci95"]
    assert low < sil["value"] < high
    # the other two stay exact on every row
    assert got["calinski_harabasz"] == pytest.approx(calinski_harabasz_score(x, labels),
                                                     rel=1e-9)
    assert got["davies_bouldin"] == pytest.approx(davies_bouldin_score(x, labels), abs=DB_ABS)


# -- train: the choice recorded with the candidates -------------------------------------------


def customers(seed: int, rows: int = 600) -> tuple[FeatureTransform, Encoded]:
    table, _ = generate_customers(rows, 3, seed)
    transform, enc = fit_features(table, infer_schema(table, Features()))
    return transform, enc


@pytest.mark.parametrize(("seed", "tolerance", "metric"), [
    (0, 0.03, "silhouette"), (1, 0.03, "silhouette"), (2, 0.0, "silhouette"),
    (0, 0.05, "davies_bouldin"), (1, 0.0, "calinski_harabasz"),
])
def test_train_records_the_choice_with_every_candidate(seed: int, tolerance: float,
                                                       metric: str) -> None:
    transform, enc = customers(seed)
    result = train(enc, transform, k_candidates=[2, 3, 4, 5, 6], n_components="auto",
                   metric=metric, random_state=seed, min_share=0.02, min_stability=0.8,
                   tolerance=tolerance)
    table = [c.to_dict() for c in result.candidates]
    assert [c["k"] for c in table] == [2, 3, 4, 5, 6]
    for c in table:
        assert c["min_share"] == pytest.approx(min(c["sizes"]) / enc.n)
        assert -1.0 <= c["stability"] <= 1.0
        assert c["eligible"] == (c["min_share"] >= 0.02 and c["stability"] >= 0.8)
        assert (c["note"] == "") == c["eligible"]
    k = result.chosen.k
    sign = -1.0 if metric == "davies_bouldin" else 1.0  # lower is better: negated
    scores = [sign * c[metric] for c in table]
    assert k == table[_expected_index([c["k"] for c in table], scores,
                                      [c["eligible"] for c in table],
                                      [c["stability"] >= 0.8 for c in table], tolerance)]["k"]
    assert result.clustering.k == k and result.chosen.eligible
    assert result.sentence.startswith(f"k={k} ")
    assert not any(w.startswith("no k in") for w in result.warnings)
    # the recorded stability is quality.stability of the chosen labels in the PCA space
    z = project(enc, transform, result.projection)
    assert result.chosen.stability == pytest.approx(
        quality.stability(z, result.clustering.centers, k, random_state=seed, n_init=3))
    # the feature-space metrics are scikit-learn's on the weighted one-hot matrix
    x = enc.dense(transform)
    fs = result.feature_space
    assert fs["silhouette"]["exact"] is True
    assert fs["silhouette"]["value"] == pytest.approx(
        silhouette_score(x, result.clustering.labels), abs=1e-10)
    assert fs["calinski_harabasz"] == pytest.approx(
        calinski_harabasz_score(x, result.clustering.labels), rel=1e-9)
    assert fs["davies_bouldin"] == pytest.approx(
        davies_bouldin_score(x, result.clustering.labels), abs=DB_ABS)


def test_train_falls_back_to_the_best_score_with_a_warning() -> None:
    transform, enc = customers(1)
    result = train(enc, transform, k_candidates=[2, 3, 4], n_components="auto",
                   min_share=0.49, min_stability=0.8, tolerance=0.03)
    assert not any(c.eligible for c in result.candidates)
    stable = [c for c in result.candidates if c.stability is not None and c.stability >= 0.8]
    best = max(stable or result.candidates, key=lambda c: c.silhouette.value)
    among = "the stable candidates" if stable else "all candidates"
    assert result.chosen.k == best.k == result.clustering.k
    assert result.warnings == [f"no k in 2..4 gives every segment 49% of the rows and "
                               f"stability 0.8; chose k={best.k} by silhouette among {among}"]


def test_train_with_a_fixed_k_under_min_share_warns() -> None:
    transform, enc = customers(0)
    result = train(enc, transform, k_candidates=[6], n_components="auto", min_share=0.3,
                   min_stability=0.0)
    share = min(result.chosen.sizes) / enc.n
    assert share < 0.3  # six segments cannot all hold 30%
    assert result.chosen.eligible is False
    assert result.sentence == "k=6 was fixed in the config."
    assert result.warnings == [f"k=6: smallest segment {share:.1%} < 30% "
                               f"(tuning.min_share, tuning.stability)"]


@pytest.mark.parametrize(("rows", "sample_size", "sampled"), [
    (500, 200, 200),  # tuning.silhouette_sample_size
    (3200, 10_000, quality.FEATURE_SILHOUETTE_SAMPLE),  # the feature space's own cap
])
def test_train_samples_the_feature_space_silhouette_above_the_sample_size(
        rows: int, sample_size: int, sampled: int) -> None:
    transform, enc = customers(0, rows=rows)
    result = train(enc, transform, k_candidates=[3], n_components=2,
                   silhouette_sample_size=sample_size)
    sil = result.feature_space["silhouette"]
    assert sil["exact"] is False and (sil["sample_size"], sil["n"]) == (sampled, rows)
    assert sil["ci95"][0] < sil["value"] < sil["ci95"][1]
    index = metrics.silhouette_sample_index(rows, sampled, 0)
    labels = result.clustering.labels
    assert sil["value"] == pytest.approx(  # float32 distances when sampled
        silhouette_score(enc.dense(transform)[index], labels[index]), abs=1e-6)
