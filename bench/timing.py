"""Bounded wall-clock measurement of a callable: the one timer every benchmark uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """``calls`` calls took ``seconds`` in total (warm-up excluded)."""

    calls: int
    seconds: float

    @property
    def per_call(self) -> float:
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
    calls = 0
    t0 = time.perf_counter()
    elapsed = 0.0
    while calls < max_calls and (calls < min_calls or elapsed < budget_s):
        fn()
        calls += 1
        elapsed = time.perf_counter() - t0
    return Timing(calls, elapsed)
