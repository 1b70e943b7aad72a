"""streamer.seasonal: period estimate, a scalar oracle on every block, drifts found, state kept.

Drift timeline (sine of period 97 points, noise 0.5, default config, block 8)::

    point:   0 ......... 639 | 640 ......... 1499 | 1500 ... 1600 | ...
    state:   history fills   | period ~12.1 blocks | drift +0.05/pt
    CUSUM:   0               | ~0 (< 5)            | climbs past 10 -> trigger (anomaly)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.detect import SQRT_HALF_PI
from streamer.pipeline import DetectConfig, Pipeline, Points
from streamer.seasonal import SeasonalConfig, SeasonalDetector, estimate_period
from tests.test_pipeline import Persistence, canonical, opens, pts, run_streams

SMALL = SeasonalConfig(block=2, history=24, min_lag=2, max_lag=12, warmup=3, span=10,
                       relearn_after=6)  # fmt: skip


def sine(n: int, period: float, noise: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n, dtype=np.float64)
    return 20 + 5 * np.sin(2 * np.pi * t / period) + rng.normal(0, noise, n)


def feed(det: SeasonalDetector, x: np.ndarray, row: int = 0) -> list:
    r = np.array([row])
    no = np.zeros(1, bool)
    return [det.update(r, x[i : i + 1], no, no) for i in range(len(x))]


def test_config_rejects_bad_values_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"\[detect.seasonal\] block must be an integer"):
        SeasonalConfig(block=-1)
    with pytest.raises(ValueError, match="need 2 <= min_lag < max_lag <= history // 2"):
        SeasonalConfig(max_lag=50)
    with pytest.raises(ValueError, match="strength must be < 1"):
        SeasonalConfig(strength=1.0)
    with pytest.raises(ValueError, match="cusum_threshold must be a positive"):
        SeasonalConfig(cusum_threshold=0)


def test_period_of_a_sine_is_found_to_a_fraction_of_a_block_and_a_walk_has_none() -> None:
    rng = np.random.default_rng(0)
    for period in (12.0, 12.5, 7.25, 36.0):  # in blocks
        t = np.arange(80)
        h = np.sin(2 * np.pi * t / period) + rng.normal(0, 0.02, 80)
        est = estimate_period(h[None, :], 4, 40, 0.4)[0]
        k = round(est / period)  # a multiple of the period is as good a lag
        assert k >= 1 and abs(est - k * period) < 0.35 * k, (period, est)
    walks = np.cumsum(rng.normal(0, 1, (20, 80)), axis=1)
    assert (estimate_period(walks, 4, 40, 0.4) == 0).all()


def oracle(x: np.ndarray, c: SeasonalConfig) -> list[dict[str, float]]:
    """Plain-Python recomputation of the detector's state after every completed block
    (nothing frozen nor quiet): period by a direct AMDF scan, seasonal difference,
    spread, CUSUM, and the cleaned history."""
    out = []
    hist: list[float] = []
    lag, miss, n_taught, mad, gp, gn, n_odd = 0.0, 0, 0, 0.0, 0.0, 0.0, 0
    alpha = 2 / (c.span + 1)
    for k in range(len(x) // c.block):
        m = float(np.mean(x[k * c.block : (k + 1) * c.block]))
        full = len(hist) == c.history
        if full:
            am = [np.mean([abs(hist[i + L] - hist[i]) for i in range(c.history - L)])
                  for L in range(c.min_lag, c.max_lag + 2)]  # fmt: skip
            j = int(np.argmin(am[:-1]))
            if j > 0 and am[j] <= c.strength * max(am[: j + 1]):
                a, b, d = am[j - 1], am[j], am[j + 1]
                den = a - 2 * b + d
                frac = 0.5 * (a - d) / den if den > 0 else 0.0
                lag, miss = c.min_lag + j + min(0.5, max(-0.5, frac)), 0
            else:
                miss += 1
                lag = 0.0 if miss >= c.history else lag
        periodic = full and lag > 0
        ref = m
        if len(hist) == c.history:
            lo = math.floor(max(lag, 1.0))
            f = max(lag, 1.0) - lo
            ref = (1 - f) * hist[c.history - lo] + f * hist[c.history - lo - 1]
        s = m - ref
        m0 = abs(s) if n_taught == 0 else mad
        z = s / (m0 * SQRT_HALF_PI) if periodic else 0.0
        warm = n_taught >= c.warmup
        odd = warm and abs(z) >= c.protect
        n_odd = n_odd + 1 if periodic and odd else 0
        keep = not periodic or not odd or n_odd > c.relearn_after
        if periodic and keep:
            mad = m0 + max(alpha, 1 / (n_taught + 1)) * (abs(s) - m0)
            n_taught += 1
        elif not periodic:
            n_taught = 0
        zc = min(c.cusum_clip, max(-c.cusum_clip, z))
        top = 2 * c.cusum_threshold
        on = periodic and warm
        gp = min(top, max(0.0, gp + zc - c.cusum_drift)) if on else 0.0
        gn = min(top, max(0.0, gn - zc - c.cusum_drift)) if on else 0.0
        hist = [*hist, float(np.float32(m if keep else ref))][-c.history :]  # float32 store
        out.append({"lag": lag, "mad": mad, "gpos": gp, "gneg": gn, "n_taught": n_taught,
                    "last": hist[-1]})  # fmt: skip
    return out


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(5.0, 11.0), st.sampled_from(["drift", "shift"]))
def test_state_matches_the_scalar_oracle_after_every_block(
    seed: int, period: float, kind: str
) -> None:
    rng = np.random.default_rng(seed)
    n = 160
    x = sine(n, period * SMALL.block, 0.3, rng)
    if kind == "drift":
        x[100:] += np.minimum(np.arange(n - 100) * 0.1, 3.0)
    else:
        x[100:] += 4.0
    det = SeasonalDetector(SMALL, 2)
    want = oracle(x, SMALL)
    r = np.array([1])
    no = np.zeros(1, bool)
    for i in range(n):
        det.update(r, x[i : i + 1], no, no)
        if (i + 1) % SMALL.block == 0:
            w = want[i // SMALL.block]
            for name in ("lag", "mad", "gpos", "gneg", "n_taught"):
                np.testing.assert_allclose(det.table[name][1], w[name], rtol=1e-5, atol=1e-6,
                                           err_msg=f"{name} after point {i}")  # fmt: skip
            np.testing.assert_allclose(det.table["hist"][1, -1], w["last"], rtol=1e-6)
    assert any(w["gpos"] + w["gneg"] > 0 for w in want)  # the CUSUM was exercised


def test_a_slow_drift_of_a_sine_triggers_and_clean_cycles_and_walks_do_not() -> None:
    rng = np.random.default_rng(3)
    cfg = SeasonalConfig()
    clean = {"sine": sine(5000, 97, 0.5, rng), "daily": sine(5000, 288, 1.2, rng),
             "walk": 100 + np.cumsum(rng.normal(0, 0.4, 5000))}  # fmt: skip
    for name, x in clean.items():
        det = SeasonalDetector(cfg, 1)
        steps = feed(det, x)
        assert not any(s.trigger[0] for s in steps), name
        if name == "walk":
            assert det.table["lag"][0] == 0
        else:
            assert det.table["lag"][0] > 0, name
    x = sine(3000, 97, 0.5, rng)
    x[1500:1600] += np.linspace(0, 5, 100)  # 0.1 noise sigma per point
    x[1600:] += 5
    det = SeasonalDetector(cfg, 1)
    steps = feed(det, x)
    first = next(i for i, s in enumerate(steps) if s.trigger[0])
    assert 1500 < first < 1600, first


def test_pipeline_opens_one_anomaly_episode_for_a_drift_and_none_on_clean_cycles() -> None:
    rng = np.random.default_rng(5)
    drift = sine(3000, 97, 0.5, rng)
    drift[1500:1600] += np.linspace(0, 5, 100)
    drift[1600:] += 5
    events = run_streams(
        Persistence(window=50), {"drift": drift, "clean": sine(3000, 97, 0.5, rng)}
    )
    got = opens(events, "drift")
    assert next(g for g in got if g[1] == "open")[0] in range(1500, 1600), got
    assert len([g for g in got if g[1] == "open"]) == 1, got
    assert not [g for g in opens(events, "clean") if g[1] == "open"]
    (ev,) = [e for e in events if e.stream == "drift" and e.status == "open"]
    assert ev.threshold == SeasonalConfig().cusum_threshold <= ev.score  # the CUSUM opened it


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 599))
def test_export_import_continues_exactly_with_the_seasonal_state_active(
    seed: int, cut: int
) -> None:
    """process(A+B) == process(A), export, import into a fresh Pipeline, process(B), with a
    seasonal config small enough to be periodic, warm and triggering within the run."""
    rng = np.random.default_rng(seed)
    n = 300
    cfg = DetectConfig(seasonal=SMALL, initial_capacity=1)
    x = {"a": sine(n, 13.0, 0.3, rng), "b": sine(n, 17.0, 0.3, rng)}
    x["a"][150:] += np.linspace(0, 6, n - 150)
    streams = [s for _ in range(n) for s in x]
    ts = np.repeat(np.arange(n, dtype=np.int64) * 1000, 2)
    vals = np.stack([x["a"], x["b"]], axis=1).reshape(-1)
    points = pts(streams, ts, vals)
    a = Points(points.streams[:cut], points.ts_ms[:cut], points.values[:cut])
    b = Points(points.streams[cut:], points.ts_ms[cut:], points.values[cut:])
    whole_p = Pipeline(Persistence(window=5), cfg)
    whole = canonical(points, whole_p.process(points, 0.0))
    assert whole_p.seasonal.table["lag"][:2].min() > 0  # the seasonal path was active
    first = Pipeline(Persistence(window=5), cfg)
    got_a = canonical(a, first.process(a, 0.0))
    second = Pipeline(Persistence(window=5), cfg)
    second.import_state(first.export_state(["a", "b"]))
    got_b = canonical(b, second.process(b, 0.0))
    for w, p, q in zip(whole, got_a, got_b, strict=True):
        assert w == p + q
