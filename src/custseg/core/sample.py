"""Synthetic customers with known latent segments, for demos, tests and benchmarks.

Columns: CustomerID, Age, Income, Purchases, Gender. Each latent segment has its own
age band, a log-normal (right-skewed) income, a Poisson purchase count and a gender
mix; a few values are missing, as in real exports. Pure: returns Arrow tables; the CLI
writes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

__all__ = ["SegmentSpec", "generate_customers", "iter_customer_chunks", "segment_specs"]

GENDERS = ("Female", "Male", "Other")
MISSING_RATE = {"Age": 0.005, "Income": 0.01, "Gender": 0.005}
CHUNK_ROWS = 1_000_000


@dataclass(frozen=True)
class SegmentSpec:
    weight: float
    age_mean: float
    age_sd: float
    income_median: float
    income_sigma: float
    purchases_rate: float
    gender_p: tuple[float, float, float]


def segment_specs(segments: int, seed: int) -> list[SegmentSpec]:
    """Well-separated segment parameters, drawn reproducibly from `seed`."""
    if segments < 1:
        raise ValueError(f"segments must be >= 1, got {segments}")
    rng = np.random.default_rng([seed, 0])
    # spread the segments over the ranges, then shuffle which traits go together
    spread = (np.arange(segments) + rng.uniform(0.2, 0.8, segments)) / segments
    ages = 20 + 50 * rng.permutation(spread)
    incomes = np.exp(np.log(18_000) + np.log(200_000 / 18_000) * rng.permutation(spread))
    rates = 1 + 39 * rng.permutation(spread)
    weights = rng.dirichlet(np.full(segments, 6.0))
    out = []
    for i in range(segments):
        g = rng.dirichlet([6.0, 6.0, 0.6])
        out.append(
            SegmentSpec(
                weight=float(weights[i]),
                age_mean=float(ages[i]),
                age_sd=float(rng.uniform(3, 6)),
                income_median=float(incomes[i]),
                income_sigma=float(rng.uniform(0.15, 0.3)),
                purchases_rate=float(rates[i]),
                gender_p=(float(g[0]), float(g[1]), float(g[2])),
            )
        )
    return out


def _chunk(
    specs: list[SegmentSpec], start: int, rows: int, rng: np.random.Generator
) -> tuple[pa.Table, np.ndarray]:
    weights = np.array([s.weight for s in specs])
    seg = rng.choice(len(specs), size=rows, p=weights / weights.sum())
    age_mean = np.array([s.age_mean for s in specs])[seg]
    age_sd = np.array([s.age_sd for s in specs])[seg]
    age = np.clip(np.rint(rng.normal(age_mean, age_sd)), 18, 95).astype(np.int64)
    log_inc = np.log(np.array([s.income_median for s in specs]))[seg]
    sigma = np.array([s.income_sigma for s in specs])[seg]
    income = np.rint(np.exp(rng.normal(log_inc, sigma)) / 10) * 10
    purchases = rng.poisson(np.array([s.purchases_rate for s in specs])[seg]).astype(np.int64)
    cum = np.cumsum(np.array([s.gender_p for s in specs]), axis=1)[seg]
    u = rng.random(rows)[:, None]
    gender = np.asarray(GENDERS, dtype=object)[np.minimum((u > cum).sum(axis=1), 2)]

    def mask(name: str) -> np.ndarray:
        return rng.random(rows) < MISSING_RATE[name]

    table = pa.table(
        {
            "CustomerID": pa.array(np.arange(start + 1, start + rows + 1, dtype=np.int64)),
            "Age": pa.array(age, mask=mask("Age")),
            "Income": pa.array(income, mask=mask("Income")),
            "Purchases": pa.array(purchases),
            "Gender": pa.array(gender, type=pa.string(), mask=mask("Gender")),
        }
    )
    return table, seg


def iter_customer_chunks(
    rows: int, segments: int, seed: int, chunk_rows: int = CHUNK_ROWS
) -> Iterator[tuple[pa.Table, np.ndarray]]:
    """Yield (table, true segment labels) chunks that together hold `rows` customers."""
    specs = segment_specs(segments, seed)
    for n, start in enumerate(range(0, rows, chunk_rows)):
        rng = np.random.default_rng([seed, 1, n])
        yield _chunk(specs, start, min(chunk_rows, rows - start), rng)


def generate_customers(rows: int, segments: int = 3, seed: int = 0) -> tuple[pa.Table, np.ndarray]:
    """All `rows` customers in one table, with their true segment labels."""
    parts = list(iter_customer_chunks(rows, segments, seed))
    return (pa.concat_tables([t for t, _ in parts]), np.concatenate([s for _, s in parts]))
