"""streamer.detect: the anomaly detector's statistics against batch oracles, and its rules.

Episode timeline (open_threshold 5, resolve_points 3, cooldown 2; ``u`` in sigmas)::

    point:   30  31  32  33  34  35  36  37  38
    |u|:      0   9   0   0   0   6   0   0   0
    events:      open      resolved           <- 35 is inside the cooldown: no new open
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.buffers import StateTable
from streamer.detect import (
    GAUSS_M1,
    GAUSS_M2,
    GAUSS_RATE,
    SQRT_HALF_PI,
    TAIL_PRIOR,
    AnomalyConfig,
    AnomalyDetector,
    calibration_sigma,
    tail_quantile,
)
from streamer.episodes import EPISODE_SPEC, step_episodes
from streamer.manifest import Calibration

CAL = Calibration({"0.5": 0.6745, "0.9": 1.6449, "0.99": 2.5758}, 1.0, 1000)  # sigma0 = 1


def run_one(det: AnomalyDetector, row: int, errors: np.ndarray, scale: float = 1.0) -> list:
    steps = []
    for i, e in enumerate(errors):
        r = np.array([row])
        steps.append(
            det.update(r, np.array([e]), np.array([scale]), np.zeros(1), np.array([i]),
                       np.zeros(1, bool))
        )  # fmt: skip
    return steps


def ewma_closed(x: np.ndarray, m0: float, prior: float, alpha: float) -> float:
    """Batch form of m_k = m_{k-1} + max(alpha, 1/(k + prior)) (x_k - m_{k-1}):
    a running mean with ``prior`` pseudo-points of m0 while 1/(k + prior) >= alpha,
    then a plain EWMA: weights alpha (1 - alpha)^age on the rest."""
    k = np.arange(1, len(x) + 1)
    n0 = int(np.sum(1.0 / (k + prior) >= alpha))
    m = (prior * m0 + x[:n0].sum()) / (prior + n0)
    rest = x[n0:]
    age = np.arange(len(rest))[::-1]
    return float((1 - alpha) ** len(rest) * m + np.sum(alpha * (1 - alpha) ** age * rest))


def test_config_rejects_bad_values_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"\[detect.anomaly\] span must be a positive"):
        AnomalyConfig(span=0)
    with pytest.raises(ValueError, match="warmup must be an integer >= 0"):
        AnomalyConfig(warmup=-1)
    with pytest.raises(ValueError, match="resolve_threshold <= run_threshold <= open_thr"):
        AnomalyConfig(run_threshold=6.0)
    with pytest.raises(ValueError, match="critical_threshold must be >= open_threshold"):
        AnomalyConfig(critical_threshold=4.0)
    with pytest.raises(ValueError, match="min_run must be an integer"):
        AnomalyConfig(min_run=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"max_phi must be in \[0, 1\)"):
        AnomalyConfig(max_phi=1.0)


def test_calibration_sigma_is_the_most_cautious_gaussian_reading() -> None:
    assert calibration_sigma(CAL) == pytest.approx(1.0, rel=1e-4)
    heavy = Calibration({"0.5": 0.25, "0.9": 0.8, "0.99": 1.56}, 1.0, 10)
    assert calibration_sigma(heavy) == pytest.approx(1.56 / 2.5758)
    assert calibration_sigma(Calibration({"0.5": 0, "0.9": 0, "0.99": 0}, 0, 0)) == 1.0


# The detector keeps mu, mad, mad_w and rate in float32 (ANOMALY_SPEC), rounding them at
# every point, and everything else follows them: the oracle holds to float32's precision.
RTOL = 2e-5


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.1, 100.0), st.sampled_from(["normal", "laplace"]))
def test_statistics_match_batch_oracle_on_every_prefix(seed: int, scale: float, noise: str) -> None:
    """After each point: mu/mad == closed-form EWMAs over the points the oracle itself judges
    teachable (|u|/f < run_threshold, or warm-up), and so are the whitening's c00 (of
    d_prev^2), c01 (of d * d_prev) and mad_w (of |w|, w = d - phi * d_prev, phi = c01/c00
    clipped; d_prev = the previous point's deviation if it was taught, else 0); u = w /
    sigma_w; the tail rate and moments == closed-form EWMAs over the tail-teachable points
    (|u|/f < open_threshold) and their exceedances; the CUSUM of the raw d / sigma / f ==
    its Lindley form (S_n - min S)."""
    cfg = AnomalyConfig(warmup=8, span=30, prior_points=5, resolve_points=10**6,
                        relearn_after=10**6, tail_span=20)  # fmt: skip
    rng = np.random.default_rng(seed)
    e = (rng.normal(0.3, 1.0, 150) if noise == "normal" else rng.laplace(0.3, 1.0, 150)) * scale
    e[rng.choice(np.arange(20, 150), 6, replace=False)] += rng.choice([-1, 1], 6) * 40 * scale
    det = AnomalyDetector(cfg, CAL, 4)
    alpha, alpha_tail = 2 / (cfg.span + 1), 2 / (cfg.tail_span + 1)
    mad0 = calibration_sigma(CAL) / SQRT_HALF_PI * scale
    taught: list[int] = []
    ws: list[float] = []
    mus: list[float] = []
    tail_taught: list[int] = []
    mu, mad, rate, m1, m2 = 0.0, mad0, GAUSS_RATE, GAUSS_M1, GAUSS_M2
    mad_w, c00, c01, d_prev = mad0, 0.0, 0.0, 0.0
    d_prevs: list[float] = []
    uf_all, u_all = [], []
    for i in range(len(e)):
        step = det.update(np.array([2]), e[i : i + 1], np.array([scale]), np.zeros(1),
                          np.array([i]), np.zeros(1, bool))  # fmt: skip
        d = e[i] - mu
        phi = float(np.clip(c01 / c00, -cfg.max_phi, cfg.max_phi)) if c00 > 0 else 0.0
        w = d - phi * d_prev
        u = w / (mad_w * SQRT_HALF_PI)
        u_raw = d / (mad * SQRT_HALF_PI)
        q = tail_quantile(np.array([rate]), np.array([m1]), np.array([m2]), cfg.tail_level,
                          cfg.tail_risk)[0]  # fmt: skip
        f = max(1.0, q / cfg.open_threshold)
        u_all.append(u)
        uf_all.append(u_raw / f)
        np.testing.assert_allclose(step.u[0], u, rtol=RTOL, atol=RTOL)  # u is O(1)
        np.testing.assert_allclose(step.threshold[0],
                                   cfg.open_threshold * f * mad_w * SQRT_HALF_PI,
                                   rtol=RTOL)  # fmt: skip
        if i < cfg.warmup or abs(u) / f < cfg.run_threshold:
            taught.append(i)
            mus.append(mu)  # mu before each taught point: the previous prefix's closed form
            d_prevs.append(d_prev)
            ws.append(w)
            d_prev = d
        else:
            d_prev = 0.0
        if i < cfg.warmup or abs(u) / f < cfg.open_threshold:
            tail_taught.append(i)
        x = e[taught]
        mu_ref = ewma_closed(x, 0.0, cfg.prior_points, alpha)
        # mad's inputs are |x_k - mu_{k-1}|
        mad_ref = ewma_closed(np.abs(x - np.array(mus)), mad0, cfg.prior_points, alpha)
        np.testing.assert_allclose(det.table["mu"][2], mu_ref, rtol=RTOL, atol=RTOL * scale)
        np.testing.assert_allclose(det.table["mad"][2], mad_ref, rtol=RTOL)
        dp, dx = np.array(d_prevs), x - np.array(mus)
        c00 = ewma_closed(dp * dp, 0.0, cfg.prior_points, alpha)
        c01 = ewma_closed(dx * dp, 0.0, cfg.prior_points, alpha)
        mad_w = ewma_closed(np.abs(np.array(ws)), mad0, cfg.prior_points, alpha)
        # c01 sums terms of both signs: its error is relative to the terms (scale**2)
        for name, want, size in (("c00", c00, scale**2), ("c01", c01, scale**2),
                                 ("mad_w", mad_w, scale)):  # fmt: skip
            np.testing.assert_allclose(det.table[name][2], want, rtol=RTOL, atol=RTOL * size)
        np.testing.assert_allclose(det.table["d_prev"][2], d_prev, rtol=RTOL, atol=RTOL * scale)
        ua = np.abs(np.array(u_all))[tail_taught]
        y = ua[ua > cfg.tail_level] - cfg.tail_level
        rate = ewma_closed((ua > cfg.tail_level).astype(float), GAUSS_RATE, cfg.prior_points,
                           alpha)  # fmt: skip
        m1 = ewma_closed(y, GAUSS_M1, TAIL_PRIOR, alpha_tail)
        m2 = ewma_closed(y * y, GAUSS_M2, TAIL_PRIOR, alpha_tail)
        for name, want in (("rate", rate), ("m1", m1), ("m2", m2)):
            np.testing.assert_allclose(det.table[name][2], want, rtol=RTOL, atol=1e-9)
        mu, mad = mu_ref, mad_ref
        c = np.clip(np.array(uf_all[cfg.warmup :]), -cfg.cusum_clip, cfg.cusum_clip)
        if len(c):
            s_pos = np.cumsum(c - cfg.cusum_drift)
            s_neg = np.cumsum(-c - cfg.cusum_drift)
            g_pos = s_pos[-1] - min(0.0, s_pos.min())
            g_neg = s_neg[-1] - min(0.0, s_neg.min())
            np.testing.assert_allclose(det.table["gpos"][2], g_pos, rtol=RTOL, atol=1e-6)
            np.testing.assert_allclose(det.table["gneg"][2], g_neg, rtol=RTOL, atol=1e-6)
    assert det.table["n_taught"][2] == len(taught)
    assert len(taught) < len(e)  # some outliers were protected


def test_tail_quantile_matches_closed_forms() -> None:
    """Exponential excesses (shape 0): z = level + mean * ln(rate / risk); a Pareto tail
    with shape g: P(|u| > z) = rate * (1 + g (z - level) / s) ** (-1 / g) = risk."""
    z = tail_quantile(np.array([0.1]), np.array([0.8]), np.array([1.28]), 2.0, 1e-5)
    np.testing.assert_allclose(z, 2.0 + 0.8 * np.log(0.1 / 1e-5), rtol=1e-9)
    g, sc = 0.25, 1.0  # GPD moments: mean s/(1-g), E[y^2] = 2 s^2 / ((1-g)(1-2g))
    m1, m2 = sc / (1 - g), 2 * sc**2 / ((1 - g) * (1 - 2 * g))
    z = tail_quantile(np.array([0.05]), np.array([m1]), np.array([m2]), 2.0, 1e-4)[0]
    np.testing.assert_allclose(0.05 * (1 + g * (z - 2.0) / sc) ** (-1 / g), 1e-4, rtol=1e-9)
    # a Gaussian tail keeps the open threshold where it is: the prior gives z < 4.5
    assert 4.2 < tail_quantile(np.array([GAUSS_RATE]), np.array([GAUSS_M1]),
                               np.array([GAUSS_M2]), 2.0, 1e-5)[0] < 4.5  # fmt: skip


def test_episode_timeline_from_the_docstring() -> None:
    cfg = AnomalyConfig(warmup=30, resolve_points=3, cooldown_points=2, prior_points=1000)
    det = AnomalyDetector(cfg, CAL, 1)
    sigma = calibration_sigma(CAL)  # the huge prior keeps sigma ~1 and mu ~0
    e = np.zeros(39)
    e[31], e[35] = 9 * sigma, 6 * sigma
    steps = run_one(det, 0, e)
    opened = [i for i, s in enumerate(steps) if s.transitions.opened[0]]
    resolved = [i for i, s in enumerate(steps) if s.transitions.resolved[0]]
    assert opened == [31] and resolved == [34]
    assert steps[31].transitions.severity[0] == 1 and steps[34].transitions.severity[0] == 1
    assert steps[34].transitions.episode_start[0] == 31  # ts of the opening point


def test_warmup_never_alerts_and_cooldown_expires() -> None:
    cfg = AnomalyConfig(warmup=20, resolve_points=2, cooldown_points=3, prior_points=1000)
    e = np.zeros(40)
    e[5] = e[10] = 50.0  # inside warm-up: taught, not alerted
    assert not any(s.transitions.opened[0] for s in run_one(AnomalyDetector(cfg, CAL, 1), 0, e))
    e = np.zeros(40)
    e[25] = 50.0  # opens; calm 26, 27 -> resolved at 27; cooldown 28..30
    e[29] = 50.0  # suppressed
    e[33] = 50.0  # opens again
    steps = run_one(AnomalyDetector(cfg, CAL, 1), 0, e)
    opened = [i for i, s in enumerate(steps) if s.transitions.opened[0]]
    assert opened == [25, 33]


def test_heavy_tailed_noise_widens_the_threshold_and_keeps_alerts_rare() -> None:
    """Laplace errors: sigma from the mean absolute deviation alone would put 4.5 sigma at
    5.6 Laplace scales (~3.5e-3 false alarms per point); the tail fit widens it."""
    rng = np.random.default_rng(7)
    det = AnomalyDetector(AnomalyConfig(), CAL, 1)
    steps = run_one(det, 0, rng.laplace(0, 1, 5000))
    n_open = sum(bool(s.transitions.opened[0]) for s in steps)
    f = steps[-1].threshold[0] / (AnomalyConfig().open_threshold * det.sigma(np.array([0]))[0])
    assert n_open <= 3 and 1.5 < f < 2.6  # theory: 2.04


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_dips_are_judged_exactly_like_spikes(seed: int) -> None:
    """Two-sided: the negated error sequence gives the same scores and the same episodes."""
    rng = np.random.default_rng(seed)
    e = rng.standard_t(3, 200)
    e[rng.integers(40, 200, 5)] *= 15
    cfg = AnomalyConfig(warmup=10)
    up, down = (run_one(AnomalyDetector(cfg, CAL, 1), 0, x) for x in (e, -e))
    for a, b in zip(up, down, strict=True):
        np.testing.assert_array_equal(a.score, b.score)
        np.testing.assert_array_equal(a.transitions.opened, b.transitions.opened)
        np.testing.assert_array_equal(a.transitions.resolved, b.transitions.resolved)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6))
def test_many_rows_at_once_equal_one_detector_per_stream(seed: int, streams: int) -> None:
    rng = np.random.default_rng(seed)
    e = rng.normal(0, 1, (80, streams)) * rng.uniform(0.1, 10, streams)
    e[rng.integers(30, 80, 6), rng.integers(0, streams, 6)] += 40
    cfg = AnomalyConfig(warmup=10)
    together = AnomalyDetector(cfg, CAL, streams)
    rows = np.arange(streams)[::-1].copy()  # any row order
    for i in range(80):
        st_ = together.update(rows, e[i, rows], np.ones(streams), np.zeros(streams),
                              np.full(streams, i), np.zeros(streams, bool))  # fmt: skip
        e_row = dict(zip(rows.tolist(), st_.transitions.opened.tolist(), strict=True))
        if i == 79:
            final = e_row
    for s in range(streams):
        alone = AnomalyDetector(cfg, CAL, 1)
        run_one(alone, 0, e[:, s])
        for name in alone.table.spec:
            np.testing.assert_array_equal(alone.table[name][0], together.table[name][s])
        assert final[s] == bool(alone.table["open"][0] and alone.table["ep_len"][0] == 1)


def test_protected_spread_ignores_an_outlier_and_a_sustained_shift_opens_then_relearns() -> None:
    cfg = AnomalyConfig(warmup=30, relearn_after=50, resolve_points=5)
    det = AnomalyDetector(cfg, CAL, 1)
    rng = np.random.default_rng(3)
    base = rng.normal(0, 1, 100)
    run_one(det, 0, base)
    mad_before = det.table["mad"][0]
    run_one(det, 0, np.array([100.0]))
    assert det.table["mad"][0] == mad_before  # the outlier did not teach
    run_one(det, 0, rng.normal(0, 1, 30))
    # The model now errs by +4 sigma on every point (it has not re-anchored): opens via the
    # run rule, stays one episode, and once relearn_after points passed, the shift is
    # learnt and the episode resolves.
    sigma = det.table["mad"][0] * SQRT_HALF_PI
    steps = run_one(det, 0, 4 * sigma + rng.normal(0, 1, 800))
    opened = [i for i, s in enumerate(steps) if s.transitions.opened[0]]
    resolved = [i for i, s in enumerate(steps) if s.transitions.resolved[0]]
    assert len(opened) == 1 and opened[0] <= 3
    assert len(resolved) == 1 and cfg.relearn_after < resolved[0] < 800


def test_quiet_rows_neither_open_nor_learn() -> None:
    det = AnomalyDetector(AnomalyConfig(warmup=0), CAL, 1)
    r = np.array([0])
    det.update(r, np.array([0.5]), np.ones(1), np.zeros(1), np.array([0]), np.zeros(1, bool))
    before = {k: det.table[k][0].copy() for k in ("mu", "mad", "n_taught")}
    s = det.update(r, np.array([80.0]), np.ones(1), np.zeros(1), np.array([1]), np.ones(1, bool))
    assert not s.transitions.opened[0]
    for k, v in before.items():
        assert det.table[k][0] == v


def test_a_constant_stream_has_a_finite_threshold() -> None:
    det = AnomalyDetector(AnomalyConfig(warmup=5), CAL, 1)
    steps = run_one(det, 0, np.zeros(50), scale=1e-6)
    assert all(math.isfinite(s.threshold[0]) and s.threshold[0] > 0 for s in steps)
    assert not any(s.transitions.opened[0] for s in steps)


def test_episode_state_machine_timeline_from_the_episodes_docstring() -> None:
    t = StateTable(EPISODE_SPEC, 1)
    trigger = [0, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0, 1, 0]
    got = []
    for i, x in enumerate(trigger):
        fire = np.array([bool(x)])
        tr = step_episodes(t, np.array([0]), np.array([i]), fire, np.zeros(1, bool), ~fire,
                           np.ones(1, bool), resolve_points=3, cooldown_points=2)  # fmt: skip
        got += [(i, "open")] * int(tr.opened[0]) + [(i, "resolved")] * int(tr.resolved[0])
    assert got == [(2, "open"), (9, "resolved")]
