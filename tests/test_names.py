"""Segment names as an analyst would write them (profiles.name_segments and friends)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from custseg.core.preprocessing import Encoded, FeatureTransform
from custseg.core.profiles import (
    QUANTILE_SAMPLE,
    category_label,
    name_segments,
    numeric_correlations,
    profile_segments,
)


def make_segments(specs: list[dict[str, Any]], seed: int = 0, noise: float = 1.0
                  ) -> tuple[Encoded, FeatureTransform, np.ndarray, int]:
    """Rows from per-segment specs: {"n": rows, numeric column: mean, column: {level: share}}.

    Numeric values are the mean plus N(0, noise); category shares are exact.
    """
    rng = np.random.default_rng(seed)
    numeric = [c for c, v in specs[0].items() if c != "n" and not isinstance(v, dict)]
    categorical = [c for c, v in specs[0].items() if isinstance(v, dict)]
    labels = np.concatenate([np.full(s["n"], i) for i, s in enumerate(specs)])
    raw = np.column_stack([
        np.concatenate([s[c] + noise * rng.standard_normal(s["n"]) for s in specs])
        for c in numeric]) if numeric else np.zeros((len(labels), 0))
    levels = [sorted({lv for s in specs for lv in s[c]}) for c in categorical]
    codes = np.zeros((len(labels), len(categorical)), dtype=np.int32)
    for j, c in enumerate(categorical):
        col = []
        for s in specs:
            part = [levels[j].index(lv) for lv, p in s[c].items() for _ in range(round(p * s["n"]))]
            col += (part + [part[-1]] * s["n"])[: s["n"]]
        codes[:, j] = col
    means, scales = raw.mean(axis=0), raw.std(axis=0)
    transform = FeatureTransform(
        numeric=numeric, medians=np.median(raw, axis=0) if numeric else np.zeros(0),
        means=means, scales=scales, categorical=categorical,
        modes=[lv[0] for lv in levels], categories=levels)
    return Encoded(num=(raw - means) / scales, codes=codes), transform, labels, len(specs)


def names_of(specs: list[dict[str, Any]], seed: int = 0, noise: float = 1.0,
             collinear: bool = True, **kwargs: Any) -> list[str]:
    enc, transform, labels, k = make_segments(specs, seed, noise)
    profiles = profile_segments(enc, transform, labels, k)
    if collinear:
        kwargs.setdefault("correlations", numeric_correlations(enc, transform))
    return name_segments(profiles, **kwargs)


# -- rule 2: "High" / "Low" only where the segment ranks high / low among segments -------


def test_low_only_for_segments_in_the_bottom_half() -> None:
    # one very rich segment pulls the mean up: B is below the mean but second of four
    specs = [{"n": 1000, "Income": 1000.0, "Age": 40.0},
             {"n": 1000, "Income": 100.0, "Age": 70.0},
             {"n": 1000, "Income": 90.0, "Age": 20.0},
             {"n": 1000, "Income": 80.0, "Age": 45.0}]
    enc, transform, labels, k = make_segments(specs)
    profiles = profile_segments(enc, transform, labels, k)
    z_b = next(d["z"] for d in profiles[1]["differences"] if d["feature"] == "Income")
    assert z_b < -0.4  # the old rule said "Low Income"
    names = name_segments(profiles)
    assert "Low Income" not in names[1] and "High Income" not in names[1]
    assert "Low Income" in names[2] and "Low Income" in names[3]
    assert names[0].startswith("Highest Income")
    assert len(set(names)) == 4


def test_high_needs_the_top_half_and_a_mean_above_the_population() -> None:
    # three low segments and one middling-high: only the top two may be "High"
    specs = [{"n": 500, "Spend": 10.0}, {"n": 500, "Spend": 60.0},
             {"n": 500, "Spend": 100.0}, {"n": 3000, "Spend": 0.0}]
    names = names_of(specs)
    assert "High Spend" in names[1] or "Very high Spend" in names[1]
    assert "Very high Spend" in names[2] or "Highest Spend" in names[2]
    assert "High" not in names[0] and "High" not in names[3]


def test_superlatives_need_three_segments_and_a_clear_lead() -> None:
    two = names_of([{"n": 500, "Income": 100.0}, {"n": 500, "Income": 10.0}])
    assert two == ["High Income", "Low Income"]  # two equal halves: |z| is just under 1
    close = names_of([{"n": 500, "Income": 100.0}, {"n": 500, "Income": 98.0},
                      {"n": 1000, "Income": 10.0}])
    assert not any("Highest" in n for n in close)


# -- rule 1: no collinear pairs ------------------------------------------------------------


def test_a_feature_highly_correlated_with_one_in_the_name_is_skipped() -> None:
    specs = [{"n": 800, "BILL_AMT4": 50.0 + i, "BILL_AMT5": 50.0 + i, "Age": a}
             for i, a in ((0, 30.0), (0, 60.0), (0, 60.0), (40, 30.0))]
    without = names_of(specs, noise=0.5, collinear=False)
    with_r = names_of(specs, noise=0.5)
    assert "BILL_AMT4" in without[3] and "BILL_AMT5" in without[3]  # the old, redundant name
    assert ("BILL_AMT4" in with_r[3]) != ("BILL_AMT5" in with_r[3])
    assert with_r[3].endswith(" · Low Age")


def test_numeric_correlations_match_numpy_and_handle_constant_columns() -> None:
    enc, transform, _, _ = make_segments(
        [{"n": 300, "a": 1.0, "b": 2.0, "c": 3.0}, {"n": 300, "a": 5.0, "b": 1.0, "c": 0.0}])
    out = numeric_correlations(enc, transform)
    assert out["features"] == ["a", "b", "c"]
    np.testing.assert_allclose(out["matrix"], np.corrcoef(enc.num, rowvar=False), atol=1e-6)
    flat = Encoded(num=np.column_stack([enc.num[:, 0], np.zeros(enc.n)]), codes=enc.codes)
    two = FeatureTransform(numeric=["a", "z"], medians=np.zeros(2), means=np.zeros(2),
                           scales=np.ones(2), categorical=[], modes=[], categories=[])
    assert numeric_correlations(flat, two)["matrix"] == [[1.0, 0.0], [0.0, 1.0]]


def test_numeric_correlations_use_a_seeded_sample_of_large_data() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((QUANTILE_SAMPLE + 5000, 2))
    x[:, 1] += x[:, 0]
    enc = Encoded(num=x, codes=np.zeros((len(x), 0), dtype=np.int32))
    t = FeatureTransform(numeric=["a", "b"], medians=np.zeros(2), means=np.zeros(2),
                         scales=np.ones(2), categorical=[], modes=[], categories=[])
    first, again = numeric_correlations(enc, t, 4), numeric_correlations(enc, t, 4)
    assert first == again
    assert first["matrix"][0][1] == pytest.approx(np.corrcoef(x, rowvar=False)[0, 1], abs=0.01)


# -- rule 3: categories keep their column and read as shares -----------------------------


def test_categories_keep_their_column_and_use_value_labels() -> None:
    specs = [{"n": 600, "Spend": 10.0, "Channel": {"1": 0.02, "2": 0.98}},
             {"n": 600, "Spend": 10.0, "Channel": {"1": 0.95, "2": 0.05}}]
    plain = names_of(specs)
    assert plain == ["Channel 2", "Channel 1"]
    labelled = names_of(specs, value_labels={"Channel": {"1": "Horeca", "2": "Retail"}})
    assert labelled == ["Channel: Retail", "Channel: Horeca"]
    assert not any("Mostly" in n for n in plain + labelled)


@pytest.mark.parametrize(("share", "expected"), [
    (1.0, "Gender: Female"), (0.92, "Gender: Female"), (0.75, "Gender: 75% Female")])
def test_a_dominant_category_is_named_with_its_share(share: float, expected: str) -> None:
    specs = [{"n": 1000, "Gender": {"Female": share, "Male": 1 - share}},
             {"n": 1000, "Gender": {"Female": 0.2, "Male": 0.8}}]
    names = names_of(specs)
    assert names[0] == expected
    assert "Female" not in names[1]  # one level per column: not "Female" and "Male" both


def test_a_category_must_stand_out_from_the_population() -> None:
    # both segments are 95% Female: being female sets neither apart
    specs = [{"n": 500, "Age": 20.0, "Gender": {"Female": 0.95, "Male": 0.05}},
             {"n": 500, "Age": 60.0, "Gender": {"Female": 0.95, "Male": 0.05}}]
    assert names_of(specs) == ["Low Age", "High Age"]


def test_booleans_read_as_the_column_name() -> None:
    specs = [{"n": 1000, "Weekend": {"true": 0.85, "false": 0.15}},
             {"n": 1000, "Weekend": {"true": 0.02, "false": 0.98}}]
    assert names_of(specs) == ["85% Weekend", "Not Weekend"]
    numeric = [{"n": 1000, "Weekend": 1.0}, {"n": 1000, "Weekend": 0.0},
               {"n": 300, "Weekend": 0.0}]  # a 0/1 numeric column, as booleans are read
    enc, transform, labels, k = make_segments(numeric, noise=0.0)
    enc.num[:300, 0] = enc.num[-1, 0]  # 300 of the first segment's 1000 are 0
    profiles = profile_segments(enc, transform, labels, k)
    assert profiles[0]["binary_numeric"] == ["Weekend"]
    assert name_segments(profiles)[0] == "70% Weekend"


def test_category_label() -> None:
    labels = {"Channel": {"1": "Horeca", "2": "Retail"}, "Member": {"true": "Member"}}
    assert category_label("Channel", "2", labels) == "Channel: Retail"
    assert category_label("Channel", "2.0", labels) == "Channel: Retail"
    assert category_label("Channel", "3", labels) == "Channel: 3"
    assert category_label("Region", "1", labels) == "Region: 1"
    assert category_label("Member", "1", labels) == "Member: Member"
    assert category_label("Region", "North") == "Region: North"


# -- rule 4: no "Typical" ------------------------------------------------------------------


def test_the_largest_segment_is_described_not_called_typical() -> None:
    specs = [{"n": 5000, "Income": 50.0, "Age": 41.0, "Gender": {"Female": 0.45, "Male": 0.55}},
             {"n": 400, "Income": 95.0, "Age": 30.0, "Gender": {"Female": 0.5, "Male": 0.5}},
             {"n": 400, "Income": 10.0, "Age": 60.0, "Gender": {"Female": 0.5, "Male": 0.5}}]
    names = names_of(specs, noise=5.0)
    big = names[0]
    assert "Typical" not in big and "Mainstream" not in big
    assert " · " in big  # two phrases, even though none is strong
    assert any(w in big for w in ("Average", "average", "Mid", "55% Male"))


def test_mainstream_only_when_there_is_nothing_to_say() -> None:
    profiles = [{"id": 0, "size": 70, "share": 0.7, "numeric": {}, "categorical": {},
                 "differences": []},
                {"id": 1, "size": 30, "share": 0.3, "numeric": {}, "categorical": {},
                 "differences": []}]
    assert name_segments(profiles) == ["Mainstream (70% of customers)",
                                       "Mainstream (30% of customers)"]


# -- rule 5: unique names, overrides -------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_names_are_unique_for_any_seed(seed: int) -> None:
    rng = np.random.default_rng(seed)
    specs = [{"n": int(rng.integers(100, 2000)), "Income": float(rng.uniform(0, 100)),
              "Age": float(rng.uniform(18, 80)),
              "Channel": {"1": (p := float(rng.uniform())), "2": 1 - p}} for _ in range(6)]
    names = names_of(specs, seed=seed, noise=10.0)
    assert len(set(names)) == len(names) and all(names)
    assert not any("Typical" in n for n in names)


def test_clashing_names_take_more_phrases_then_a_number() -> None:
    specs = [{"n": 500, "Income": 100.0, "Age": 20.0}, {"n": 500, "Income": 100.0, "Age": 60.0},
             {"n": 2000, "Income": 0.0, "Age": 40.0}]
    names = names_of(specs, collinear=False)
    assert names[0] != names[1] and "Income" in names[0] and "Age" in names[0]
    twins = [{"n": 500, "Income": 100.0}, {"n": 500, "Income": 100.0},
             {"n": 1000, "Income": 0.0}]
    names = names_of(twins, noise=0.0)
    assert names[0] == "Very high Income #0" and names[1] == "Very high Income #1"


def test_overrides_win() -> None:
    enc, transform, labels, k = make_segments([{"n": 50, "a": 0.0}, {"n": 50, "a": 9.0}])
    profiles = profile_segments(enc, transform, labels, k)
    assert name_segments(profiles, ["x", "y"], value_labels={"a": {}}) == ["x", "y"]


def test_profiles_report_original_units_of_a_log_transformed_column() -> None:
    rng = np.random.default_rng(1)
    income = np.concatenate([rng.lognormal(10, 0.5, 4000), rng.lognormal(12, 0.5, 1000)])
    labels = np.repeat([0, 1], [4000, 1000])
    y = np.log1p(income / 1000.0)
    mean, scale = float(y.mean()), float(y.std())
    transform = FeatureTransform(
        numeric=["Income"], medians=np.array([float(np.median(income))]),
        means=np.array([mean]), scales=np.array([scale]), categorical=[], modes=[],
        categories=[], functions=["log1p"], log_scales=np.array([1000.0]))
    enc = Encoded(num=((y - mean) / scale)[:, None], codes=np.zeros((5000, 0), dtype=np.int32))
    profiles = profile_segments(enc, transform, labels, 2)
    for c in (0, 1):
        stats = profiles[c]["numeric"]["Income"]
        assert stats["mean"] == pytest.approx(income[labels == c].mean())
        assert stats["median"] == pytest.approx(np.median(income[labels == c]))
        z = profiles[c]["differences"][0]["z"]  # still the mean in feature space
        assert z == pytest.approx(enc.num[labels == c, 0].mean())
    assert name_segments(profiles) == ["Low Income", "Very high Income"]
