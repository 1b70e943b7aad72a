"""The scoring core: points in, scored predictions and alert episode events out. Pure.

``Pipeline.process(points, now)`` is the daemon's hot path (contract in
``notes/pipeline_api.md``): route points to per-stream rows, reject duplicates and
out-of-order points, append the rest to the windows, run ONE ``model.predict`` for every
window that needs a forecast, compare each point with the forecast made from the window
before it, and run both detectors vectorised over streams.

Timeline of one stream (window 3). ``f(..)`` is the forecast for the next point, made as
soon as the window is full; it is kept in the stream's state between batches, so a batch
only predicts from windows that end inside it::

    points:    p0  p1  p2 | p3   p4 | p5          (| = batch boundary)
    forecast:          f2 | f3   f4 | f5          f2 = predict([p0 p1 p2]), made in batch 1
    scored:               | p3~f2 p4~f3 | p5~f4   f5 = next_predicted after batch 3

Buffers and forecasts are vectorised over the whole batch: out-of-order rejection is one
segmented running maximum, all new points are appended to the windows in one pass, and all
windows that need a forecast are cut from one strided view. The detectors are recursive per
stream, so they run in *rounds*: round r holds the r-th point of every stream (arrival
order), each round touches a stream at most once and is one vectorised step; the loop is
over rounds (points per stream in the batch), never over streams.

The rows, state tables and lifecycle of the streams (new rows, eviction, drop, export and
import) are :class:`streamer.streams.StreamStore`, which :class:`Pipeline` extends.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from streamer.batch import Event, Points, Predictor, Rejected, Result, Scored
from streamer.buffers import in_order
from streamer.metrics import SEVERITIES
from streamer.streams import DetectConfig, StreamStore

__all__ = [
    "DetectConfig", "Event", "Pipeline", "Points", "Predictor", "Prepared", "Rejected", "Result",
    "Scored", "forecast",
]  # fmt: skip


FLOAT32_MAX = float(np.finfo(np.float32).max)


def arrival_order(idx: np.ndarray, n: int) -> np.ndarray:
    """The permutation that sorts distinct point indexes ``idx`` (all < n): O(n), no sort."""
    pos = np.empty(n, dtype=np.intp)
    pos[idx] = np.arange(len(idx))
    present = np.zeros(n, dtype=bool)
    present[idx] = True
    return pos[present]


@dataclass(frozen=True)
class Prepared:
    """One batch between :meth:`Pipeline.prepare` and :meth:`Pipeline.finish` (internal
    arrays of the hot path: accepted points ordered by stream then arrival, their rounds,
    the stream groups, which points make a window, which are scored and the values before
    them; ``x`` the windows to forecast, None if none)."""

    points: Points
    ts_all: np.ndarray
    values: np.ndarray
    rejected: list[Rejected]
    order: np.ndarray
    srows: np.ndarray
    p: np.ndarray
    g_rows: np.ndarray
    lasts: np.ndarray
    makes: np.ndarray
    sj: np.ndarray
    prev: np.ndarray
    x: np.ndarray | None


def forecast(
    model: Predictor, x: np.ndarray | None, predicted: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, error scales) of windows ``x`` as float64 [k]; empty for None.
    ``predicted``: ``model.predict(x)`` if already computed elsewhere (the inference
    process). Safe to run on another thread than the pipeline's (it only reads ``x``)."""
    if x is None:
        return np.empty(0), np.empty(0)
    k = len(x)
    raw = model.predict(x) if predicted is None else predicted
    preds = np.asarray(raw, dtype=np.float64).reshape(k)
    return preds, np.asarray(model.error_scale(x), dtype=np.float64).reshape(k)


class Pipeline(StreamStore):
    """Per-stream windows, forecasts and detector state for one model (see module doc)."""

    def __init__(self, model: Predictor, config: DetectConfig) -> None:
        target = int(model.manifest.target_index)
        super().__init__(config, model.window, len(model.features), target,
                         model.manifest.calibration)  # fmt: skip
        self.model = model

    def set_model(self, model: Predictor) -> None:
        """Hot reload keeping windows, forecasts and detector state (same window/features)."""
        if model.window != self.window:
            raise ValueError(f"new model has window {model.window}, the running one {self.window}")
        if tuple(model.features) != tuple(self.model.features):
            raise ValueError(
                f"new model has features {tuple(model.features)}, "
                f"the running one {tuple(self.model.features)}"
            )
        if int(model.manifest.target_index) != self.target:
            raise ValueError(
                f"new model forecasts {model.manifest.target!r}, the running one "
                f"{self.model.manifest.target!r}: pending forecasts would not match"
            )
        self.model = model
        self.anomaly.set_calibration(model.manifest.calibration)  # for streams seen from now

    # ------------------------------------------------------------------ the hot path
    def process(self, points: Points, now: float) -> Result:
        """Score one poll batch. ``now`` (unix seconds) is accepted for the contract; every
        decision here uses event time (``points.ts_ms``), so replays are reproducible."""
        prep = self.prepare(points)
        return self.finish(prep, *forecast(self.model, prep.x))

    def prepare(self, points: Points) -> Prepared:
        """The first half of :meth:`process`: route and order the points, append them to the
        windows, and cut every window that needs a forecast (``Prepared.x``, a copy).

        The forecasts of ``x`` (:func:`forecast`) may then be computed on another thread
        while this one does other work. Before :meth:`finish` of the same batch, nothing may
        touch this pipeline (no import, drop or eviction) except the ``prepare`` of the next
        batch: it reads only what ``prepare`` writes (windows, counts, last timestamps, rows),
        never what ``finish`` writes (forecasts, detector state), so the finishes may follow
        in order. (A stream's pending forecast exists exactly when its window is full.)"""
        n = len(points.streams)
        ts_all = np.asarray(points.ts_ms, dtype=np.int64)
        values = np.asarray(points.values, dtype=np.float64)
        if n == 0 and values.size == 0:
            values = values.reshape(0, self.nfeat)
        if ts_all.shape != (n,) or values.shape != (n, self.nfeat):
            raise ValueError(
                f"Points: {n} streams, ts_ms shape {ts_all.shape}, values shape {values.shape}; "
                f"expected ({n},) and ({n}, {self.nfeat}) in the model's feature order"
            )
        rejected: list[Rejected] = []
        # The decoder should have refused these; the core stays safe on its own: a value the
        # model's float32 window cannot hold would poison the stream for a whole window.
        usable = np.all(np.isfinite(values) & (np.abs(values) <= FLOAT32_MAX), axis=1)
        rejected.extend(Rejected(int(i), "non_finite") for i in np.flatnonzero(~usable))
        rows = self._rows(points.streams, usable, rejected)
        valid = np.flatnonzero(rows >= 0)
        order = valid[np.argsort(rows[valid], kind="stable")]  # by stream, then arrival
        ok = in_order(self.state["last_ts"], rows[order], ts_all[order])
        rejected.extend(Rejected(int(i), "out_of_order") for i in order[~ok])
        order = order[ok]
        srows = rows[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = srows[1:] != srows[:-1]
        starts = np.flatnonzero(first)
        gid = np.cumsum(first) - 1  # stream group of each accepted point
        p = np.arange(len(order)) - starts[gid]  # its rank in the group = its round
        g_rows = srows[starts]
        counts = np.diff(np.append(starts, len(order)))
        lasts = starts + counts - 1
        count0 = self.state["count"][g_rows]
        # has_pred as finish will have left it: set once a window is full, never cleared.
        has0 = count0 >= self.window
        hist = self.ring.extend(g_rows, counts, values[order], ts_all[order[lasts]])
        # A point whose window (ending at it) is full needs a forecast for the next point.
        makes = count0[gid] + p + 1 >= self.window
        x = np.ascontiguousarray(hist.windows(gid[makes], p[makes])) if makes.any() else None
        # Scored: the stream's first point against its pending forecast, later ones against
        # the forecast from the window that ended at the point before.
        scored = np.where(p == 0, has0[gid], count0[gid] + p >= self.window)
        sj = np.flatnonzero(scored)
        prev = hist.before(gid[sj], p[sj])[:, self.target].astype(np.float64)
        return Prepared(points, ts_all, values, rejected, order, srows, p, g_rows, lasts, makes,
                        sj, prev, x)  # fmt: skip

    def finish(self, prep: Prepared, preds: np.ndarray, scales: np.ndarray) -> Result:
        """The second half of :meth:`process`: compare, detect, keep the pending forecasts.
        ``preds``/``scales`` are :func:`forecast` of ``prep.x``."""
        points, ts_all, values, order, srows = (
            prep.points, prep.ts_all, prep.values, prep.order, prep.srows
        )  # fmt: skip
        p, g_rows, lasts, makes, sj = prep.p, prep.g_rows, prep.lasts, prep.makes, prep.sj
        n, k = len(points.streams), int(makes.sum())
        win_id = np.cumsum(makes) - 1
        s_idx, s_row, s_round = order[sj], srows[sj], p[sj]
        src = np.where(s_round > 0, win_id[np.maximum(sj - 1, 0)], 0)
        pend = s_round == 0
        predicted = np.where(pend, self.state["pred"][s_row], preds[src] if k else 0.0)
        scale = np.where(pend, self.state["pred_scale"][s_row], scales[src] if k else 1.0)
        actual = values[s_idx, self.target]
        error = actual - predicted
        with np.errstate(divide="ignore", invalid="ignore"):
            z = error / scale
        made = makes[lasts]  # the newest window of each stream gives its pending forecast
        self.state["pred"][g_rows[made]] = preds[win_id[lasts[made]]]
        self.state["pred_scale"][g_rows[made]] = scales[win_id[lasts[made]]]
        self.state["has_pred"][g_rows[made]] = True
        score, thr, events = self._detect(points.streams, s_idx, s_row, s_round, ts_all,
                                          actual, predicted, error, scale, prep.prev)  # fmt: skip
        touched = g_rows[self.state["has_pred"][g_rows]]
        nxt = self.state["pred"][touched]
        lo, hi = self.volatility.band(touched, nxt)
        ids = self.index.ids
        names = [ids[r] for r in touched]
        o = arrival_order(s_idx, n)
        scored_ = Scored(
            s_idx[o], predicted[o], actual[o], error[o], z[o],
            dict(zip(names, nxt.tolist(), strict=True)), score[o], thr[o], names, lo, hi,
        )  # fmt: skip
        events.sort(key=lambda e: (e.index, e.type))
        rejected = sorted(prep.rejected, key=lambda j: j.index)
        return Result(scored_, events, rejected)

    def _detect(
        self, streams: list[str], idx: np.ndarray, rows: np.ndarray, rounds: np.ndarray,
        ts_all: np.ndarray, actual: np.ndarray, predicted: np.ndarray, error: np.ndarray,
        scale: np.ndarray, prev: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, list[Event]]:  # fmt: skip
        """Run both detectors round by round over the scored points (finite ones only).

        The touched rows' detector state is copied into a dense working set once, the rounds
        run on it (a round holding every touched stream, the common case, indexes it with a
        plain slice), and it is written back once."""
        score = np.full(len(idx), np.nan)
        thr = np.full(len(idx), np.nan)
        events: list[Event] = []
        fin = np.flatnonzero(np.isfinite(error) & np.isfinite(scale))
        if not fin.size:
            return score, thr, events
        fin = fin[np.argsort(rounds[fin], kind="stable")]
        touched, local = np.unique(rows[fin], return_inverse=True)
        an_t, vo_t = self.anomaly.table.take(touched), self.volatility.table.take(touched)
        se_t = self.seasonal.table.take(touched)
        cuts = np.flatnonzero(np.r_[True, np.diff(rounds[fin]) != 0, True])
        for a, b in itertools.pairwise(cuts):
            j = fin[a:b]
            lr = local[a:b]
            # fin is grouped by stream, so a round holding every touched stream lists them
            # in local-row order: index the working set with a plain slice.
            rr: np.ndarray | slice = slice(None) if b - a == len(touched) else lr
            ts = ts_all[idx[j]]
            quiet = self.volatility.collapsed(rr, vo_t)
            busy = an_t["open"][rr] | (an_t["cool"][rr] > 0)  # an anomaly episode's incident
            se = self.seasonal.update(rr, actual[j], busy, quiet, se_t)
            an = self.anomaly.update(rr, error[j], scale[j], predicted[j], ts, quiet, an_t, se)
            vo = self.volatility.update(rr, error[j], actual[j] - prev[j], ts, vo_t)
            score[j], thr[j] = an.score, an.threshold
            for kind, step in (("anomaly", an), ("volatility", vo)):
                tr = step.transitions
                for m in np.flatnonzero(tr.opened | tr.resolved):
                    i = int(j[m])
                    events.append(
                        Event(kind, "open" if tr.opened[m] else "resolved",
                              streams[int(idx[i])], int(ts[m]), int(idx[i]),
                              float(actual[i]), float(predicted[i]), float(error[i]),
                              float(step.score[m]), float(step.threshold[m]),
                              SEVERITIES[int(tr.severity[m])], int(tr.episode_start[m]))
                    )  # fmt: skip
        self.anomaly.table.put(touched, an_t)
        self.volatility.table.put(touched, vo_t)
        self.seasonal.table.put(touched, se_t)
        return score, thr, events
