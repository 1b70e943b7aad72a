"""streamer.volatility: EWMAs against batch oracles, regimes with hysteresis, the band.

Burst timeline (short span 5, long span 100, burst at 2.0, resolve at 1.5, min_run 2)::

    points:  0 ........ 199 | 200 ...... 259 | 260 ............ 499
    |error|: ~1 (baseline)  | ~4 (burst)     | ~1 again
    ratio:   ~1             | climbs past 2  | falls back under 1.5
    events:                   open (~203)      resolved (~270), once
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.volatility import VolatilityConfig, VolatilityDetector, ratio
from tests.test_detect import ewma_closed

NEVER = {"burst_ratio": 1e9, "critical_ratio": 1e9, "collapse_ratio": 1e-9}


def feed(det: VolatilityDetector, err: np.ndarray, dv: np.ndarray, row: int = 0) -> list:
    r = np.array([row])
    return [det.update(r, err[i : i + 1], dv[i : i + 1], np.array([i])) for i in range(len(err))]


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"\[detect.volatility\] short_span must be < long"):
        VolatilityConfig(short_span=600)
    with pytest.raises(ValueError, match="resolve_ratio < burst_ratio"):
        VolatilityConfig(burst_ratio=1.2)
    with pytest.raises(ValueError, match="collapse_ratio < 1/resolve_ratio"):
        VolatilityConfig(collapse_ratio=0.9)
    with pytest.raises(ValueError, match="band_k must be a positive"):
        VolatilityConfig(band_k=-1)


def test_ratio_conventions() -> None:
    np.testing.assert_array_equal(ratio(np.array([0.0, 1.0, 2.0]), np.array([0.0, 0.0, 4.0])),
                                  [1.0, math.inf, 0.5])  # fmt: skip


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 30))
def test_short_and_long_ewmas_match_batch_oracle_on_every_prefix(seed: int, warmup: int) -> None:
    """Long = EWMA of |x|; short = EWMA of min(|x|, clip * long before the point) once armed."""
    cfg = VolatilityConfig(warmup=warmup, short_span=6, long_span=40, **NEVER)
    rng = np.random.default_rng(seed)
    err = rng.normal(0, 1, 90) * rng.uniform(0.5, 3, 90)
    err[rng.integers(0, 90, 4)] *= 30  # spikes the short EWMA must clip
    dv = rng.standard_t(2, 90)
    det = VolatilityDetector(cfg, 3)
    a_s, a_l = 2 / (cfg.short_span + 1), 2 / (cfg.long_span + 1)
    for col, x in (("err", err), ("dv", dv)):
        det = VolatilityDetector(cfg, 3)
        x = np.abs(x)
        clipped = []
        for i in range(len(x)):
            feed(det, err[i : i + 1] if col == "err" else np.zeros(1),
                 dv[i : i + 1] if col == "dv" else np.zeros(1), row=1)  # fmt: skip
            long_before = ewma_closed(x[:i], 0.0, 0.0, a_l) if i else 0.0
            clipped.append(x[i] if i + 1 <= warmup else min(x[i], cfg.clip * long_before))
            want_long = ewma_closed(x[: i + 1], 0, 0, a_l)
            want_short = ewma_closed(np.array(clipped), 0, 0, a_s)
            # stored in float32 (VOLATILITY_SPEC), rounded at every point
            np.testing.assert_allclose(det.table["l_" + col][1], want_long, rtol=2e-5)
            np.testing.assert_allclose(det.table["s_" + col][1], want_short, rtol=2e-5)
        assert not det.table["open"].any()


def test_burst_timeline_from_the_docstring() -> None:
    cfg = VolatilityConfig(warmup=50, short_span=5, long_span=100, burst_ratio=2.0,
                           resolve_ratio=1.5, min_run=2, resolve_points=5)  # fmt: skip
    rng = np.random.default_rng(11)
    err = rng.normal(0, 1, 500)
    err[200:260] *= 4
    steps = feed(VolatilityDetector(cfg, 1), err, err)
    opened = [i for i, s in enumerate(steps) if s.transitions.opened[0]]
    resolved = [i for i, s in enumerate(steps) if s.transitions.resolved[0]]
    assert len(opened) == 1 and 200 <= opened[0] <= 215
    assert len(resolved) == 1 and 260 < resolved[0] <= 300
    assert steps[opened[0]].threshold[0] == 2.0 and steps[opened[0]].score[0] >= 2.0


def test_a_single_spike_is_not_a_volatility_regime() -> None:
    rng = np.random.default_rng(5)
    err = rng.normal(0, 1, 400)
    err[300] = 60.0
    err[301] = -60.0
    steps = feed(VolatilityDetector(VolatilityConfig(), 1), err, err)
    assert not any(s.transitions.opened[0] for s in steps)


def test_a_flat_line_opens_a_collapse_that_resolves_when_the_signal_returns() -> None:
    rng = np.random.default_rng(8)
    err = rng.normal(0, 1, 700)
    err[300:450] = 0.0
    det = VolatilityDetector(VolatilityConfig(), 1)
    steps = feed(det, err, err)
    opened = [i for i, s in enumerate(steps) if s.transitions.opened[0]]
    resolved = [i for i, s in enumerate(steps) if s.transitions.resolved[0]]
    assert len(opened) == 1 and 300 < opened[0] < 330
    assert steps[opened[0]].threshold[0] == pytest.approx(1 / 0.3)
    assert len(resolved) == 1 and 450 < resolved[0] < 520
    assert steps[opened[0] + 1].transitions.opened[0] == 0
    det2 = VolatilityDetector(VolatilityConfig(), 1)
    feed(det2, err[:320], err[:320])
    assert det2.collapsed(np.array([0]))[0]


def test_a_permanent_regime_change_is_learnt_after_relearn_after_points() -> None:
    cfg = VolatilityConfig(relearn_after=100)
    rng = np.random.default_rng(2)
    err = rng.normal(0, 1, 1500)
    err[300:] *= 5
    steps = feed(VolatilityDetector(cfg, 1), err, err)
    opened = [i for i, s in enumerate(steps) if s.transitions.opened[0]]
    resolved = [i for i, s in enumerate(steps) if s.transitions.resolved[0]]
    assert len(opened) == 1 and len(resolved) == 1
    assert opened[0] + cfg.relearn_after < resolved[0]
    assert steps[resolved[0]].transitions.severity[0] == 1  # the peak of a 5x burst: critical


def test_band_is_prediction_plus_minus_k_recent_sigmas() -> None:
    det = VolatilityDetector(VolatilityConfig(band_k=2.0), 2)
    feed(det, np.full(30, 0.5), np.full(30, 0.5), row=1)
    lo, hi = det.band(np.array([1]), np.array([10.0]))
    sigma = 0.5 * math.sqrt(math.pi / 2)
    assert lo[0] == pytest.approx(10 - 2 * sigma) and hi[0] == pytest.approx(10 + 2 * sigma)
