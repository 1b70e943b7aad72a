"""Bounded wall-clock measurement of a callable: the one timer every benchmark uses.

The machine is shared, so a figure is the MEDIAN call time: a burst of someone else's work
moves the mean but hardly the median. Both are kept.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """``calls`` calls took ``seconds`` in total (warm-up excluded); ``median`` per call."""

    calls: int
    seconds: float
    median: float

    @property
    def per_call(self) -> float:
        """The median seconds per call (what every figure uses)."""
        return self.median

    @property
    def mean(self) -> float:
        return self.seconds / self.calls


def measure(
    fn: Callable[[], object],
    min_calls: int = 3,
    budget_s: float = 2.0,
    max_calls: int = 100_000,
    warmup: int = 1,
) -> Timing:
    """Call ``fn`` ``warmup`` times, then at least ``min_calls`` times and until ``budget_s``
    seconds have passed (or ``max_calls`` calls were made); return the measured calls."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    t0 = time.perf_counter()
    elapsed = 0.0
    while len(times) < max_calls and (len(times) < min_calls or elapsed < budget_s):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - t0
    return Timing(len(times), elapsed, statistics.median(times))
