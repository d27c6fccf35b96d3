"""Generated customer tables with known segments, for `bench_quality.py`.

Each generator is seeded (numpy `default_rng`), writes one CSV into a folder and returns a
:class:`Generated`: the CSV's path, the true segment of every row (in row order) and the
columns that carry the segments. The truth never goes into the CSV.

* :func:`make_nuisance`: 4 segments in Age and three log-normal money columns
  (AnnualIncome, AnnualSpend, AvgBasket), buried in the nuisances a real export has:
  a few outlier rows with every money column at 50x, an irrelevant 50/50 Gender
  (independent of the segments), a SignupDate as `MM-DD-YYYY` strings (independent of
  the segments), a constant Region (an export of one region), a sequential CustomerID
  and a target-like Churn (Yes/No, its rate depends on the segment but it is an
  outcome, not a trait).
* :func:`make_mall`: shaped like the well-known "Mall Customers" table: 200 rows,
  5 groups in Annual Income (k$) x Spending Score (1-100), Age loosely tied to the groups,
  an irrelevant 56/44 Gender, and a CustomerID numbered in order of income as in the
  original file. The truth is the 5 income x score groups.

`truth_recoverable_ari` is the generator's own sanity check: KMeans at the true k, on
the informative columns only (log of the money columns, standard-scaled), against the
truth. It shows the segments can be found once the nuisances are set aside.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np

__all__ = ["GENERATORS", "Generated", "make_mall", "make_nuisance", "truth_recoverable_ari"]


@dataclass(frozen=True)
class Generated:
    """A generated CSV and what is known about it."""

    name: str
    path: Path
    truth: np.ndarray  # true segment of every row, in row order
    informative: list[str]  # the columns the segments live in
    log_columns: list[str] = field(default_factory=list)  # informative money columns
    notes: dict[str, str] = field(default_factory=dict)  # column -> what it is

    @property
    def k(self) -> int:
        return int(self.truth.max()) + 1


def _write_csv(path: Path, header: list[str], columns: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(zip(*columns, strict=True))


def _money(values: np.ndarray) -> list[str]:
    return [f"{v:.2f}" for v in values]


# -- nuisance data -----------------------------------------------------------------------

# (share, Age mean, Age sd, log-mean AnnualIncome, log-mean AnnualSpend, log-mean AvgBasket)
_NUISANCE_SEGMENTS = [
    (0.40, 27.0, 4.0, np.log(28_000), np.log(1_200), np.log(22)),  # young, low spend
    (0.30, 41.0, 5.0, np.log(58_000), np.log(3_800), np.log(48)),  # families
    (0.18, 52.0, 6.0, np.log(130_000), np.log(6_500), np.log(140)),  # affluent
    (0.12, 68.0, 5.0, np.log(36_000), np.log(1_700), np.log(75)),  # retired, big baskets
]
_NUISANCE_LOG_SD = 0.25  # within-segment sd of log(money): a segment spans about x0.6..x1.6
_CHURN_RATE = [0.35, 0.15, 0.08, 0.25]


def make_nuisance(folder: Path, *, n: int = 5000, n_outliers: int = 10,
                  seed: int = 0) -> Generated:
    """4 known segments plus every nuisance of a real export (see the module docstring)."""
    rng = np.random.default_rng(seed)
    shares = np.array([s[0] for s in _NUISANCE_SEGMENTS])
    sizes = np.floor(shares * n).astype(int)
    sizes[0] += n - sizes.sum()
    truth = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    params = np.array([s[1:] for s in _NUISANCE_SEGMENTS])[truth]
    age = np.clip(np.round(rng.normal(params[:, 0], params[:, 1])), 18, 95)
    money = np.exp(rng.normal(params[:, 2:], _NUISANCE_LOG_SD))  # income, spend, basket
    outliers = rng.choice(n, size=n_outliers, replace=False)
    money[outliers] *= 50.0  # the rows keep their true segment

    gender = np.where(rng.random(n) < 0.5, "Female", "Male")
    start = date(2010, 1, 1)
    days = rng.integers(0, (date(2020, 12, 31) - start).days + 1, size=n)
    signup = [(start + timedelta(days=int(d))).strftime("%m-%d-%Y") for d in days]
    churn = np.where(rng.random(n) < np.array(_CHURN_RATE)[truth], "Yes", "No")

    path = folder / "nuisance.csv"
    header = ["CustomerID", "Age", "Gender", "AnnualIncome", "AnnualSpend", "AvgBasket",
              "SignupDate", "Region", "Churn"]
    _write_csv(path, header, [
        [str(100_001 + i) for i in range(n)],
        [str(int(a)) for a in age],
        list(gender),
        _money(money[:, 0]), _money(money[:, 1]), _money(money[:, 2]),
        signup,
        ["4"] * n,
        list(churn),
    ])
    return Generated(
        name="nuisance", path=path, truth=truth,
        informative=["Age", "AnnualIncome", "AnnualSpend", "AvgBasket"],
        log_columns=["AnnualIncome", "AnnualSpend", "AvgBasket"],
        notes={
            "CustomerID": "id: 100001.. in row order",
            "Gender": "irrelevant: 50/50, independent of the segments",
            "AnnualIncome": "segment trait, log-normal money",
            "AnnualSpend": "segment trait, log-normal money",
            "AvgBasket": "segment trait, log-normal money",
            "Age": "segment trait, normal",
            "SignupDate": "irrelevant date, MM-DD-YYYY strings, uniform 2010-2020",
            "Region": "constant 4 (an export of one region)",
            "Churn": f"target-like Yes/No, rate by segment {_CHURN_RATE}",
            "outliers": f"{n_outliers} rows with every money column x50",
        },
    )


# -- mall-like data ----------------------------------------------------------------------

# (rows, income low, income high, score mean, score sd, age mean, age sd), after the
# 5 groups of the public Mall Customers table
_MALL_GROUPS = [
    (23, 15, 39, 20.0, 8.0, 45.0, 13.0),  # low income, low score
    (22, 15, 39, 80.0, 8.0, 25.0, 5.0),  # low income, high score
    (81, 40, 70, 50.0, 6.0, 43.0, 15.0),  # middle, middle
    (35, 71, 137, 18.0, 9.0, 41.0, 11.0),  # high income, low score
    (39, 71, 137, 82.0, 8.0, 33.0, 4.0),  # high income, high score
]


def make_mall(folder: Path, *, seed: int = 0) -> Generated:
    """200 rows, 5 groups in Annual Income (k$) x Spending Score (1-100)."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(_MALL_GROUPS)), [g[0] for g in _MALL_GROUPS])
    g = np.array([x[1:] for x in _MALL_GROUPS])[truth]
    income = rng.integers(g[:, 0].astype(int), g[:, 1].astype(int) + 1)
    score = np.clip(np.round(rng.normal(g[:, 2], g[:, 3])), 1, 99).astype(int)
    age = np.clip(np.round(rng.normal(g[:, 4], g[:, 5])), 18, 70).astype(int)
    gender = np.where(rng.random(len(truth)) < 0.56, "Female", "Male")
    # the original file lists customers by income, CustomerID 1..200
    order = np.lexsort((rng.random(len(truth)), income))
    truth, income, score, age, gender = (a[order] for a in (truth, income, score, age, gender))

    path = folder / "mall.csv"
    header = ["CustomerID", "Gender", "Age", "Annual Income (k$)", "Spending Score (1-100)"]
    _write_csv(path, header, [
        [str(i + 1) for i in range(len(truth))], list(gender),
        [str(a) for a in age], [str(v) for v in income], [str(s) for s in score],
    ])
    return Generated(
        name="mall", path=path, truth=truth,
        informative=["Annual Income (k$)", "Spending Score (1-100)"],
        notes={
            "CustomerID": "id: 1..200 in order of income, as in the original table",
            "Gender": "irrelevant: 56/44, independent of the groups",
            "Age": "loosely tied to the groups (young big spenders), not part of the truth",
            "Annual Income (k$)": "group trait",
            "Spending Score (1-100)": "group trait",
        },
    )


GENERATORS = {"nuisance": make_nuisance, "mall": make_mall}


def truth_recoverable_ari(data: Generated, seed: int = 0) -> float:
    """ARI of KMeans(true k) on the informative columns alone (logged money, scaled)."""
    import pandas as pd
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    frame = pd.read_csv(data.path)
    x = np.column_stack([np.log(frame[c].to_numpy(float)) if c in data.log_columns
                         else frame[c].to_numpy(float) for c in data.informative])
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    labels = KMeans(n_clusters=data.k, n_init=10, random_state=seed).fit_predict(x)
    return float(adjusted_rand_score(data.truth, labels))
