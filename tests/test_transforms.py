"""The learned feature transforms: skew logs, clipping, one-hot weights and dates.

Checked on generated columns against independent computations (numpy quantiles,
scipy's skewness, scikit-learn's StandardScaler and OneHotEncoder).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from scipy.stats import skew

from custseg.config import Features
from custseg.core.preprocessing import (
    CLIP_QUANTILES,
    LOG_SCALE_QUANTILE,
    Encoded,
    FeatureTransform,
    encode,
    fit_features,
)
from custseg.core.schema import Schema, infer_schema

N = 5000
Fit = tuple[Schema, FeatureTransform, Encoded]


@pytest.fixture
def fit_columns() -> Callable[..., Fit]:
    """Factory: `fit_columns(columns, numeric=[...], categorical=[...], dates=[...],
    **features)` fits the transform on a table of the columns, with the roles given
    (numeric: every column not listed as categorical or date)."""

    def fit(columns: dict[str, Any], categorical: tuple[str, ...] = (),
            dates: tuple[str, ...] = (), **features: Any) -> Fit:
        table = pa.table(columns)
        numeric = [c for c in columns if c not in categorical and c not in dates]
        declared = Features(numeric=numeric, categorical=list(categorical), dates=list(dates),
                            **features)
        schema = infer_schema(table, declared)
        transform, enc = fit_features(table, schema, features=declared)
        return schema, transform, enc

    return fit


def with_missing(values: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    out = np.asarray(values, dtype=float).copy()
    out[rng.random(len(out)) < share] = np.nan
    return out


def imputed(values: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(values), np.nanmedian(values), values)


def col(transform: FeatureTransform, name: str) -> int:
    return transform.numeric.index(name)


# -- the skew transforms -----------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("sigma", [
    0.5, 0.8,
    1.5, 2.0,
])
def test_a_log_normal_money_column_gets_log1p_and_loses_its_skew(
        fit_columns: Callable[..., Fit], sigma: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    money = rng.lognormal(5, sigma, N)
    _, t, enc = fit_columns({"money": money, "other": rng.normal(size=N)})
    j = col(t, "money")
    assert t.functions[j] == "log1p"
    assert t.log_scales[j] == pytest.approx(np.quantile(money[money > 0], LOG_SCALE_QUANTILE))
    assert skew(money) > 1
    assert abs(skew(enc.num[:, j])) < 1


MIXED: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "profit": lambda rng, n: rng.lognormal(3, 1.5, n) - 15,  # losses and a long gain tail
    "balance-change": lambda rng, n: 40 - rng.lognormal(3, 1.2, n),  # a long loss tail
    # mostly small refunds, some large orders
    "net-orders": lambda rng, n: np.where(rng.random(n) < 0.7, rng.normal(-20, 5, n),
                                          rng.lognormal(5, 1, n)),
}


@pytest.mark.parametrize("kind", sorted(MIXED))
def test_a_mixed_sign_heavy_tailed_column_gets_the_signed_log(
        fit_columns: Callable[..., Fit], kind: str) -> None:
    rng = np.random.default_rng(3)
    x = MIXED[kind](rng, N)
    assert (x < 0).mean() > 0.05 and (x > 0).mean() > 0.05
    _, t, enc = fit_columns({"x": x})
    assert t.functions[0] == "signed_log"
    assert t.log_scales[0] == pytest.approx(np.quantile(np.abs(x[x != 0]), LOG_SCALE_QUANTILE))
    assert abs(skew(x)) > 1
    assert abs(skew(enc.num[:, 0])) < abs(skew(x)) / 2


@pytest.mark.parametrize(("kind", "values"), [
    ("normal", lambda rng, n: rng.normal(50, 10, n)),
    ("negative-normal", lambda rng, n: rng.normal(-5, 10, n)),
    ("uniform", lambda rng, n: rng.uniform(0, 1000, n)),
    ("symmetric-heavy", lambda rng, n: rng.standard_t(5, n)),
    ("mildly-skewed", lambda rng, n: rng.gamma(9, 10, n)),  # skew 2/3 < 1
])
def test_a_column_that_is_not_skewed_gets_no_log(fit_columns: Callable[..., Fit], kind: str,
                                                 values: Callable[..., np.ndarray]) -> None:
    x = values(np.random.default_rng(4), N)
    _, t, enc = fit_columns({"x": x})
    assert (t.functions[0], t.log_scales[0]) == ("none", 1.0)
    lo, hi = np.quantile(x, CLIP_QUANTILES)
    expected = np.clip(x, lo, hi)
    np.testing.assert_allclose(enc.num[:, 0], (expected - expected.mean()) / expected.std(),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_skewed_rate_within_0_and_1_is_clipped_but_not_logged(
        fit_columns: Callable[..., Fit], seed: int) -> None:
    rng = np.random.default_rng(seed)
    rate = np.where(rng.random(N) < 0.4, 0.0, rng.beta(0.5, 8.0, N))  # bounce-rate-like
    assert skew(rate) > 2
    _, t, _ = fit_columns({"rate": rate})
    assert t.functions == ["none"]
    assert np.isfinite(t.clip_high[0]) and t.clip_high[0] <= 1.0
    # the same values in per cent (0..100) are not a rate: logged
    _, t100, _ = fit_columns({"rate": rate * 100})
    assert t100.functions == ["log1p"]


@pytest.mark.parametrize(("share", "values"), [
    (0.05, lambda rng, n, p: (rng.random(n) < p).astype(np.int64)),
    (0.5, lambda rng, n, p: (rng.random(n) < p).astype(np.int64)),
    (0.01, lambda rng, n, p: rng.random(n) < p),
    (0.3, lambda rng, n, p: rng.random(n) < p),
    (0.02, lambda rng, n, p: np.where(rng.random(n) < p, 2.0, 1.0)),
])
def test_flags_get_neither_clip_nor_log(fit_columns: Callable[..., Fit], share: float,
                                        values: Callable[..., np.ndarray]) -> None:
    from sklearn.preprocessing import StandardScaler

    flag = values(np.random.default_rng(5), N, share)
    _, t, enc = fit_columns({"flag": flag})
    assert t.functions == ["none"]
    assert (t.clip_low[0], t.clip_high[0]) == (-np.inf, np.inf)
    expected = StandardScaler().fit_transform(np.asarray(flag, dtype=float)[:, None])[:, 0]
    np.testing.assert_allclose(enc.num[:, 0], expected, rtol=1e-12, atol=1e-12)
    assert not enc.clipped


@pytest.mark.parametrize("kind", ["normal", "lognormal", "profit", "missing"])
def test_clip_bounds_hold_the_half_percent_quantiles(fit_columns: Callable[..., Fit],
                                                     kind: str) -> None:
    rng = np.random.default_rng(6)
    x = {"normal": rng.normal(0, 3, N), "lognormal": rng.lognormal(2, 1, N),
         "profit": MIXED["profit"](rng, N),
         "missing": with_missing(rng.lognormal(2, 1, N), rng, 0.1)}[kind]
    _, t, enc = fit_columns({"x": x})
    lo, hi = t.clip_low[0], t.clip_high[0]
    full = imputed(x)
    # independent: the quantiles of the (log-transformed) imputed values, in raw units
    s = t.log_scales[0]
    fwd, inv = {"none": (lambda v: v, lambda v: v),
                "log1p": (lambda v: np.log1p(v / s), lambda v: np.expm1(v) * s),
                "signed_log": (lambda v: np.sign(v) * np.log1p(np.abs(v) / s),
                               lambda v: np.sign(v) * np.expm1(np.abs(v)) * s)}[t.functions[0]]
    np.testing.assert_allclose([lo, hi], inv(np.quantile(fwd(full), CLIP_QUANTILES)),
                               rtol=1e-12)
    # ... which leave half a percent of the rows on each side
    for outside in ((full < lo).sum(), (full > hi).sum()):
        assert abs(outside - 0.005 * N) <= 1
    rows, values = enc.clipped[0]
    np.testing.assert_array_equal(rows, np.flatnonzero((full < lo) | (full > hi)))
    np.testing.assert_array_equal(values, full[rows])
    # the encoded column spans exactly the clipped range
    ends = np.array([lo, hi])
    np.testing.assert_allclose([enc.num[:, 0].min(), enc.num[:, 0].max()],
                               (fwd(ends) - t.means[0]) / t.scales[0], rtol=1e-12)


# -- per-column settings and `transform: none` -------------------------------------------


def mixed_columns(seed: int = 7, n: int = N) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "money": with_missing(rng.lognormal(5, 0.8, n), rng, 0.05),
        "profit": MIXED["profit"](rng, n),
        "age": with_missing(rng.normal(45, 12, n), rng, 0.02),
        "kids": rng.poisson(1.2, n).astype(np.int64),
        "gender": [None if r < 0.02 else g for r, g in
                   zip(rng.random(n), rng.choice(["F", "M"], n), strict=True)],
        "plan": rng.choice(["basic", "plus", "pro", "team"], n, p=[0.6, 0.25, 0.1, 0.05]).tolist(),
    }


def sklearn_plain(frame: Any, numeric: list[str], categorical: list[str]) -> np.ndarray:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        parts.append(("num", Pipeline([("i", SimpleImputer(strategy="median")),
                                       ("s", StandardScaler())]), numeric))
    if categorical:
        parts.append(("cat", Pipeline([("i", SimpleImputer(strategy="most_frequent")),
                                       ("o", OneHotEncoder(handle_unknown="ignore"))]),
                      categorical))
    return np.asarray(ColumnTransformer(parts, sparse_threshold=0).fit_transform(frame))


def test_transform_none_is_exactly_scikit_learns_scaler_and_one_hot(
        fit_columns: Callable[..., Fit]) -> None:
    columns = mixed_columns()
    cats = ("gender", "plan")
    _, t, enc = fit_columns(columns, categorical=cats, transform="none")
    assert t.plain
    assert t.functions == ["none"] * 4 and (t.weights == 1).all()
    expected = sklearn_plain(pa.table(columns).to_pandas(), t.numeric, list(cats))
    np.testing.assert_allclose(enc.dense(t), expected, rtol=1e-12, atol=1e-12)
    _, auto, auto_enc = fit_columns(columns, categorical=cats)  # the default does differ
    assert not auto.plain
    assert not np.allclose(auto_enc.dense(auto), expected)


def test_per_column_none_is_scikit_learns_for_that_column_only(
        fit_columns: Callable[..., Fit]) -> None:
    columns = mixed_columns()
    cats = ("gender", "plan")
    _, t, enc = fit_columns(columns, categorical=cats,
                            transforms={"money": "none", "gender": "none"})
    frame = pa.table(columns).to_pandas()
    dense = enc.dense(t)
    expected = sklearn_plain(frame, ["money"], ["gender"])
    np.testing.assert_allclose(dense[:, col(t, "money")], expected[:, 0], rtol=1e-12,
                               atol=1e-12)
    g = t.offsets[t.categorical.index("gender")]
    np.testing.assert_allclose(dense[:, g:g + 2], expected[:, 1:], rtol=1e-12, atol=1e-12)
    # the other columns keep the automatic transforms
    assert t.functions[col(t, "profit")] == "signed_log"
    assert np.isfinite(t.clip_high[col(t, "age")])
    assert t.weights[t.categorical.index("plan")] < 1


@pytest.mark.parametrize(("kind", "mode", "function", "clipped"), [
    ("normal", "log", "log1p", True),  # forced, though not skewed
    ("negative-normal", "log", "signed_log", True),
    ("lognormal", "clip", "none", True),  # skewed, but only clipped
    ("lognormal", "none", "none", False),
    ("lognormal", "auto", "log1p", True),
])
def test_a_column_transform_setting_is_obeyed(fit_columns: Callable[..., Fit], kind: str,
                                              mode: str, function: str, clipped: bool) -> None:
    rng = np.random.default_rng(8)
    x = {"normal": rng.normal(50, 5, N), "negative-normal": rng.normal(0, 5, N),
         "lognormal": rng.lognormal(3, 0.8, N)}[kind]
    _, t, _ = fit_columns({"x": x, "y": rng.normal(size=N)}, transforms={"x": mode})
    assert t.functions[0] == function
    assert bool(np.isfinite([t.clip_low[0], t.clip_high[0]]).all()) is clipped
    assert t.functions[1] == "none" and np.isfinite(t.clip_low[1])  # y: auto


# -- original units ----------------------------------------------------------------------


@pytest.mark.parametrize("transform", ["auto", "none"])
def test_original_gives_back_the_imputed_values_including_clipped_rows(
        fit_columns: Callable[..., Fit], transform: str) -> None:
    columns = mixed_columns()
    _, t, enc = fit_columns(columns, categorical=("gender", "plan"), transform=transform)
    for name in t.numeric:
        j = col(t, name)
        raw = imputed(np.asarray(columns[name], dtype=float))
        got = t.original(enc, j)
        np.testing.assert_allclose(got, raw, rtol=1e-9, atol=1e-9)
        if transform == "auto":
            rows, _ = enc.clipped[j]
            assert len(rows) > 0
            np.testing.assert_array_equal(got[rows], raw[rows])  # exactly, not via the log
    if transform == "none":
        assert not enc.clipped


def test_original_at_some_rows_and_profile_means_in_original_units(
        fit_columns: Callable[..., Fit]) -> None:
    """`original(enc, j, rows)` equals `original(enc, j)[rows]` (clipped rows included),
    and segment means in original units (one pass over row blocks on threads, clipped rows
    corrected) equal the means of the imputed raw values."""
    from custseg.core import rowblocks
    from custseg.core.profiles import profile_segments

    n = rowblocks.PARALLEL_ROWS + 5000
    columns = mixed_columns(n=n)
    _, t, enc = fit_columns(columns, categorical=("gender", "plan"))
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, n).astype(np.int32)
    rows = np.sort(rng.choice(n, 5000, replace=False))
    profiles = profile_segments(enc, t, labels, 3)
    for name in t.numeric:
        j = col(t, name)
        full = t.original(enc, j)
        np.testing.assert_array_equal(t.original(enc, j, rows), full[rows])
        clipped_rows, _ = enc.clipped.get(j, (np.zeros(0, int), None))
        np.testing.assert_array_equal(t.original(enc, j, clipped_rows), full[clipped_rows])
        # sorted distinct rows look the clipped rows up among them; any other rows (in
        # any order, repeated) the other way round: both give the same values
        for other in (rng.choice(n, 5000), rows[::-1], np.repeat(clipped_rows[:20], 2),
                      rows[:1], rows[:0]):
            np.testing.assert_array_equal(t.original(enc, j, other), full[other])
        raw = imputed(np.asarray(columns[name], dtype=float))
        for c in range(3):
            assert profiles[c]["numeric"][name]["mean"] == pytest.approx(
                raw[labels == c].mean(), rel=1e-9)
    assert any(len(enc.clipped.get(col(t, name), ((),))[0]) for name in t.numeric)
    assert any(f != "none" for f in t.functions)
    for c in range(3):  # sizes and level shares, from the same pass
        assert profiles[c]["size"] == int((labels == c).sum())
        for j, name in enumerate(t.categorical):
            codes = enc.codes[labels == c, j]
            assert profiles[c]["categorical"][name] == {
                cat: float((codes == i).sum() / (labels == c).sum())
                for i, cat in enumerate(t.categories[j])}


def test_original_of_re_encoded_rows_is_clipped(fit_columns: Callable[..., Fit]) -> None:
    columns = mixed_columns()
    _, t, _ = fit_columns(columns, categorical=("gender", "plan"))
    again = encode(pa.table(columns), t)  # the clipped values are known only at fit
    j = col(t, "money")
    raw = imputed(np.asarray(columns["money"], dtype=float))
    np.testing.assert_allclose(t.original(again, j), np.clip(raw, t.clip_low[j], t.clip_high[j]),
                               rtol=1e-9)


# -- categorical weights -----------------------------------------------------------------


@pytest.mark.parametrize(("shares", "weight", "expected"), [
    ((0.5, 0.5), 0.25, math.sqrt(0.5)),  # 0.7071
    ((0.9, 0.1), 0.25, 1.0),  # sqrt(0.25 / 0.18) > 1: capped
    ((0.8, 0.2), 0.25, math.sqrt(0.25 / 0.32)),
    ((0.25, 0.25, 0.25, 0.25), 0.25, math.sqrt(0.25 / 0.75)),
    ((0.5, 0.3, 0.2), 0.25, math.sqrt(0.25 / 0.62)),
    ((0.5, 0.5), 0.1, math.sqrt(0.2)),
    ((0.5, 0.5), 0.5, 1.0),
    ((0.5, 0.5), 1.0, 1.0),
])
def test_one_hot_blocks_are_weighted(fit_columns: Callable[..., Fit], shares: tuple[float, ...],
                                     weight: float, expected: float) -> None:
    rng = np.random.default_rng(9)
    counts = [round(s * N) for s in shares]
    labels = [f"c{i}" for i in range(len(shares))]
    g = rng.permutation(np.repeat(labels, counts)).tolist()
    assert expected == pytest.approx(min(1.0, math.sqrt(weight / (1 - sum(s * s for s in shares)))))
    _, t, enc = fit_columns({"x": rng.normal(size=N), "g": g}, categorical=("g",),
                            categorical_weight=weight)
    assert t.weights[0] == pytest.approx(expected, rel=1e-12)
    dense = enc.dense(t)
    block = dense[:, 1:]
    assert np.array_equal(block.sum(axis=1), np.full(N, t.weights[0]))  # one weight a row
    np.testing.assert_array_equal(block.argmax(axis=1), [labels.index(v) for v in g])
    np.testing.assert_array_equal(t.feature_weights, [1.0, *([t.weights[0]] * len(shares))])
    _, plain, plain_enc = fit_columns({"x": rng.normal(size=N), "g": g}, categorical=("g",),
                                      categorical_weight=weight, transform="none")
    assert plain.weights.tolist() == [1.0]
    assert set(plain_enc.dense(plain)[:, 1:].ravel()) == {0.0, 1.0}


def test_unknown_categories_at_scoring_are_all_zeros_whatever_the_weight(
        fit_columns: Callable[..., Fit]) -> None:
    rng = np.random.default_rng(10)
    _, t, _ = fit_columns({"x": rng.normal(size=100), "g": ["a", "b"] * 50},
                          categorical=("g",))
    new = encode(pa.table({"x": [0.0, 1.0], "g": ["zzz", "b"]}), t)
    assert new.dense(t)[:, 1:].tolist() == [[0.0, 0.0], [0.0, t.weights[0]]]


# -- re-encoding the training rows -------------------------------------------------------


@pytest.mark.parametrize("transform", ["auto", "none"])
def test_encode_replays_the_fit_on_the_training_rows(fit_columns: Callable[..., Fit],
                                                     transform: str) -> None:
    rng = np.random.default_rng(11)
    columns = mixed_columns()
    days = [dt.date(2013, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 700, N)]
    columns["since"] = [None if r < 0.03 else d.strftime("%d-%m-%Y")
                        for r, d in zip(rng.random(N), days, strict=True)]
    columns["seen"] = pa.array(days, pa.date32())
    _, t, enc = fit_columns(columns, categorical=("gender", "plan"), dates=("since", "seen"),
                            transform=transform)
    assert t.dates == {"since": "%d-%m-%Y", "seen": "iso"}
    again = encode(pa.table(columns), t)
    np.testing.assert_array_equal(again.codes, enc.codes)
    np.testing.assert_allclose(again.num, enc.num, rtol=0, atol=1e-12)
    np.testing.assert_allclose(again.dense(t), enc.dense(t), rtol=0, atol=1e-12)


# -- dates -------------------------------------------------------------------------------


def epoch_days(d: dt.date) -> int:
    return (d - dt.date(1970, 1, 1)).days


@pytest.mark.parametrize("form", ["date32", "text", "timestamp"])
def test_dates_become_days_before_the_newest_date(fit_columns: Callable[..., Fit],
                                                  form: str) -> None:
    rng = np.random.default_rng(12)
    days = [dt.date(2011, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 400, 600)]
    values: Any = {"date32": pa.array(days, pa.date32()),
                   "text": [d.strftime("%d-%m-%Y") for d in days],
                   "timestamp": pa.array([dt.datetime(d.year, d.month, d.day) for d in days],
                                         pa.timestamp("ms"))}[form]
    _, t, enc = fit_columns({"x": rng.normal(size=600), "d": values}, dates=("d",))
    newest = max(days)
    assert t.date_reference == {"d": epoch_days(newest)}
    j = col(t, "d")
    expected = np.array([(newest - d).days for d in days], dtype=float)
    np.testing.assert_allclose(t.original(enc, j), expected, rtol=1e-12, atol=1e-9)
    assert t.functions[j] == "none"  # uniform dates are not skewed
    assert f"days before {newest.isoformat()}" in t.describe("d")


@pytest.mark.parametrize(("transform", "clipped"), [("auto", True), ("none", False)])
def test_a_future_date_at_scoring_is_negative_days_and_clipped(
        fit_columns: Callable[..., Fit], transform: str, clipped: bool) -> None:
    rng = np.random.default_rng(13)
    days = [dt.date(2011, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 400, 600)]
    text = [d.strftime("%d-%m-%Y") for d in days]
    _, t, _ = fit_columns({"x": rng.normal(size=600), "d": text}, dates=("d",),
                          transform=transform)
    j = col(t, "d")
    future = max(days) + dt.timedelta(days=30)
    new = encode(pa.table({"x": [0.0, 0.0], "d": [future.strftime("%d-%m-%Y"), None]}), t)
    raw = -30.0  # days before the newest training date
    if clipped:
        assert t.clip_low[j] >= 0.0
        expected = (t.clip_low[j] - t.means[j]) / t.scales[j]
    else:
        expected = (raw - t.means[j]) / t.scales[j]
    assert new.num[0, j] == pytest.approx(expected, rel=1e-12)
    assert new.num[1, j] == pytest.approx((t.medians[j] - t.means[j]) / t.scales[j], rel=1e-12)


# -- describing the transforms -----------------------------------------------------------


@pytest.mark.parametrize(("name", "words"), [
    ("money", ["clip [", "log1p(x / ", "standardise"]),
    ("profit", ["clip [", "signed log(x / "]),
    ("age", ["clip [", "standardise"]),
    ("gender", ["one-hot (2 levels, weight 0.71)"]),
])
def test_describe_names_each_step(fit_columns: Callable[..., Fit], name: str,
                                  words: list[str]) -> None:
    _, t, _ = fit_columns(mixed_columns(), categorical=("gender", "plan"))
    text = t.describe(name)
    for w in words:
        assert w in text
    if name == "age":
        assert "log" not in text
