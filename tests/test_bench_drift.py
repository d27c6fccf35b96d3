"""The replay generators of benchmarks/bench_drift.py (the drift case study) on a tiny
synthetic table: each changes exactly what it says and nothing else. The case study
itself reads the online-shoppers data and runs the real CLI; it is not run here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_drift.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    sys.path.insert(0, str(BENCH.parent))  # bench_drift imports its siblings lazily
    spec = importlib.util.spec_from_file_location("bench_drift", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_drift"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def sessions(rows: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A small table like the shoppers' sessions, with a segment id per row."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, rows, p=[0.6, 0.3, 0.1])
    frame = pd.DataFrame({
        "Duration": np.where(rng.random(rows) < 0.1, 0.0, rng.lognormal(6, 1, rows)),
        "Rate": rng.uniform(0, 0.2, rows),
        "Visitor": rng.choice(["Returning", "New"], rows, p=[0.8, 0.2]),
        "Row": np.arange(rows),
    })
    return frame, labels


def test_the_split_is_a_seeded_partition(bench: ModuleType) -> None:
    train, held = bench.split_rows(1000, 0.7, seed=0)
    assert len(train) == 700 and len(held) == 300
    assert sorted([*train, *held]) == list(range(1000))
    again, _ = bench.split_rows(1000, 0.7, seed=0)
    assert (again == train).all() and not (bench.split_rows(1000, 0.7, seed=1)[0] == train).all()


def test_a_sampled_month_is_distinct_held_out_rows(bench: ModuleType) -> None:
    frame, _ = sessions()
    month = bench.sample_month(frame, 150, seed=3)
    assert len(month) == 150 and month["Row"].is_unique
    assert set(month["Row"]) <= set(frame["Row"])
    assert month.equals(bench.sample_month(frame, 150, seed=3))
    with pytest.raises(ValueError):
        bench.sample_month(frame, 401, seed=3)


def test_a_numeric_shift_changes_one_column(bench: ModuleType) -> None:
    frame, _ = sessions()
    scaled = bench.scale_numeric(frame, "Duration", 1.5)
    assert np.allclose(scaled["Duration"], frame["Duration"] * 1.5)
    assert (scaled["Duration"] == 0).sum() == (frame["Duration"] == 0).sum()
    q1, q3 = frame["Rate"].quantile([0.25, 0.75])
    moved = bench.move_numeric(frame, "Rate", 0.5, frame["Rate"])
    expected = (frame["Rate"] + 0.5 * (q3 - q1)).clip(upper=frame["Rate"].max())
    assert np.allclose(moved["Rate"], expected)
    for out in (scaled, moved):
        assert out.drop(columns=["Duration", "Rate"]).equals(
            frame.drop(columns=["Duration", "Rate"]))


def test_a_new_category_takes_exactly_its_share(bench: ModuleType) -> None:
    frame, _ = sessions()
    out = bench.new_category(frame, "Visitor", "Partner", 0.1, seed=0)
    assert (out["Visitor"] == "Partner").sum() == 40
    kept = out["Visitor"] != "Partner"
    assert (out.loc[kept, "Visitor"] == frame.loc[kept, "Visitor"]).all()
    assert out.drop(columns="Visitor").equals(frame.drop(columns="Visitor"))


@pytest.mark.parametrize("factor", [0.5, 1.0, 2.0])
def test_a_segment_shift_sets_one_share_and_keeps_the_others_mix(bench: ModuleType,
                                                                 factor: float) -> None:
    frame, labels = sessions()
    out = bench.segment_shift(frame, labels, 2, factor, 300, seed=1)
    got = np.bincount(labels[out["Row"].to_numpy()], minlength=3)
    share = np.bincount(labels) / len(labels)
    assert len(out) == 300 and got.sum() == 300
    assert got[2] == pytest.approx(300 * share[2] * factor, abs=1)
    assert got[0] / got[1] == pytest.approx(share[0] / share[1], rel=0.03)
    mix = bench.segment_mix(labels, 2, factor)
    assert mix.sum() == pytest.approx(1.0) and mix[2] == pytest.approx(share[2] * factor)


def test_fired_checks_name_the_check_and_the_feature(bench: ModuleType) -> None:
    report = {"features": [{"feature": "Visitor", "drift": ["psi", "unseen"]},
                           {"feature": "Rate", "drift": []}],
              "segments": {"drift": ["chi2"]}, "distance": {"drift": ["far"]},
              "schema": {"drift": ["missing_columns"]}}
    assert bench.fired_checks(report) == [
        "feature PSI: Visitor", "unseen: Visitor", "segment chi2", "distance",
        "schema: missing_columns"]
