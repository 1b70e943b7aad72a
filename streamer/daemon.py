"""The run loop: poll -> score -> publish -> wait for acks -> commit, until told to stop.

One iteration (:meth:`Daemon.step`)::

    poll a batch ─► Scorer.score (decode, Pipeline.process per route)
        ─► send alerts, dead letters, predictions ─► wait for acks=all (DeliveryError: raise)
        ─► commit next offsets of the batch ─► metrics, reload check, eviction, lag

Offsets are committed only after every output the batch caused was acknowledged, and the
commit happens before the next poll, so a rebalance or a crash can at worst re-read the last
batch (at-least-once; alert ids are deterministic, so duplicates are recognisable).

Crash-only: :meth:`request_stop` (SIGTERM/SIGINT) only sets a flag; the loop finishes the
batch in hand, delivers, commits and returns 0. An exception from anywhere closes the
clients without committing the failed batch and is re-raised for the supervisor.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from streamer import alerts
from streamer.config import Config
from streamer.http import Health
from streamer.kafka_io import Batch, KafkaIO
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
    ):
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
            self.io.open()
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
        batch = self.io.poll(self.cfg.kafka.poll_timeout_ms)
        mono = self.mono()
        self._tick(mono)
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

    def _handle(self, batch: Batch) -> None:
        out = self.scorer.score(batch.messages, self.wall())
        self._publish(out)
        self.io.deliver(self.cfg.kafka.flush_timeout_s)
        acked = self.wall()
        observe_many(
            self.metrics.end_to_end_seconds, np.maximum(0.0, acked - out.kafka_ts_ms / 1e3)
        )
        self._count_alerts(out)
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
            self.io.deliver(self.cfg.kafka.flush_timeout_s)
            self._count_alerts(out)
        if gone:
            log.info("idle streams evicted", extra={"fields": {"count": gone}})

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
