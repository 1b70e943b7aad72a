"""The run loop: poll -> score -> publish -> wait for acks -> commit, until told to stop.

One iteration (:meth:`Daemon.step`)::

    poll batch k+1 (the forecasts of batch k run meanwhile) ─► Scorer.stage
        (decode k+1) ─► Scorer.prepare k+1 (its points into the windows) ─► Scorer.land k:
        its forecasts in ─► Scorer.start k+1 (forecasts started) ─► k's detectors ─► send
        its alerts, dead letters, predictions ─► wait for acks=all (DeliveryError: raise)
        ─► every [kafka] commit_interval_s: checkpoint, commit ─► metrics, reload,
        eviction, lag

Batch k+1 is prepared before batch k's detectors run (``Pipeline.prepare`` reads nothing
that ``finish`` writes), so the inference process computes k+1's forecasts while the loop
runs k's detectors and waits for k's acks: at 28k points/s live this halved the p99 of
produce->output (bench/throughput.py). A crash in between loses nothing: only batches
whose outputs are acknowledged have their offsets committed, and a checkpoint is taken
only once the batch in flight has landed. Offsets are committed
at most every ``commit_interval_s`` (1 s by default; 0: after every batch), and always on shutdown,
before an eviction and on revocation (:attr:`KafkaIO.before_revoke`, inside ``poll``): with
``[state] enabled`` the state of every stream touched since the last commit is checkpointed
and acknowledged first (:mod:`streamer.handover`), so a committed offset never runs ahead
of the checkpointed state; on the interval the states are encoded at once but sent
``[state] checkpoint_chunk`` per iteration, the loop scores on while those acks come in,
and commits once they have, without waiting for the coordinator's answer
(:meth:`Daemon._settle`); on the forced paths it sends everything and waits. A crash
re-reads at most the points since the last commit; the restored state is the one
checkpointed with that commit, so they are scored again from the same state and re-send
the same alerts (deterministic ``alert_id``); points the restored state already holds are
skipped. Checkpointing once a second instead of once a batch keeps the state topic's cost
small: a batch of 5,000 points over 1,000 streams would otherwise re-publish 1,000 states,
about a fifth of the loop's time.
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
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from streamer import alerts, malloc, preflight
from streamer.config import Config
from streamer.handover import Handover, StateRecord
from streamer.http import Health
from streamer.kafka_io import Batch, DeliveryError, KafkaIO, Record, Sent, TopicPartition
from streamer.metrics import Metrics
from streamer.scoring import Launched, Outputs, Scorer, observe_many
from streamer.sdnotify import SdNotify

log = logging.getLogger("lstmad.daemon")
LAG_EVERY_S = 5.0
# A rebalance still not complete after this long is logged: the member consumes nothing
# meanwhile, and kafka-python 3.0's rejoin has been seen to hang after a revocation on a
# freshly created topic (its SyncGroup never answered). [kafka] rejoin_after_s then
# replaces the consumer.
REBALANCE_WARN_S = 30.0


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
        self._rebalancing_since: float | None = None  # mono of the first tick that saw it
        self._rebalance_warned = False
        self._next_lag = 0.0
        self._lag_labels: set[tuple[str, int]] = set()
        self._next_evict = mono() + cfg.state.evict_interval_s
        self.batches = 0
        # Delivered but not yet committed: next offsets per partition, and the streams
        # touched since the last commit -> (input partition, offset of their last point).
        self._offsets: dict[TopicPartition, int] = {}
        self._touched: dict[str, tuple[int, int]] = {}
        self._next_commit = 0.0
        # A checkpoint sent but not yet acknowledged, with the offsets it allows to commit,
        # and its records not sent yet: a chunk goes out per loop iteration (the sends of
        # 1,000 states in one go held the loop for 25-40 ms, the largest stall of the p99).
        self._checkpoint: tuple[Sent, dict[TopicPartition, int]] | None = None
        self._unsent: deque[StateRecord] = deque()
        io.before_revoke = self._before_revoke
        # The batch launched last (its forecasts computed in the inference process, or on
        # the pool with [model] inference = "thread", while the loop polls and decodes the
        # next one) and its offsets; landed before anything else happens.
        self._inflight: tuple[Launched, dict[TopicPartition, int]] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lstmad-forecast")
        self._hook_error: BaseException | None = None
        self._crashed = False

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
            self._land()
            self._commit()
        except BaseException:
            log.exception("run loop failed; closing without committing the current batch")
            self._crashed = True  # no landing, no checkpoint from the revocation in close
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
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.notify.close()

    def step(self) -> None:
        """One loop iteration; see the module docstring."""
        batch = self._poll()  # the forecasts of the batch in flight are computed meanwhile
        if self._hook_error is not None:  # landing it on revocation failed: crash-only
            raise self._hook_error
        mono = self.mono()
        self._tick(mono)
        if self.io.rebalance_events:
            self._land()
            self._rebalanced()
        staged = self.scorer.stage(batch.messages, self.wall()) if batch.messages else None
        if staged is None:
            self._land()
        else:
            # The next batch's windows are cut before this one's forecasts are awaited, and
            # its forecasts start as soon as those are in: the inference process computes
            # them while this batch's detectors run and its outputs are acknowledged.
            prepped = self.scorer.prepare(staged)
            started: list[Launched] = []
            self._land(then=lambda: started.append(self.scorer.start(prepped, self._pool)))
            nxt = started[0] if started else self.scorer.start(prepped, self._pool)
            self._inflight = (nxt, batch.next_offsets)
        if self._unsent:  # an idle loop sends the rest at once
            self._send_checkpoint(None if staged is None else self.cfg.state.checkpoint_chunk)
        self._settle(wait=False)
        interval = self.cfg.kafka.commit_interval_s
        if interval <= 0 or ((self._offsets or self._inflight) and mono >= self._next_commit):
            self._land()
            self._commit(wait=interval <= 0)
        self.router.maybe_reload(mono)
        if mono >= self._next_evict:
            self._land()
            self._commit()  # tombstones must not overtake a pending checkpoint
            self._evict()
            self._next_evict = mono + self.cfg.state.evict_interval_s
        if mono >= self._next_lag:
            self._lag()
            malloc.trim()  # a batch's freed pages back to the system (streamer.malloc)
            self._next_lag = mono + LAG_EVERY_S

    def _tick(self, mono: float) -> None:
        self.health.last_loop = mono
        self.health.broker_ok = self.io.broker_ok and self.io.reachable()
        self.metrics.last_loop.set(self.wall())
        self.notify.tick(mono)
        assigned = self.io.assignment()
        if self._watch_rebalance(mono):
            # Revoked and not yet reassigned: kafka-python still lists the old partitions,
            # but nothing is fetched until the group coordinator completes the rebalance.
            assigned = []
        self.health.assigned = tuple(f"{t}:{p}" for t, p in assigned)
        self.metrics.ready.set(1 if self.health.ready(mono)[0] else 0)
        if assigned and not self._ready_sent:
            self._ready_sent = True
            self.notify.ready(f"serving {len(assigned)} partitions")
            log.info("ready", extra={"fields": {"partitions": list(self.health.assigned)}})

    def _watch_rebalance(self, mono: float) -> bool:
        """Whether the group is rebalancing (partitions revoked, none assigned since). Logs
        one that takes :data:`REBALANCE_WARN_S` or more, and its end; replaces the consumer
        (:meth:`KafkaIO.rejoin`) once one has been pending ``[kafka] rejoin_after_s``."""
        if not self.io.rebalancing:
            if self._rebalance_warned and self._rebalancing_since is not None:
                took = mono - self._rebalancing_since
                log.info("rebalance completed", extra={"fields": {"seconds": round(took, 1)}})
            self._rebalancing_since, self._rebalance_warned = None, False
            return False
        if self._rebalancing_since is None:
            self._rebalancing_since = mono
        waited = mono - self._rebalancing_since
        if waited >= REBALANCE_WARN_S and not self._rebalance_warned:
            self._rebalance_warned = True
            log.warning(
                "rebalance not complete: consuming nothing until it is",
                extra={"fields": {"seconds": round(waited, 1)}},
            )
        limit = self.cfg.kafka.rejoin_after_s
        if 0 < limit <= waited:
            log.warning(
                "rebalance stuck: rejoining the group with a new consumer",
                extra={"fields": {"seconds": round(waited, 1)}},
            )
            self.metrics.kafka_errors.labels("rejoin").inc()
            self._retrying("rejoin", self.io.rejoin)
            self._rebalancing_since = self.mono()  # the new member's rebalance starts now
        return True

    def _poll(self) -> Batch:
        # With a batch in flight, take only what is already fetched: its outputs wait on this.
        timeout_ms = 0 if self._inflight is not None else self.cfg.kafka.poll_timeout_ms
        try:
            return self.io.poll(timeout_ms)
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

    def _deliver(self, sent: Sent | None = None) -> None:
        """Wait for the acks of everything sent (or of the group ``sent``); on failure replace
        the producer and re-send only what was not acknowledged, with backoff, until all is
        (or a stop request or a fatal error raises)."""
        failed: list[Record] | None = None
        exc: BaseException
        for attempt in range(1_000_000):  # bounded by the stop flag in practice
            try:
                if failed is not None:
                    self.io.reset_producer()
                    for topic, key, value, partition in failed:
                        self.io.send(topic, key, value, partition)
                    sent = None
                self.io.deliver(self.cfg.kafka.flush_timeout_s, sent)
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

    def _land(self, once: bool = False, then: Callable[[], object] | None = None) -> None:
        """Finish the batch in flight: detectors and outputs, then every output acknowledged
        (``once``: one wait, no retries, raising DeliveryError); its offsets become pending.
        ``then`` is called once its forecasts are in (:meth:`Scorer.land`); not at all if
        nothing is in flight."""
        if self._inflight is None:
            return
        launched, offsets = self._inflight
        self._inflight = None
        out = self.scorer.land(launched, then)
        self._publish(out)
        if once:
            self.io.deliver(self.cfg.kafka.flush_timeout_s)
        else:
            self._deliver()
        acked = self.wall()
        observe_many(
            self.metrics.end_to_end_seconds, np.maximum(0.0, acked - out.kafka_ts_ms / 1e3)
        )
        self._count_alerts(out)
        if self.handover is not None:
            self._touched.update(out.touched)
        self._offsets.update(offsets)
        self.batches += 1

    def _commit(self, wait: bool = True) -> None:
        """Checkpoint the streams touched since the last commit, and commit the offsets once
        the state records are acknowledged: now (``wait``) or when :meth:`_settle` finds
        them all sent and acknowledged, while the loop scores the next batches (a checkpoint
        of 1,000 streams takes tens of milliseconds to be sent and acked, and points would
        wait on it). Without ``wait`` the records are encoded now (nothing is in flight, so
        they are the states the offsets lead to) and sent ``[state] checkpoint_chunk`` per
        loop iteration. One checkpoint at a time: an earlier one is completed first.
        Only called with every output acknowledged (after :meth:`_land`)."""
        self._settle(wait=True)
        if self.handover is not None and self._touched:
            self._unsent.extend(self.handover.records(self._touched))
        self._touched.clear()
        self._checkpoint, self._offsets = ([], self._offsets), {}
        self._send_checkpoint(None if wait else self.cfg.state.checkpoint_chunk)
        self._settle(wait)
        self._next_commit = self.mono() + self.cfg.kafka.commit_interval_s

    def _send_checkpoint(self, limit: int | None) -> None:
        """Send up to ``limit`` (None: all) of the checkpoint's unsent records and add them to
        its group. Only with every output acknowledged: the group is what ``detach`` takes."""
        if not self._unsent:
            return
        assert self.handover is not None and self._checkpoint is not None
        n = len(self._unsent) if limit is None else min(limit, len(self._unsent))
        self.handover.send(self.io, (self._unsent.popleft() for _ in range(n)))
        self._checkpoint[0].extend(self.io.detach())

    def _settle(self, wait: bool) -> None:
        """Commit the offsets of the checkpoint in flight once all its state records are sent
        and acked (``wait``: send the rest and wait, re-sending what failed as outputs are)."""
        if self._checkpoint is None:
            return
        sent, offsets = self._checkpoint
        if not wait and (self._unsent or not self.io.settled(sent)):
            return
        self._send_checkpoint(None)
        self._checkpoint = None
        self._deliver(sent)
        if offsets:
            self.io.commit(offsets, wait=wait)

    def _before_revoke(self) -> dict[TopicPartition, int]:
        """On revocation (kafka-python's IO thread; this loop is blocked in poll or close):
        land the batch in flight, checkpoint what is pending, wait once for the acks, and
        hand back the offsets for the listener to commit. Nothing on the crash path (a batch
        may be half applied) or when the acks do not come: the new owner then re-reads from
        the last commit. If landing fails, the loop raises it after ``poll``."""
        if self._crashed:
            return {}
        try:
            self._land(once=True)
        except Exception as exc:
            self._hook_error = exc
            return {}
        self._send_checkpoint(None)  # the rest of a checkpoint still in flight
        sent, earlier = self._checkpoint or ([], {})
        offsets = {**self.io.uncommitted, **earlier, **self._offsets}  # and a failed commit
        touched = self._touched
        self._offsets, self._touched, self._checkpoint = {}, {}, None
        if not offsets:
            return {}
        try:
            self.io.deliver(self.cfg.kafka.flush_timeout_s, sent)
            if self.handover is not None and touched:
                self.handover.checkpoint(self.io, touched)
                self.io.deliver(self.cfg.kafka.flush_timeout_s)
        except Exception as exc:
            log.warning(
                "checkpoint on revocation failed; the new owner re-reads from the last commit",
                extra={"fields": {"error": repr(exc)[:300]}},
            )
            return {}
        return offsets

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
