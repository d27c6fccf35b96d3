"""Passes over many rows, in blocks, on both cores.

numpy releases the GIL inside matrix products and element-wise loops but not in
`bincount`, so per-cluster sums are taken as one-hot block products instead: each block
of rows becomes a small (k x rows) indicator matrix, and `indicator @ block` sums the
block's rows per cluster. The indicator is laid out cluster by cluster: reductions
along numpy's short axis (a (rows x k) matrix's `argmin(axis=1)` or `sum(axis=0)`) are
5 to 20x slower than the same work on k contiguous rows. Blocks run on a thread per core
when the rows are many; the partial results are added in block order, so the answer
does not depend on the timing of the threads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

__all__ = ["BLOCK", "CORES", "PARALLEL_ROWS", "blocks", "cluster_sums", "indicator", "map_blocks",
           "nearest", "nearest_one_hot", "sq_norms"]

BLOCK = 1 << 16  # rows: a block's temporaries stay in the CPU's cache
PARALLEL_ROWS = 1 << 18  # below this, one thread is as fast
CORES = os.cpu_count() or 1  # asked once: each call costs about 10 us
T = TypeVar("T")


def blocks(n: int, size: int = BLOCK) -> Iterator[tuple[int, int]]:
    """(start, end) of each block of `size` rows."""
    for s in range(0, n, size):
        yield s, min(s + size, n)


def map_blocks(work: Callable[[int, int], T], n: int, size: int = BLOCK, *,
               parallel: bool | None = None) -> list[T]:
    """`work(start, end)` for each block of rows, in block order; on threads when
    `parallel`, or by default for many rows (`work` must only write its own rows of any
    shared output)."""
    spans = list(blocks(n, size))
    workers = min(len(spans), CORES)
    if workers <= 1 or not (n >= PARALLEL_ROWS if parallel is None else parallel):
        return [work(s, e) for s, e in spans]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda span: work(*span), spans))


def indicator(labels: np.ndarray, k: int) -> np.ndarray:
    """The (k, len(labels)) one-hot matrix of cluster labels, as float64."""
    return np.asarray(labels[None, :] == np.arange(k, dtype=labels.dtype)[:, None],
                      dtype=np.float64)


def sq_norms(x: np.ndarray) -> np.ndarray:
    """Each row's squared norm: a matrix-vector product, 2 to 3x faster than
    `einsum("ij,ij->i")` on few columns."""
    return np.asarray(np.square(x) @ np.ones(x.shape[1], dtype=x.dtype))


def nearest(d2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For (k, rows) distances to k centres: each row's nearest centre (the first of
    equals, as `argmin`) as int32, and its distance (a new array). k passes over
    contiguous rows, 5x faster than `argmin` over numpy's short axis."""
    k, m = d2.shape
    best = d2[0].copy()
    for j in range(1, k):
        np.minimum(best, d2[j], out=best)
    labels = np.full(m, k - 1, dtype=np.int32)
    equal = np.empty(m, dtype=bool)
    for j in range(k - 2, -1, -1):  # downwards: the first centre at the minimum wins
        np.equal(d2[j], best, out=equal)
        labels += (j - labels) * equal
    return labels, best


def nearest_one_hot(d2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`nearest`, and the (k, rows) one-hot matrix of its labels in `d2`'s dtype, for the
    per-cluster sums that follow. The minimum is one reduction and the one-hot matrix one
    comparison with it; the labels are a product with (0..k-1). Rows where two centres
    tie (or a distance is NaN) are taken from `argmin`, so the labels equal `nearest`'s.
    Half the numpy calls of `nearest` + `indicator` and fewer passes: 40% less time on
    a seeding sample in float32."""
    k = len(d2)
    best = d2.min(axis=0)
    one_hot = np.equal(d2, best[None, :]).astype(d2.dtype)
    labels = (np.arange(k, dtype=d2.dtype) @ one_hot).astype(np.int32)
    odd = np.flatnonzero(np.ones(k, dtype=d2.dtype) @ one_hot != 1)
    if len(odd):
        first = d2[:, odd].argmin(axis=0).astype(np.int32)
        one_hot[:, odd] = 0
        one_hot[first, odd] = 1
        labels[odd] = first
    return labels, best, one_hot


def cluster_sums(x: np.ndarray, labels: np.ndarray, k: int, *, squares: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-cluster sums of the rows of `x` (k, d), sizes (k,), and, with `squares`, sums
    of the rows' squared norms (k,; zeros without), in one pass over the rows."""
    d = x.shape[1]

    def work(s: int, e: int) -> np.ndarray:
        one_hot = indicator(labels[s:e], k)
        block = x[s:e]
        part = np.zeros((k, d + 2))
        part[:, :d] = one_hot @ block
        part[:, d] = one_hot.sum(axis=1)
        if squares:
            part[:, d + 1] = one_hot @ sq_norms(block)
        return part

    total = np.zeros((k, d + 2))
    for part in map_blocks(work, len(x)):
        total += part
    return total[:, :d], np.rint(total[:, d]).astype(np.int64), total[:, d + 1]
