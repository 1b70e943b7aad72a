"""The run loop: poll -> score -> publish -> wait for acks -> commit, until told to stop.

One iteration (:meth:`Daemon.step`)::

    poll a batch ─► Scorer.score (decode, Pipeline.process per route)
        ─► send alerts, dead letters, predictions ─► wait for acks=all (DeliveryError: raise)
        ─► commit next offsets of the batch ─► metrics, reload check, eviction, lag

Offsets are committed only after every output the batch caused was acknowledged and, with
``[state] enabled``, after the state of every stream the batch touched was checkpointed and
acknowledged (:mod:`streamer.handover`); the commit happens before the next poll, so a
rebalance or a crash can at worst re-read the last batch, whose points the restored state
already holds are skipped (alert ids are deterministic, so a re-sent alert is recognisable).
Rebalances recorded by the listener are applied right after ``poll`` and before scoring:
revoked partitions' streams are dropped, assigned ones' restored.

Broker loss is not fatal: outputs not acknowledged within ``flush_timeout_s`` are sent again
(only those) with exponential backoff (``[state] retry_backoff_s`` .. ``retry_backoff_max_s``)
until acknowledged, a failed poll or restore is retried the same way, and meanwhile
``/readyz`` and ``lstmad_ready`` say not ready while the loop stays live. Only fatal errors
(authentication, TLS trust: :func:`streamer.preflight.classify`) end the loop.

Crash-only: :meth:`request_stop` (SIGTERM/SIGINT) only sets a flag; the loop finishes the
batch in hand, delivers, commits and returns 0 (during a broker outage the retry gives up
and the batch stays uncommitted). An exception from anywhere closes the clients without
committing the failed batch and is re-raised for the supervisor.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from streamer import alerts, preflight
from streamer.config import Config
from streamer.handover import Handover
from streamer.http import Health
from streamer.kafka_io import Batch, DeliveryError, KafkaIO, Record
from streamer.metrics import Metrics
from streamer.scoring import Outputs, Scorer, observe_many
from streamer.sdnotify import SdNotify

log = logging.getLogger("lstmad.daemon")
LAG_EVERY_S = 5.0


class Daemon:
    def __init__(
        self,
        cfg: Config,
        io: KafkaIO,
        scorer: Scorer,
        metrics: Metrics,
        health: Health,
        notify: SdNotify,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        handover: Handover | None = None,
    ):
        self.handover = handover
        self._prepared = False
        self.cfg = cfg
        self.io = io
        self.scorer = scorer
        self.router = scorer.router
        self.metrics = metrics
        self.health = health
        self.notify = notify
        self.wall = wall
        self.mono = mono
        self._stop = threading.Event()
        self._ready_sent = False
        self._next_lag = 0.0
        self._lag_labels: set[tuple[str, int]] = set()
        self._next_evict = mono() + cfg.state.evict_interval_s
        self.batches = 0

    def request_stop(self) -> None:
        """Finish the current batch, deliver, commit and return from :meth:`run`."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> int:
        self.health.models_loaded = True
        try:
            self._retrying("open", self.io.open)  # a broker still down at start-up
            self.notify.status("joining the consumer group")
            while not self._stop.is_set():
                self.step()
        except BaseException:
            log.exception("run loop failed; closing without committing the current batch")
            self._close()
            raise
        log.info("stopping: last batch delivered and committed")
        self._close()
        return 0

    def _close(self) -> None:
        self.health.stopping = True
        self.metrics.ready.set(0)
        self.notify.stopping()
        self.io.close(timeout_s=min(10.0, self.cfg.kafka.shutdown_timeout_s))
        self.notify.close()

    def step(self) -> None:
        """One loop iteration; see the module docstring."""
        batch = self._poll()
        mono = self.mono()
        self._tick(mono)
        self._rebalanced()
        if batch.messages:
            self._handle(batch)
        self.router.maybe_reload(mono)
        if mono >= self._next_evict:
            self._evict()
            self._next_evict = mono + self.cfg.state.evict_interval_s
        if mono >= self._next_lag:
            self._lag()
            self._next_lag = mono + LAG_EVERY_S

    def _tick(self, mono: float) -> None:
        self.health.last_loop = mono
        self.health.broker_ok = self.io.broker_ok and self.io.reachable()
        self.metrics.last_loop.set(self.wall())
        self.notify.tick(mono)
        assigned = self.io.assignment()
        self.health.assigned = tuple(f"{t}:{p}" for t, p in assigned)
        self.metrics.ready.set(1 if self.health.ready(mono)[0] else 0)
        if assigned and not self._ready_sent:
            self._ready_sent = True
            self.notify.ready(f"serving {len(assigned)} partitions")
            log.info("ready", extra={"fields": {"partitions": list(self.health.assigned)}})

    def _poll(self) -> Batch:
        try:
            return self.io.poll(self.cfg.kafka.poll_timeout_ms)
        except Exception as exc:
            if preflight.classify(exc):
                raise
            self._retry_wait("poll", exc, 0)
            return Batch()

    def _retry_wait(self, what: str, exc: BaseException, attempt: int) -> None:
        """Not ready, still live; wait the attempt's backoff (cut short by a stop request).
        A fatal cause (auth/TLS) or a stop request ends the retries by raising ``exc``."""
        cause = exc.__cause__ or exc
        if preflight.classify(cause) or self._stop.is_set():
            raise exc
        st = self.cfg.state
        wait = min(st.retry_backoff_max_s, st.retry_backoff_s * 2**attempt)
        self.health.broker_ok = False
        self.metrics.ready.set(0)
        self.health.last_loop = self.mono()
        self.notify.tick(self.mono())
        log.warning(
            "broker unavailable; retrying",
            extra={"fields": {"op": what, "attempt": attempt + 1, "wait_s": wait,
                              "error": repr(exc)[:300]}},
        )  # fmt: skip
        self._stop.wait(wait)

    def _deliver(self) -> None:
        """Wait for the acks of everything sent; on failure replace the producer and re-send
        only what was not acknowledged, with backoff, until all is (or a stop request or a
        fatal error raises)."""
        failed: list[Record] | None = None
        exc: BaseException
        for attempt in range(1_000_000):  # bounded by the stop flag in practice
            try:
                if failed is not None:
                    self.io.reset_producer()
                    for topic, key, value, partition in failed:
                        self.io.send(topic, key, value, partition)
                self.io.deliver(self.cfg.kafka.flush_timeout_s)
            except DeliveryError as e:
                failed, exc = e.failed, e
            except Exception as e:  # the new producer could not bootstrap yet
                if failed is None or preflight.classify(e):
                    raise
                exc = e
            else:
                if attempt:
                    log.info(
                        "broker back: outputs acknowledged", extra={"fields": {"tries": attempt}}
                    )
                return
            self._retry_wait("deliver", exc, attempt)
        raise DeliveryError("outputs never acknowledged")

    def _rebalanced(self) -> None:
        """Apply the rebalances seen during the last poll, in order, before scoring."""
        events = getattr(self.io, "rebalance_events", [])
        while events:
            kind, parts = events.pop(0)
            if kind == "revoked":
                n = len(self.scorer.drop(set(parts)))
                log.info("revoked streams dropped", extra={"fields": {"streams": n}})
            elif self.handover is not None and parts:
                self._retrying("restore", functools.partial(self._restore, parts))

    def _restore(self, parts: list[int]) -> None:
        assert self.handover is not None
        if not self._prepared:
            self.handover.prepare(max(self.io.input_partitions(), max(parts) + 1))
            self._prepared = True
        self.handover.restore(parts)

    def _retrying(self, what: str, fn: Callable[[], None]) -> None:
        for attempt in range(1_000_000):  # bounded by the stop flag in practice
            try:
                fn()
                return
            except Exception as exc:
                self._retry_wait(what, exc, attempt)

    def _handle(self, batch: Batch) -> None:
        out = self.scorer.score(batch.messages, self.wall())
        self._publish(out)
        self._deliver()
        acked = self.wall()
        observe_many(
            self.metrics.end_to_end_seconds, np.maximum(0.0, acked - out.kafka_ts_ms / 1e3)
        )
        self._count_alerts(out)
        if self.handover is not None and out.touched:  # state acked before its offsets commit
            self.handover.checkpoint(self.io, out.touched)
            self._deliver()
        self.io.commit(batch.next_offsets)
        self.batches += 1

    def _count_alerts(self, out: Outputs) -> None:
        """After the broker's ack: count and log each alert event."""
        for _, doc in out.alerts:
            self.metrics.alerts.labels(doc["type"], doc["status"], doc["severity"]).inc()
            log.info(
                "alert",
                extra={"fields": {k: doc[k] for k in ("alert_id", "type", "status", "stream")}},
            )

    def _publish(self, out: Outputs) -> None:
        k = self.cfg.kafka
        for key, doc in out.alerts:
            self.io.send(k.alert_topic, key, alerts.encode(doc))
        for dkey, doc in out.dead:
            self.io.send(k.dlq_topic, dkey, alerts.encode(doc))
        if k.predictions_topic:
            for key, doc in out.predictions:
                self.io.send(k.predictions_topic, key, alerts.encode(doc))

    def _evict(self) -> None:
        if self.cfg.state.idle_evict_s <= 0:
            return
        out, gone = self.scorer.evict(self.wall(), self.cfg.state.idle_evict_s)
        if out.alerts:
            self._publish(out)
            self._deliver()
            self._count_alerts(out)
        if gone and self.handover is not None:  # after the resolved alerts are acked
            self.handover.forget(self.io, gone)
            self._deliver()
        if gone:
            log.info("idle streams evicted", extra={"fields": {"count": len(gone)}})

    def _lag(self) -> None:
        try:
            lag = self.io.lag()
        except Exception as exc:  # metadata hiccup: lag is informative, never fatal
            log.debug("lag unavailable", extra={"fields": {"error": repr(exc)}})
            return
        for (t, p), v in lag.items():
            self.metrics.consumer_lag.labels(t, str(p)).set(v)
        for t, p in self._lag_labels - set(lag):  # revoked: drop the series, not leave it stale
            self.metrics.consumer_lag.remove(t, str(p))
        self._lag_labels = set(lag)
