"""Stable ids (core/matching): the assignment solver against scipy's, and the ids a
retrain gives when k stays, grows or shrinks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import linear_sum_assignment

from custseg.core.matching import assignment, match_ids


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 9).flatmap(lambda n: st.integers(1, 9).flatmap(
    lambda m: arrays(np.float64, (n, m), elements=st.one_of(
        st.floats(0, 1e6, allow_nan=False), st.sampled_from([0.0, 1.0, 2.0]))))))
def test_the_assignment_costs_what_scipys_costs(cost: np.ndarray) -> None:
    pairs = assignment(cost)
    rows, cols = linear_sum_assignment(cost)
    assert len(pairs) == len(rows) == min(cost.shape)
    assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)
    assert [r for r, _ in pairs] == sorted(r for r, _ in pairs)
    ours = sum(cost[r, c] for r, c in pairs)
    assert ours == pytest.approx(float(cost[rows, cols].sum()), rel=1e-9, abs=1e-9)


def test_a_permuted_model_gets_its_old_ids_back() -> None:
    rng = np.random.default_rng(0)
    old = rng.normal(size=(6, 4))
    order = rng.permutation(6)
    assert match_ids(old[order] + 0.01, old) == order.tolist()


@pytest.mark.parametrize(("new_k", "old_k"), [(5, 3), (3, 5)])
def test_ids_when_k_changes_are_a_permutation_of_the_new_clusters(new_k: int,
                                                                   old_k: int) -> None:
    rng = np.random.default_rng(1)
    ids = match_ids(rng.normal(size=(new_k, 3)), rng.normal(size=(old_k, 3)))
    assert len(set(ids)) == new_k  # distinct ids, matched ones from the old range
    assert sum(i < old_k for i in ids) == min(new_k, old_k)
