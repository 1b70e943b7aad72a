"""The anomaly detector and the episode rules (open/resolve) both detectors share.

Pure numpy over rows of a :class:`~streamer.buffers.StateTable`: :meth:`AnomalyDetector.update`
takes one *round* (at most one point per stream) for many streams at once.

What it computes per stream and point, from the raw error ``e = actual - predicted``:

1. Per-stream adaptive normalisation. ``mu`` and ``mad`` are EWMAs of ``e`` and of
   ``|e - mu|`` (span ``span``; over the first points a running mean weighted against a
   prior of ``prior_points`` points). ``sigma = sqrt(pi/2) * mad`` (Gaussian-consistent) and
   the deviation is ``d = e - mu``, two-sided: dips count as much as spikes.
   Whitening: a model that lags a smooth signal leaves autocorrelated errors (lag-1
   autocorrelation ~0.7 on slow sines, ~-0.5 on daily cycles, measured on the default
   model), whose slow swings inflate the spread and hide a dip. The point score is the
   innovation of a per-stream AR(1) fit of ``d``: ``w = d - phi * d_prev`` with ``phi =
   c01 / c00`` (EWMAs of ``d * d_prev`` and ``d_prev^2``, clipped to ``±max_phi``) and
   ``u = w / sigma_w`` (``sigma_w`` from the EWMA of ``|w|``, same rule as ``sigma``).
   After a protected point ``d_prev`` is 0, so an outlier does not echo in the next score.
   Measured on corpora of seeds 11 and 12 (not the benchmark's): window recall +0.04-0.05,
   NAB standard +4, all sine dips found. The CUSUM (5.) keeps the raw ``d / sigma``: a
   sustained shift is exactly what whitening would cancel.
2. The prior comes from the manifest's calibration (validation residuals in normalised
   units): ``sigma0 = max(q50/0.674, q90/1.645, q99/2.576)`` (the most cautious of the
   three, so a heavy-tailed model starts wide and narrows online) times the stream's first
   window ``error_scale``, which turns normalised units back into the stream's raw units.
3. Adaptive threshold ``|e - mu| >= open_threshold * f * sigma``. ``f >= 1`` adapts it to
   the stream's tail: a generalised Pareto fit (by moments, O(1) EWMA state: the rate of
   ``|u| > tail_level`` and the first two moments of the excess; streaming SPOT, Siffer et
   al. 2017) gives the ``|u|`` exceeded with probability ``tail_risk`` per point, and ``f``
   is that over ``open_threshold``. Gaussian errors keep ``f = 1``; Laplace errors get
   ``f ~ 2`` (measured on 5,000-point streams: 10-60 false alarms without it, 0-3 with).
   Every u-threshold below (run, critical, resolve, CUSUM) is read in units of ``u / f``.
   Events report ``score = |w|`` and ``threshold = open_threshold * f * sigma_w`` in raw
   units, beside the raw ``error``.
4. Protection (river's ``protect_anomaly_detector``): a point with
   ``|u|/f >= run_threshold`` does not teach ``mu``/``mad`` (nor the tail, above
   ``open_threshold``), so an anomaly cannot widen the threshold that should catch the
   next one. Exceptions: warm-up (the prior may be far off for this stream), and an
   episode that has lasted ``relearn_after`` points: then the "anomaly" is the new normal,
   it is learnt, and the episode resolves.
5. Alarm rules (Merlion's calibrated score + alarm rules): an episode opens on one point
   with ``|u| >= open_threshold`` (a spike is one point), or on ``min_run`` consecutive
   points with ``|u| >= run_threshold``, or when a two-sided CUSUM of ``u`` (allowance
   ``cusum_drift``, each step clipped to ``cusum_clip``) reaches ``cusum_threshold``:
   sustained moderate errors, e.g. a level shift the model has not re-anchored on yet.
   Nothing opens during the first ``warmup`` scored points of a stream, nor for
   ``cooldown_points`` points after an episode resolved, nor while the volatility detector
   has a *collapse* episode open on the stream (flat-line, drop-out to a constant): its
   errors are then ~0 and must not shrink the spread, and the jump when the signal comes
   back is the end of that incident, already alerted, not a new one.
6. An episode resolves after ``resolve_points`` consecutive calm points
   (``|u| < resolve_threshold`` and CUSUM below half its threshold): hysteresis, one
   ``open`` and one ``resolved`` event per episode, no alert storm in between. Severity is
   ``critical`` when ``|u| >= critical_threshold`` (or the CUSUM reached twice its
   threshold), else ``warning``; the resolved event carries the episode's peak.

Why the raw error and not ``norm_error`` (error / the window's ``error_scale``) as the
per-point score: the window's spread is dominated by the signal's own cycle, not by its
noise, so on a seasonal series the normalised error is heavy-tailed (its spread swings with
the phase of the cycle) and a 12-sigma spike scored only ~4 per-stream sigmas (measured with
persistence on a daily cycle), against ~8 on the raw error; a spike also inflates the
spread of the next ``window`` windows and masks what follows, and a flat window sends it
to ~1e6. ``norm_error`` is still what the calibration is expressed in (hence the prior) and
what :class:`~streamer.pipeline.Scored` reports for the metrics.

Why not telemanom's dynamic threshold as is: it picks epsilon = mean + z * std of smoothed
errors by searching z over a *batch* of each stream's error history (then prunes); here the
same idea (threshold = location + k * spread of the stream's own errors, anomalies excluded
from the spread) is O(1) EWMA state per stream, and its error smoothing reappears as the
run and CUSUM paths for sustained deviations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from streamer.buffers import Column, Columns, IntArray, Rows, StateTable
from streamer.episodes import EPISODE_SPEC, Transitions, Verdict, step_episodes
from streamer.manifest import Calibration
from streamer.tail import GAUSS_M1, GAUSS_M2, GAUSS_RATE, TAIL_PRIOR, tail_quantile

SQRT_HALF_PI = math.sqrt(math.pi / 2)  # sigma / E|x - mu| for a Gaussian


def _section(obj: object) -> str:
    return str(getattr(obj, "SECTION", obj.__class__.__name__))


def _positive(obj: object, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            msg = f"[{_section(obj)}] {name} must be a positive number, got {v!r}"
            raise ValueError(msg)


def _non_negative_int(obj: object, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            msg = f"[{_section(obj)}] {name} must be an integer >= 0, got {v!r}"
            raise ValueError(msg)


@dataclass(frozen=True)
class AnomalyConfig:
    """``[detect.anomaly]``. Thresholds are in per-stream sigmas of the normalised error."""

    SECTION: ClassVar[str] = "detect.anomaly"

    warmup: int = 30  # scored points per stream before it may alert
    span: float = 300.0  # EWMA span (points) of the stream's error location and spread
    prior_points: float = 20.0  # weight, in points, of the calibration prior
    open_threshold: float = 4.5  # |u| at or above on one point: opens
    critical_threshold: float = 8.0  # |u| at or above: severity critical
    run_threshold: float = 3.0  # |u| at or above: anomalous, does not teach
    min_run: int = 3  # consecutive points >= run_threshold that open an episode
    cusum_drift: float = 1.0  # CUSUM allowance k (sigmas per point)
    cusum_clip: float = 4.0  # a single point adds at most this much to the CUSUM
    cusum_threshold: float = 10.0  # CUSUM h that opens an episode (sustained deviation)
    resolve_threshold: float = 2.5  # |u| below: a calm point
    resolve_points: int = 5  # consecutive calm points that resolve an episode
    cooldown_points: int = 10  # points after a resolve during which nothing opens
    relearn_after: int = 200  # an episode this long teaches the statistics again
    tail_level: float = 2.0  # |u| above which a point describes the tail (peaks over threshold)
    tail_risk: float = 1e-5  # per-point false-alarm probability the tail fit aims at
    tail_span: float = 300.0  # EWMA span, in tail points, of the tail fit
    max_phi: float = 0.9  # |lag-1 autocorrelation| the whitening uses at most (0: off)

    def __post_init__(self) -> None:
        _non_negative_int(self, "warmup", "cooldown_points", "relearn_after")
        _non_negative_int(self, "min_run", "resolve_points")
        _positive(self, "span", "prior_points", "open_threshold", "critical_threshold")
        _positive(self, "run_threshold", "cusum_drift", "cusum_clip", "cusum_threshold")
        _positive(self, "resolve_threshold", "min_run", "resolve_points")
        _positive(self, "tail_level", "tail_risk", "tail_span")
        if not (isinstance(self.max_phi, int | float) and 0 <= self.max_phi < 1):
            raise ValueError(f"[detect.anomaly] max_phi must be in [0, 1), got {self.max_phi!r}")
        if not self.tail_risk < 0.01:
            raise ValueError(f"[detect.anomaly] tail_risk must be < 0.01, got {self.tail_risk}")
        if not self.resolve_threshold <= self.run_threshold <= self.open_threshold:
            raise ValueError(
                "[detect.anomaly] need resolve_threshold <= run_threshold <= open_threshold "
                f"(got {self.resolve_threshold}, {self.run_threshold}, {self.open_threshold})"
            )
        if self.critical_threshold < self.open_threshold:
            raise ValueError(
                "[detect.anomaly] critical_threshold must be >= open_threshold "
                f"({self.critical_threshold} < {self.open_threshold})"
            )


def calibration_sigma(cal: Calibration) -> float:
    """Gaussian-consistent spread of the manifest's |normalised error| quantiles (cautious)."""
    q = cal.abs_error_quantiles
    cands = [q.get("0.5", 0.0) / 0.6745, q.get("0.9", 0.0) / 1.6449, q.get("0.99", 0.0) / 2.5758]
    sigma = max(cands)
    return sigma if math.isfinite(sigma) and sigma > 0 else 1.0


# ---------------------------------------------------------------- anomaly detector

ANOMALY_SPEC = {
    "n_seen": Column("int32"),  # scored points
    "n_taught": Column("int32"),  # points that updated mu/mad
    # float32: statistics of the errors of a float32 model's forecasts of float32 windows
    # (state format v2). Sums that grow without bound and squares stay float64.
    "mu": Column("float32"),  # EWMA of the raw error
    "mad": Column("float32"),  # EWMA of |error - mu|
    # Whitening (AR(1) of the deviation d = error - mu): innovation w = d - phi * d_prev.
    "d_prev": Column("float64"),  # the previous taught deviation (0 after a protected point)
    "c00": Column("float64"),  # EWMA of d_prev^2
    "c01": Column("float64"),  # EWMA of d * d_prev
    "mad_w": Column("float32"),  # EWMA of |w|
    "run": Column("int32"),  # consecutive points >= run_threshold
    "gpos": Column("float64"),  # upper CUSUM of u
    "gneg": Column("float64"),  # lower CUSUM of u
    # Tail of |u| above tail_level (a generalised Pareto fit by moments), Gaussian prior:
    "n_tail": Column("int32"),  # points that updated the exceedance rate
    "n_exc": Column("int32"),  # exceedances that updated the moments
    "rate": Column("float32", (), GAUSS_RATE),  # EWMA of 1{|u| > tail_level}
    "m1": Column("float64", (), GAUSS_M1),  # EWMA of |u| - tail_level over exceedances
    "m2": Column("float64", (), GAUSS_M2),  # EWMA of its square
    **EPISODE_SPEC,
}
SIGMA_EPS = 1e-9  # sigma floor relative to 1 + |predicted|: a constant stream stays finite


@dataclass(frozen=True)
class AnomalyStep:
    """Per point of the round: ``score`` = |w| (the whitened deviation) and ``threshold`` =
    open_threshold * f * sigma_w (raw units, before this point taught the statistics),
    ``u`` = w / sigma_w, the signed score in sigmas, and the episode transitions. Where
    only the ``seasonal`` verdict triggered, score and threshold are its own (CUSUM)."""

    score: np.ndarray
    threshold: np.ndarray
    u: np.ndarray
    transitions: Transitions


class AnomalyDetector:
    """Vectorised anomaly detector over the rows of its own :class:`StateTable`."""

    def __init__(self, cfg: AnomalyConfig, calibration: Calibration, capacity: int) -> None:
        self.cfg = cfg
        self.alpha = 2.0 / (cfg.span + 1.0)
        self.alpha_tail = 2.0 / (cfg.tail_span + 1.0)
        self.set_calibration(calibration)
        self.table = StateTable(ANOMALY_SPEC, capacity)

    def set_calibration(self, calibration: Calibration) -> None:
        """Prior for streams not scored yet (e.g. a hot-reloaded model's calibration)."""
        self.mad0 = calibration_sigma(calibration) / SQRT_HALF_PI  # normalised units

    def init_rows(self, rows: IntArray) -> None:
        self.table.reset(rows)

    def update(
        self,
        rows: Rows,
        error: np.ndarray,
        scale: np.ndarray,
        predicted: np.ndarray,
        ts_ms: np.ndarray,
        quiet: np.ndarray,
        table: Columns | None = None,
        seasonal: Verdict | None = None,
    ) -> AnomalyStep:
        """Score one finite raw ``error`` per distinct row, then learn from it (unless
        protected). ``scale`` is the window's error_scale (for the prior of a new stream);
        ``quiet`` rows (the stream is flat-lined, see the pipeline) neither open nor learn.
        ``table`` defaults to :attr:`table`; the pipeline passes a dense working copy.
        ``seasonal`` (:class:`streamer.seasonal.SeasonalStep`) adds its trigger and critical
        to this episode's and, while it holds, keeps the episode from resolving."""
        c, t = self.cfg, self.table if table is None else table
        n_seen = t["n_seen"][rows] + 1
        mu = t["mu"][rows]
        mad = np.where(n_seen == 1, self.mad0 * scale, t["mad"][rows])
        sigma = np.maximum(mad * SQRT_HALF_PI, SIGMA_EPS * (1.0 + np.abs(predicted)))
        dev = error - mu
        # Point score on the innovation of an AR(1) fit of the deviation: a model lagging a
        # smooth signal leaves autocorrelated errors whose slow swings hide a dip.
        c00, c01, d_prev = t["c00"][rows], t["c01"][rows], t["d_prev"][rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            phi = np.where(c00 > 0, c01 / c00, 0.0)
        phi = np.clip(np.nan_to_num(phi), -c.max_phi, c.max_phi)
        w = dev - phi * d_prev
        mad_w = np.where(n_seen == 1, mad, t["mad_w"][rows])
        sigma_w = np.maximum(mad_w * SQRT_HALF_PI, SIGMA_EPS * (1.0 + np.abs(predicted)))
        u = w / sigma_w
        u_raw = dev / sigma
        rate, m1, m2 = t["rate"][rows], t["m1"][rows], t["m2"][rows]
        # Heavy tails widen every threshold: u is read in units of the tail's own quantile.
        f = np.maximum(1.0, tail_quantile(rate, m1, m2, c.tail_level, c.tail_risk)
                       / c.open_threshold)  # fmt: skip
        a = np.abs(u) / f
        warm = n_seen > c.warmup
        armed = warm & ~quiet
        hot = a >= c.run_threshold
        run = np.where(hot, t["run"][rows] + 1, 0)
        # The CUSUM accumulates the raw deviation: a sustained shift is what it looks for.
        uc = np.clip(u_raw / f, -c.cusum_clip, c.cusum_clip)
        gpos = np.where(armed, np.maximum(0.0, t["gpos"][rows] + uc - c.cusum_drift), 0.0)
        gneg = np.where(armed, np.maximum(0.0, t["gneg"][rows] - uc - c.cusum_drift), 0.0)
        g = np.maximum(gpos, gneg)
        trigger = (a >= c.open_threshold) | (run >= c.min_run) | (g >= c.cusum_threshold)
        critical = (a >= c.critical_threshold) | (g >= 2 * c.cusum_threshold)
        calm = (a < c.resolve_threshold) & (g < c.cusum_threshold / 2)
        score, threshold = np.abs(w), c.open_threshold * f * sigma_w
        if seasonal is not None:
            alone = seasonal.trigger & ~trigger  # events report the score that opened them
            score = np.where(alone, seasonal.score, score)
            threshold = np.where(alone, seasonal.threshold, threshold)
            trigger = trigger | seasonal.trigger
            critical = critical | seasonal.critical
            calm = calm & ~seasonal.hold
        tr = step_episodes(
            t, rows, ts_ms, trigger, critical, calm, armed, c.resolve_points, c.cooldown_points
        )
        # Protection: anomalous points do not teach, except during warm-up (the prior may be
        # far off for this stream) or when an episode has gone on so long that the "anomaly"
        # is the new normal.
        relearn = ~warm | (t["ep_len"][rows] > c.relearn_after)
        teach = (~hot | relearn) & ~quiet
        n_taught = t["n_taught"][rows] + teach
        alpha = np.maximum(self.alpha, 1.0 / (n_taught + c.prior_points))
        t["mu"][rows] = np.where(teach, mu + alpha * dev, mu)
        t["mad"][rows] = np.where(teach, mad + alpha * (np.abs(dev) - mad), mad)
        t["mad_w"][rows] = np.where(teach, mad_w + alpha * (np.abs(w) - mad_w), mad_w)
        t["c00"][rows] = np.where(teach, c00 + alpha * (d_prev * d_prev - c00), c00)
        t["c01"][rows] = np.where(teach, c01 + alpha * (dev * d_prev - c01), c01)
        t["d_prev"][rows] = np.where(teach, dev, 0.0)
        t["n_taught"][rows] = n_taught
        # The tail learns from every point below the open threshold (it must see the tail
        # between run and open threshold to measure it), never from an opening point.
        teach_tail = ((a < c.open_threshold) | relearn) & ~quiet
        y = np.abs(u) - c.tail_level
        exc = teach_tail & (y > 0)
        n_tail = t["n_tail"][rows] + teach_tail
        a_rate = np.maximum(self.alpha, 1.0 / (n_tail + c.prior_points))
        t["rate"][rows] = np.where(teach_tail, rate + a_rate * (exc - rate), rate)
        n_exc = t["n_exc"][rows] + exc
        a_exc = np.maximum(self.alpha_tail, 1.0 / (n_exc + TAIL_PRIOR))
        t["m1"][rows] = np.where(exc, m1 + a_exc * (y - m1), m1)
        t["m2"][rows] = np.where(exc, m2 + a_exc * (y * y - m2), m2)
        t["n_tail"][rows], t["n_exc"][rows] = n_tail, n_exc
        t["n_seen"][rows] = n_seen
        t["run"][rows] = np.where(tr.opened | tr.resolved, 0, run)
        # A fresh episode keeps its CUSUM (it is the evidence); a resolved one starts over.
        t["gpos"][rows] = np.where(tr.resolved, 0.0, gpos)
        t["gneg"][rows] = np.where(tr.resolved, 0.0, gneg)
        return AnomalyStep(score, threshold, u, tr)

    def sigma(self, rows: IntArray) -> np.ndarray:
        """The stream's current error spread (raw units)."""
        return self.table["mad"][rows] * SQRT_HALF_PI
