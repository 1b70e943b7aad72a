"""One batch of input messages -> the outputs it causes. Shared by ``serve`` and ``replay``.

:meth:`Scorer.score` decodes every message (the only per-message Python), groups the valid
points by route, runs each route's ``Pipeline.process`` once, and turns the result into
outputs: alert documents (``streamer.alerts``), dead letters for undecodable messages and for
points the core rejected (out of order, stream limit), and optional prediction records.
It updates the batch-level metrics with bulk numpy operations. No I/O and no clock: the
caller passes ``now`` (Unix seconds), so Kafka and file replays of the same data give the
same alerts by construction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Protocol, cast

import numpy as np
import numpy.typing as npt
from prometheus_client import Histogram

from streamer import alerts
from streamer.decode import Invalid, Limits, decode
from streamer.inference import InferenceProcess
from streamer.kafka_io import Consumed
from streamer.metrics import Metrics
from streamer.pipeline import Points, Predictor, Prepared, Result, Scored, forecast
from streamer.routing import Router


def observe_many(hist: Histogram, values: npt.NDArray[np.floating]) -> None:
    """``hist.observe(v) for v in values`` as one bucket count per bucket (numpy, not Python).

    prometheus_client stores non-cumulative bucket counters; this adds ``searchsorted``
    counts to them, which is exactly what per-value ``observe`` would have produced.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return
    bounds = np.asarray(hist._upper_bounds, dtype=np.float64)
    counts = np.bincount(np.searchsorted(bounds, v, side="left"), minlength=len(bounds))
    for i, c in enumerate(counts[: len(bounds)]):
        if c:
            hist._buckets[i].inc(float(c))
    hist._sum.inc(float(v.sum()))


@dataclass
class Outputs:
    """What one batch must publish, each as (key, document)."""

    alerts: list[tuple[bytes, dict[str, Any]]] = field(default_factory=list)
    dead: list[tuple[bytes | None, dict[str, Any]]] = field(default_factory=list)
    predictions: list[tuple[bytes, dict[str, Any]]] = field(default_factory=list)
    points: int = 0  # valid points accepted by the pipelines
    skipped: int = 0  # replayed points already applied to a restored state (not scored again)
    # stream -> (input partition, offset of its last point in this batch): what to checkpoint
    touched: dict[str, tuple[int, int]] = field(default_factory=dict)
    invalid: Counter[str] = field(default_factory=Counter)
    # Kafka timestamps (ms) of the batch's messages, for the end-to-end latency histogram.
    kafka_ts_ms: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))


Forecast = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]  # predictions, scales


def _forecast_all(jobs: list[tuple[Predictor, npt.NDArray[np.float32] | None]]) -> list[Forecast]:
    return [forecast(model, x) for model, x in jobs]


class Forecasts(Protocol):
    def result(self) -> list[Forecast]: ...


class _InChild:
    """A batch's forecasts running in the inference process (``Future.result`` alike)."""

    def __init__(
        self,
        remote: InferenceProcess,
        jobs: list[tuple[str, Predictor, npt.NDArray[np.float32] | None]],
        metrics: Metrics,
    ) -> None:
        self._jobs, self._metrics = jobs, metrics
        self._pending = remote.submit([(key, x) for key, _, x in jobs if x is not None])
        self._value: list[Forecast] | None = None

    def result(self) -> list[Forecast]:
        if self._value is None:
            preds = iter(self._pending.result())
            for t in self._pending.compute_s:
                self._metrics.inference_seconds.observe(t)
            self._value = [
                forecast(model, x, None if x is None else next(preds)) for _, model, x in self._jobs
            ]
        return self._value


class Staged:
    """A decoded batch: its outputs so far (dead letters) and its points grouped by route."""

    def __init__(self, messages: Sequence[Consumed], now: float, n_routes: int) -> None:
        self.messages, self.now, self.out = messages, now, Outputs()
        self.streams: list[list[str]] = [[] for _ in range(n_routes)]
        self.ts: list[list[int]] = [[] for _ in range(n_routes)]
        self.vals: list[list[tuple[float, ...]]] = [[] for _ in range(n_routes)]
        self.idx: list[list[int]] = [[] for _ in range(n_routes)]


@dataclass(frozen=True)
class Prepped:
    """A batch whose points are in the windows, its forecasts not yet started."""

    staged: Staged
    preps: dict[int, Prepared]  # route -> its half-processed points


@dataclass(frozen=True)
class Launched:
    """A batch whose points are in the windows and whose forecasts are being computed."""

    staged: Staged
    preps: dict[int, Prepared]  # route -> its half-processed points
    forecasts: Forecasts  # one per route of preps, in that order


class Scorer:
    def __init__(
        self,
        router: Router,
        limits: Limits,
        metrics: Metrics,
        predictions: bool = False,
        labelled_streams: tuple[str, ...] = (),
    ):
        self.router = router
        self.limits = limits
        self.metrics = metrics
        self.predictions = predictions
        self.labelled = frozenset(labelled_streams)
        # The input partition of the last point applied to a stream's state lives in its
        # route pipeline's source table (Pipeline.set_source), for dropping a revoked
        # partition's streams and for tombstones. Here: (partition, offset) as restored from
        # the state topic (streamer.handover): a replayed point at or below it is already in
        # the state and is skipped; the entry goes at the first point past it, so without a
        # restore nothing is ever skipped (and this stays empty).
        self.restored: dict[str, tuple[int, int]] = {}

    def score(self, messages: Sequence[Consumed], now: float) -> Outputs:
        """One batch, start to end, on this thread: :meth:`stage`, :meth:`launch`, :meth:`land`."""
        return self.land(self.launch(self.stage(messages, now)))

    def stage(self, messages: Sequence[Consumed], now: float) -> Staged:
        """Decode every message (dead letters for the invalid ones) and group the points by
        route. Touches no pipeline, so it may run while another batch is launched."""
        st = Staged(messages, now, len(self.router.routes))
        out = st.out
        now_ms = int(now * 1000)
        features = self.router.features_of
        out.kafka_ts_ms = np.empty(len(messages), np.int64)
        for i, msg in enumerate(messages):
            out.kafka_ts_ms[i] = msg.timestamp
            d = decode(msg.value, msg.key, features, self.limits, now_ms)
            if isinstance(d, Invalid):
                self._dead(out, msg, d.reason, d.detail, now)
                continue
            seen = self.restored.get(d.stream) if self.restored else None
            if seen is not None:
                if seen[0] == msg.partition and msg.offset <= seen[1]:
                    out.skipped += 1  # already in the restored state; its alerts were acked
                    continue
                del self.restored[d.stream]
            out.touched[d.stream] = (msg.partition, msg.offset)
            r = self.router.route_of(d.stream)
            st.streams[r].append(d.stream)
            st.ts[r].append(d.ts_ms)
            st.vals[r].append(d.values)
            st.idx[r].append(i)
        return st

    def launch(self, st: Staged, pool: Executor | None = None) -> Launched:
        """:meth:`prepare` then :meth:`start`. Until :meth:`land`, nothing may touch the
        pipelines but the next batch's :meth:`prepare`."""
        return self.start(self.prepare(st), pool)

    def prepare(self, st: Staged) -> Prepped:
        """Append the points to their routes' windows (:meth:`Pipeline.prepare`) and cut the
        windows to forecast. May run while the batch before is still in flight: the daemon
        prepares batch k+1 before it waits for batch k's forecasts, and starts k+1's
        (:meth:`start`) the moment k's are in, before k's detectors run."""
        preps = {}
        for r, streams in enumerate(st.streams):
            if streams:
                points = Points(
                    streams=streams,
                    ts_ms=np.asarray(st.ts[r], dtype=np.int64),
                    values=np.asarray(st.vals[r], dtype=np.float64).reshape(len(streams), -1),
                    offsets=np.asarray(st.idx[r], dtype=np.int64),
                )
                preps[r] = self.router.routes[r].pipeline.prepare(points)
        return Prepped(st, preps)

    def start(self, pp: Prepped, pool: Executor | None = None) -> Launched:
        """Start a prepared batch's forecasts: in the inference process, on ``pool``
        (``[model] inference = "thread"``: ONNX Runtime releases the GIL, so the caller can
        poll and decode the next batch meanwhile) or, without either, right here. One batch's
        forecasts at a time: the batch before must have its forecasts in (:meth:`land`)."""
        st, preps = pp.staged, pp.preps
        remote = self.router.remote
        if remote is not None:  # no worker thread: the child has its own interpreter lock
            keyed = [(self.router.routes[r].model.sha256, self.router.routes[r].pipeline.model, p.x)
                     for r, p in preps.items()]  # fmt: skip
            return Launched(st, preps, _InChild(remote, keyed, self.metrics))
        jobs = [(self.router.routes[r].pipeline.model, prep.x) for r, prep in preps.items()]
        done: Forecasts
        if pool is None:
            now_done: Future[list[Forecast]] = Future()
            now_done.set_result(_forecast_all(jobs))
            done = now_done
        else:
            done = pool.submit(_forecast_all, jobs)
        return Launched(st, preps, done)

    def land(self, la: Launched, then: Callable[[], object] | None = None) -> Outputs:
        """Wait for the forecasts, call ``then`` (the daemon starts the next batch's
        forecasts there, so they run while these detectors do), run the detectors
        (:meth:`Pipeline.finish`) and build the batch's outputs; re-raises what the forecast
        raised."""
        st, out = la.staged, la.staged.out
        forecasts = la.forecasts.result()
        if then is not None:
            then()
        for (r, prep), fc in zip(la.preps.items(), forecasts, strict=True):
            result = self.router.routes[r].pipeline.finish(prep, *fc)
            self._route(out, r, st.messages, st.streams[r], st.ts[r], st.idx[r], st.now, result)
        out.touched = self._record_sources(la.preps, out.touched)
        self.metrics.points.inc(out.points)
        for reason, n in out.invalid.items():
            self.metrics.invalid.labels(reason).inc(n)
        self.metrics.active_streams.set(self.router.stream_count())
        return out

    def evict(self, now: float, idle_s: float) -> tuple[Outputs, dict[str, int]]:
        """Free streams silent for ``idle_s`` (event time vs ``now``); their open episodes
        resolve (alerts with ``source: null``). Returns the outputs and the evicted streams
        (stream -> input partition, -1 if unknown), for the state topic's tombstones."""
        out = Outputs()
        gone: dict[str, int] = {}
        for route in self.router.routes:
            events: list[Any] = []
            parts: list[int] = []
            names = route.pipeline.evict_idle(int(now * 1000), int(idle_s * 1000), events, parts)
            for s, p in zip(names, parts, strict=True):
                gone[s] = p
                self.restored.pop(s, None)
            ref = route.ref
            for ev in events:
                out.alerts.append((ev.stream.encode("utf-8"), alerts.alert(ev, ref, None, now)))
        self.metrics.evicted_streams.inc(len(gone))
        self.metrics.active_streams.set(self.router.stream_count())
        return out, gone

    def drop(self, partitions: set[int]) -> list[str]:
        """Forget every stream last read from one of ``partitions`` (revoked: another owner
        restores them from the state topic). No events: their episodes stay open there."""
        names: list[str] = []
        for route in self.router.routes:
            names += route.pipeline.drop(route.pipeline.streams_from(partitions))
        for s in names:
            self.restored.pop(s, None)
        self.metrics.active_streams.set(self.router.stream_count())
        return names

    def partition_of(self, stream: str) -> int | None:
        """Input partition of the last point applied to ``stream``'s state, None if no route
        holds the stream or none was recorded."""
        pipe = self.router.routes[self.router.route_of(stream)].pipeline
        p = int(pipe.source_of([stream])[0])
        return None if p < 0 else p

    def mark_restored(self, route: int, sources: Mapping[str, tuple[int, int]]) -> None:
        """Streams just imported into ``route`` from the state topic, each with the (input
        partition, offset) its state holds: the partition is recorded as for a scored point,
        and replayed points at or below the offset are skipped (see :meth:`stage`)."""
        if not sources:
            return
        names = list(sources)
        parts = np.fromiter((sources[s][0] for s in names), dtype=np.int64, count=len(names))
        self.router.routes[route].pipeline.set_source(names, parts)
        self.restored.update(sources)

    def _record_sources(
        self, routes: Iterable[int], touched: dict[str, tuple[int, int]]
    ) -> dict[str, tuple[int, int]]:
        """Write each touched stream's input partition into its route's source table and
        return ``touched`` keyed by the pipelines' own id objects: the decoder hands on a
        new str per message, and whoever keeps ``touched`` across batches (the daemon,
        until its next checkpoint) would otherwise hold a second copy of every id. Streams
        no pipeline holds (refused by the stream limit, or only invalid points) are left
        out: there is no state to checkpoint for them."""
        if not touched:
            return touched
        names, where = list(touched), list(touched.values())
        parts = np.fromiter(map(itemgetter(0), where), dtype=np.int64, count=len(names))
        held: dict[str, tuple[int, int]] = {}
        for r in routes:
            pipe = self.router.routes[r].pipeline
            rows = pipe.set_source(names, parts)
            ids = cast(list[str], pipe.index.ids)  # the id of every live row (>= 0) is set
            if rows.min() >= 0:  # the common case: one route holding every touched stream
                held.update(zip(map(ids.__getitem__, rows.tolist()), where, strict=True))
                continue
            held.update((ids[row], where[i]) for i, row in enumerate(rows.tolist()) if row >= 0)
        return held

    def _dead(self, out: Outputs, msg: Consumed, reason: str, detail: str, now: float) -> None:
        src = alerts.Source(msg.topic, msg.partition, msg.offset)
        doc = alerts.dead_letter(reason, detail, src, msg.key, msg.value, msg.timestamp, now)
        out.dead.append((msg.key, doc))
        out.invalid[reason] += 1

    def _route(
        self,
        out: Outputs,
        r: int,
        messages: Sequence[Consumed],
        streams: list[str],
        ts: list[int],
        idx: list[int],
        now: float,
        result: Result,
    ) -> None:
        route = self.router.routes[r]
        for rej in result.rejected:
            msg = messages[idx[rej.index]]
            self._dead(out, msg, rej.reason, f"refused by the scoring core: {rej.reason}", now)
            if rej.reason == "stream_limit":  # no state to checkpoint
                out.touched.pop(streams[rej.index], None)
        out.points += len(streams) - len(result.rejected)
        ref = route.ref
        for ev in result.events:
            src = None
            if ev.index >= 0:
                m = messages[idx[ev.index]]
                src = alerts.Source(m.topic, m.partition, m.offset)
            out.alerts.append((ev.stream.encode("utf-8"), alerts.alert(ev, ref, src, now)))
        self._observe(result.scored, streams, ts, ref, out)

    def _observe(
        self, sc: Scored, streams: list[str], ts: list[int], ref: alerts.ModelRef, out: Outputs
    ) -> None:
        k = len(sc.index)
        if k == 0:
            return
        self.metrics.predictions.inc(k)
        err = np.abs(np.asarray(sc.norm_error, dtype=np.float64))
        observe_many(self.metrics.prediction_error, err)
        self.metrics.batch_streams.observe(len(sc.next_predicted))
        if self.labelled:
            scored = np.asarray(streams, dtype=object)[np.asarray(sc.index, dtype=np.int64)]
            for s in self.labelled.intersection(scored):
                observe_many(self.metrics.stream_prediction_error.labels(s), err[scored == s])
        if self.predictions:
            for j, i in enumerate(sc.index):
                s = streams[int(i)]
                doc = alerts.prediction(
                    s,
                    ts[int(i)],
                    float(sc.predicted[j]),
                    float(sc.actual[j]),
                    float(sc.error[j]),
                    float(sc.norm_error[j]),
                    ref,
                )
                out.predictions.append((s.encode("utf-8"), doc))
