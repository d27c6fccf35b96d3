"""Live request rate and latency of an endpoint, from the server's own Prometheus
counters (`serving/metrics`, summed over its workers).

Counters only grow, so a rate needs two looks: each page view records the counters, and
the figures compare them with the oldest look of the last `WINDOW` seconds (the
endpoint page reloads itself, so the window fills while it is open). Latency quantiles
come from the histogram's buckets, as Prometheus' `histogram_quantile` reads them (the
upper bound of the bucket the quantile falls in).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from custseg.serving.metrics import BUCKETS, Metrics

__all__ = ["WINDOW", "EndpointTraffic", "Traffic"]

WINDOW = 60.0  # seconds of looks kept
MIN_SPAN = 1.0  # a rate over less than this is not shown


@dataclass(frozen=True)
class _Counts:
    requests: int
    errors: int
    latency_count: int
    latency_sum: float
    buckets: tuple[int, ...]

    @classmethod
    def of(cls, metrics: Metrics, endpoint: str) -> _Counts:
        requests = errors = count = 0
        total, buckets = 0.0, [0] * len(BUCKETS)
        for (name, _, status), n in metrics.requests.items():
            if name == endpoint:
                requests += n
                errors += n if status != 200 else 0
        for (name, version), n in metrics.counts.items():
            if name == endpoint:
                count += n
                total += metrics.sums[(name, version)]
                mine = metrics.cumulative_buckets(name, version)
                buckets = [a + b for a, b in zip(buckets, mine, strict=True)]
        return cls(requests, errors, count, total, tuple(buckets))

    def minus(self, earlier: _Counts) -> _Counts:
        """The counts since `earlier`; a worker restarted in between (its counters gone)
        makes a count shrink: then the whole of the later counts is taken."""
        if self.requests < earlier.requests or self.latency_count < earlier.latency_count:
            return self
        return _Counts(self.requests - earlier.requests, self.errors - earlier.errors,
                       self.latency_count - earlier.latency_count,
                       self.latency_sum - earlier.latency_sum,
                       tuple(a - b for a, b in zip(self.buckets, earlier.buckets, strict=True)))


def _quantile(buckets: tuple[int, ...], count: int, q: float) -> float | None:
    """The upper bound of the (cumulative) bucket holding quantile `q`; None when
    nothing was observed, inf when it lies beyond the last bound."""
    if count <= 0:
        return None
    rank = q * count
    return next((bound for bound, n in zip(BUCKETS, buckets, strict=True) if n >= rank),
                float("inf"))


@dataclass(frozen=True)
class EndpointTraffic:
    """An endpoint's traffic: totals since the server started, and over the last
    `span` seconds (None before a second look)."""

    total_requests: int
    total_errors: int
    mean_latency: float | None  # seconds, since the server started
    span: float | None
    rate: float | None  # requests a second
    error_rate: float | None
    window_mean: float | None
    p50: float | None
    p95: float | None


class Traffic:
    """Looks at the counters over time (thread-safe: pages render in threads)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._looks: deque[tuple[float, Metrics]] = deque()
        self._lock = threading.Lock()

    def look(self, metrics: Metrics) -> None:
        """Record the counters as they are now (the server's merged metrics)."""
        now = self._clock()
        with self._lock:
            if self._looks and now - self._looks[-1][0] < MIN_SPAN and len(self._looks) > 1:
                self._looks.pop()  # at most a look a second is kept, however many views
            self._looks.append((now, metrics))
            while self._looks and now - self._looks[0][0] > WINDOW:
                self._looks.popleft()

    def figures(self, endpoint: str) -> EndpointTraffic:
        """The figures of `endpoint` at the latest look."""
        with self._lock:
            looks = list(self._looks)
        if not looks:
            return EndpointTraffic(0, 0, None, None, None, None, None, None, None)
        (start, first), (end, last) = looks[0], looks[-1]
        now = _Counts.of(last, endpoint)
        mean = now.latency_sum / now.latency_count if now.latency_count else None
        span = end - start
        if span < MIN_SPAN:
            return EndpointTraffic(now.requests, now.errors, mean, None, None, None, None,
                                   None, None)
        d = now.minus(_Counts.of(first, endpoint))
        return EndpointTraffic(
            now.requests, now.errors, mean, span, d.requests / span, d.errors / span,
            d.latency_sum / d.latency_count if d.latency_count else None,
            _quantile(d.buckets, d.latency_count, 0.5),
            _quantile(d.buckets, d.latency_count, 0.95))
