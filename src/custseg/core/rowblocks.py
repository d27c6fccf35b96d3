"""Passes over many rows, in blocks, on both cores.

numpy releases the GIL inside matrix products and element-wise loops but not in
`bincount`, so per-cluster sums are taken as one-hot block products instead: each block
of rows becomes a small (rows x k) indicator matrix, and `indicator.T @ block` sums the
block's rows per cluster. Blocks run on a thread per core when the rows are many; the
partial results are added in block order, so the answer does not depend on the timing
of the threads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

__all__ = ["BLOCK", "PARALLEL_ROWS", "blocks", "cluster_sums", "indicator", "map_blocks"]

BLOCK = 1 << 16  # rows: a block's temporaries stay in the CPU's cache
PARALLEL_ROWS = 1 << 18  # below this, one thread is as fast
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
    workers = min(len(spans), os.cpu_count() or 1)
    if workers <= 1 or not (n >= PARALLEL_ROWS if parallel is None else parallel):
        return [work(s, e) for s, e in spans]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda span: work(*span), spans))


def indicator(labels: np.ndarray, k: int) -> np.ndarray:
    """The (len(labels), k) one-hot matrix of cluster labels, as float64."""
    return np.asarray(labels[:, None] == np.arange(k, dtype=labels.dtype), dtype=np.float64)


def cluster_sums(x: np.ndarray, labels: np.ndarray, k: int, *, squares: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-cluster sums of the rows of `x` (k, d), sizes (k,), and, with `squares`, sums
    of the rows' squared norms (k,; zeros without), in one pass over the rows."""
    d = x.shape[1]

    def work(s: int, e: int) -> np.ndarray:
        one_hot = indicator(labels[s:e], k)
        block = x[s:e]
        part = np.zeros((k, d + 2))
        part[:, :d] = one_hot.T @ block
        part[:, d] = one_hot.sum(axis=0)
        if squares:
            part[:, d + 1] = one_hot.T @ np.einsum("ij,ij->i", block, block)
        return part

    total = np.zeros((k, d + 2))
    for part in map_blocks(work, len(x)):
        total += part
    return total[:, :d], np.rint(total[:, d]).astype(np.int64), total[:, d + 1]
