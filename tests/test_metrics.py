"""Quality metrics equal scikit-learn's where exact; the sampled silhouette is honest."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

from custseg.core import metrics


def blobs(n: int, p: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    centers = rng.normal(0, 3, size=(k, p))
    return centers[labels] + rng.normal(size=(n, p)), labels


@pytest.mark.parametrize(("n", "p", "k", "seed"), [
    (500, 1, 2, 0), (2000, 1, 3, 1), (1500, 2, 4, 2), (3000, 5, 6, 3), (800, 12, 3, 4)])
def test_exact_metrics_equal_sklearn(n: int, p: int, k: int, seed: int) -> None:
    x, labels = blobs(n, p, k, seed)
    sil = metrics.silhouette(x, labels, k)
    assert sil.exact and sil.ci95 is None and sil.sample_size == n
    assert sil.value == pytest.approx(silhouette_score(x, labels), rel=1e-9, abs=1e-12)
    assert metrics.calinski_harabasz(x, labels, k) == pytest.approx(
        calinski_harabasz_score(x, labels), rel=1e-9)
    assert metrics.davies_bouldin(x, labels, k) == pytest.approx(
        davies_bouldin_score(x, labels), rel=1e-9)


@pytest.mark.parametrize(("n", "sampled"), [(1000, False), (2500, False), (2500, True),
                                          (4001, True)])
def test_silhouettes_of_a_sweep_equal_sklearn_row_by_row(n: int, sampled: bool) -> None:
    """The pairwise pass (square tiles on and above the diagonal, each distance computed
    once and added to both its rows; on threads from PARALLEL_PAIRS_ROWS rows; tiles
    that do not divide the rows) gives every row's silhouette under every labeling of a
    sweep: scikit-learn's, to float32's precision when `sampled`."""
    from sklearn.metrics import silhouette_samples

    x, truth = blobs(n, 3, 4, n)
    rng = np.random.default_rng(n)
    labelings = [(truth, 4), (rng.integers(0, 2, n), 2), (rng.integers(0, 7, n), 7)]
    got = metrics.silhouettes(x, labelings, sampled=sampled)
    for (labels, _), values in zip(labelings, got, strict=True):
        want = silhouette_samples(x, labels)
        np.testing.assert_allclose(values, want, rtol=0, atol=2e-5 if sampled else 1e-12)


def test_singleton_cluster_follows_sklearn_convention() -> None:
    x, labels = blobs(200, 2, 3, 9)
    labels[0] = 3  # a cluster of one point has silhouette 0
    assert metrics.silhouette(x, labels, 4).value == pytest.approx(silhouette_score(x, labels))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_sampled_silhouette_reports_size_and_a_ci_covering_the_exact_value(seed: int) -> None:
    x, labels = blobs(12_000, 2, 3, seed)
    exact = metrics.silhouette(x, labels, 3, sample_size=12_000).value
    sampled = metrics.silhouette(x, labels, 3, sample_size=2000, random_state=seed)
    assert not sampled.exact and sampled.sample_size == 2000 and sampled.n == 12_000
    assert sampled.ci95 is not None
    lo, hi = sampled.ci95
    assert lo < sampled.value < hi
    # the CI is a 95% interval: allow a little slack so the test holds for any seed
    assert lo - (hi - lo) < exact < hi + (hi - lo)


def test_sampled_silhouette_is_seeded() -> None:
    x, labels = blobs(5000, 2, 3, 0)
    a = metrics.silhouette(x, labels, 3, sample_size=1000, random_state=7)
    b = metrics.silhouette(x, labels, 3, sample_size=1000, random_state=7)
    assert a == b


def test_silhouette_memory_is_bounded() -> None:
    import tracemalloc

    x, labels = blobs(10_000, 3, 4, 0)
    tracemalloc.start()
    metrics.silhouette(x, labels, 4, sample_size=10_000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 200 * 2**20  # an n x n float64 matrix would be 800 MB


@pytest.mark.parametrize("k", [1, 2, 3, 7, 40])
def test_nearest_equals_argmin_ties_included(k: int) -> None:
    """The nearest centre from k contiguous rows of distances is numpy's argmin over
    them, the first of equal distances winning, and its distance the minimum."""
    from custseg.core import rowblocks

    rng = np.random.default_rng(k)
    d2 = rng.integers(0, 4, size=(k, 5000)).astype(np.float64)  # many ties
    labels, best = rowblocks.nearest(d2)
    assert labels.dtype == np.int32
    assert labels.tolist() == d2.argmin(axis=0).tolist()
    assert best.tolist() == d2.min(axis=0).tolist()
    d2[0, 0] = -1.0  # `best` is a new array, not a view of the distances
    assert best[0] >= 0.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [1, 2, 3, 7, 40])
def test_nearest_one_hot_equals_nearest_and_its_indicator(k: int, dtype: type) -> None:
    """The fused step gives `nearest`'s labels and minimum (ties: the first centre, as
    argmin) and the one-hot matrix of those labels, in the distances' dtype."""
    from custseg.core import rowblocks

    rng = np.random.default_rng(k)
    d2 = rng.integers(0, 4, size=(k, 5000)).astype(dtype)  # many ties
    d2[:, :1000] += rng.random((k, 1000)).astype(dtype)  # and rows without
    labels, best, one_hot = rowblocks.nearest_one_hot(d2)
    want, want_best = rowblocks.nearest(d2)
    assert labels.dtype == np.int32 and one_hot.dtype == dtype
    assert labels.tolist() == want.tolist()
    assert best.tolist() == want_best.tolist()
    assert one_hot.tolist() == rowblocks.indicator(want, k).tolist()


def test_indicator_and_sq_norms() -> None:
    from custseg.core import rowblocks

    labels = np.array([2, 0, 2, 1], dtype=np.int32)
    assert rowblocks.indicator(labels, 3).tolist() == [[0, 1, 0, 0], [0, 0, 0, 1],
                                                       [1, 0, 1, 0]]
    x = np.random.default_rng(0).normal(size=(1000, 5))
    np.testing.assert_allclose(rowblocks.sq_norms(x), (x * x).sum(axis=1), rtol=1e-14)


@pytest.mark.parametrize("rows", [1000, 600_000])
def test_cluster_sums_equal_bincount_in_one_thread_or_several(rows: int) -> None:
    """Per-cluster sums from one-hot block products (on threads past PARALLEL_ROWS) equal
    bincount's, an empty cluster included."""
    from custseg.core import rowblocks

    rng = np.random.default_rng(rows)
    x = np.asfortranarray(rng.normal(size=(rows, 3)) * [1.0, 1e3, 1e-3])
    labels = rng.integers(0, 4, rows).astype(np.int32)  # cluster 4 of 5 stays empty
    sums, sizes, squares = rowblocks.cluster_sums(x, labels, 5, squares=True)
    assert sizes.tolist() == np.bincount(labels, minlength=5).tolist()
    for j in range(3):
        np.testing.assert_allclose(sums[:, j], np.bincount(labels, weights=x[:, j],
                                                           minlength=5), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(squares, np.bincount(labels, weights=(x * x).sum(axis=1),
                                                    minlength=5), rtol=1e-12)
    assert sums[4].tolist() == [0.0, 0.0, 0.0] and squares[4] == 0.0
