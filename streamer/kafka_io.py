"""The thin kafka-python edge: a consumer-group consumer and an acks=all producer.

Nothing here decides anything. :class:`KafkaIO` polls batches as :class:`Message` tuples,
sends outputs and waits for their acknowledgement (:meth:`KafkaIO.deliver` raises
:class:`DeliveryError` if any was not acknowledged), commits explicit offsets, and reports
assignment and lag. Auto-commit is off: the loop commits only what it has delivered.
The producer is idempotent, so its own retries never duplicate an alert.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from streamer.kafka_config import KafkaConfig
from streamer.metrics import Metrics

log = logging.getLogger("lstmad.kafka")

TopicPartition = tuple[str, int]
CONSUMER_RETRY_BACKOFF_MS = 10


class Consumed(Protocol):
    """What the loop reads of one consumed record: kafka-python's ``ConsumerRecord`` as
    polled (no copy per message) or a :class:`Message`. ``timestamp`` is Kafka's (producer
    or log-append) time in epoch milliseconds."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Message:
    """One record built outside Kafka (replay, tests); see :class:`Consumed`."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int


@dataclass
class Batch:
    """One poll: the messages, and per partition the next offset to read (what to commit)."""

    messages: list[Consumed] = field(default_factory=list)
    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)


Record = tuple[str, bytes | None, bytes | None, int | None]  # topic, key, value, partition
# Keys whose partition KafkaIO remembers per topic (about 100 B each); then it starts over.
PARTITION_CACHE_KEYS = 20_000
Sent = list[tuple[Any, Record]]  # (kafka-python's future, the record) per record sent


class DeliveryError(RuntimeError):
    """Outputs were not acknowledged by the broker in time; their inputs must not be committed.

    ``failed`` holds the records that were not acknowledged, for the caller to send again.
    """

    def __init__(self, message: str, failed: list[Record] | None = None) -> None:
        super().__init__(message)
        self.failed = failed or []


def client_options(cfg: KafkaConfig) -> dict[str, Any]:
    """Options shared by consumer and producer: servers, identity, timeouts, SASL/TLS."""
    return {
        "bootstrap_servers": list(cfg.bootstrap_servers),
        "client_id": cfg.client_id,
        "request_timeout_ms": cfg.request_timeout_ms,
        "metadata_max_age_ms": cfg.metadata_max_age_ms,
        **cfg.security_options(),
    }


def _listener(io: KafkaIO) -> Any:
    """Rebalance callbacks. kafka-python runs them on its IO thread while the loop thread is
    blocked in ``poll`` (or ``close``), so the loop's state is quiescent.

    On revocation, first :attr:`KafkaIO.before_revoke` (the daemon: land the batch in
    flight, checkpoint the streams touched since the last commit, wait for the acks through
    the producer's own connection) returns the offsets to commit; they are committed with
    ``commit_async`` (a blocking ``commit`` on the IO thread would deadlock), queued before
    the JoinGroup that follows, on the same coordinator connection, so the broker applies
    it while this member still owns the partitions. A checkpoint or commit that fails is
    given up: the new owner starts from the last successful commit and skips what the
    restored state already holds. Then the change is recorded (``io.rebalance_events``, in
    order) for the loop thread to apply after ``poll`` returns and before it scores
    anything (drop the revoked streams, restore the assigned ones)."""
    from kafka import ConsumerRebalanceListener

    def own(tps: Iterable[Any]) -> list[int]:
        return sorted(tp.partition for tp in tps if tp.topic == io.cfg.input_topic)

    def committed(offsets: Mapping[Any, Any], response: Any) -> None:
        done = {f"{tp.topic}:{tp.partition}": o.offset for tp, o in offsets.items()}
        if isinstance(response, Exception):
            io.metrics.commits.labels("failed").inc()
            log.warning(
                "commit on revocation failed; the new owner re-reads from the last one",
                extra={"fields": {"offsets": done, "error": repr(response)}},
            )
        else:
            io.metrics.commits.labels("ok").inc()
            log.info("committed on revocation", extra={"fields": {"offsets": done}})

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
            revoked = list(revoked)
            io.rebalancing = True
            _log_partitions("partitions revoked", revoked, io)
            offsets = io.before_revoke() if io.before_revoke is not None and revoked else {}
            if offsets:
                io._consumer.commit_async(_offsets(offsets), callback=committed)
            io.uncommitted.clear()
            io._commit_sent.clear()  # an older commit failing now is not retried
            io.rebalance_events.append(("revoked", own(revoked)))

        def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
            assigned = list(assigned)
            io.rebalancing = False
            _log_partitions("partitions assigned", assigned, io)
            io.rebalance_events.append(("assigned", own(assigned)))

    return Listener()


def _offsets(offsets: Mapping[TopicPartition, int]) -> dict[Any, Any]:
    """kafka-python's commit argument for ``next offset to read`` per partition."""
    from kafka.structs import OffsetAndMetadata
    from kafka.structs import TopicPartition as TP

    return {TP(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}


def _log_partitions(what: str, tps: Iterable[Any], io: KafkaIO) -> None:
    parts = sorted(f"{tp.topic}:{tp.partition}" for tp in tps)
    log.info(what, extra={"fields": {"partitions": parts}})
    io.rebalances += 1


def _close_logging(client: str, close: Callable[[], Any]) -> None:
    """``close()``; a failure is logged, not raised: the client is being let go either way."""
    try:
        close()
    except Exception as exc:
        log.warning(f"{client} close failed", extra={"fields": {"error": repr(exc)}})


class KafkaIO:
    def __init__(self, cfg: KafkaConfig, metrics: Metrics):
        self.cfg = cfg
        self.metrics = metrics
        self.rebalances = 0
        self._consumer: Any = None
        self._producer: Any = None
        self._pending: Sent = []
        # topic -> (partition count, sorted partitions, key -> partition): _partition_of
        self._partitions: dict[str, tuple[int, list[int], dict[bytes, int]]] = {}
        self._murmur2: Any = None  # kafka-python's murmur2, set with the producer
        self.broker_ok = False
        # ("assigned" | "revoked", input partitions), appended by the rebalance listener
        self.rebalance_events: list[tuple[str, list[int]]] = []
        # Partitions revoked and none assigned since: the member owns nothing until the
        # rebalance completes, though kafka-python still lists the old assignment.
        self.rebalancing = False
        self.uncommitted: dict[TopicPartition, int] = {}  # a failed commit, retried
        # The newest offset sent in a commit, per partition: a failed asynchronous commit is
        # retried only where no newer one was sent since, so a commit never goes backwards.
        self._commit_sent: dict[TopicPartition, int] = {}
        # Called on revocation (IO thread, loop thread blocked in poll/close): checkpoint what
        # is pending and return the offsets to commit before the partitions go.
        self.before_revoke: Callable[[], dict[TopicPartition, int]] | None = None

    def open(self) -> None:
        self.close(timeout_s=0)  # what a failed earlier attempt left
        self._producer = self._new_producer()
        self._consumer = self._new_consumer()
        self.broker_ok = True

    def rejoin(self) -> None:
        """Replace the consumer by a new member of the group (the producer stays): the way
        out of a rebalance that does not complete. Closing the old consumer revokes its
        partitions as a shutdown does (the listener runs, nothing the loop did not commit
        is committed); the new one joins at its first poll."""
        self._close_consumer()
        self._consumer = self._new_consumer()

    def _close_consumer(self) -> None:
        if self._consumer is not None:
            _close_logging("consumer", lambda: self._consumer.close(autocommit=False))
            self._consumer = None

    def _new_consumer(self) -> Any:
        """A consumer of the input topic in the group, subscribed with the rebalance listener."""
        from kafka import KafkaConsumer

        from streamer import kafka_records

        kafka_records.use(self.cfg.record_reader)
        common = client_options(self.cfg)
        self._consumer = KafkaConsumer(
            group_id=self.cfg.group_id,
            enable_auto_commit=False,
            auto_offset_reset=self.cfg.auto_offset_reset,
            max_poll_records=self.cfg.max_poll_records,
            fetch_max_bytes=self.cfg.fetch_max_bytes,
            max_partition_fetch_bytes=min(self.cfg.fetch_max_bytes, 1_048_576),
            session_timeout_ms=self.cfg.session_timeout_ms,
            heartbeat_interval_ms=self.cfg.heartbeat_interval_ms,
            max_poll_interval_ms=self.cfg.max_poll_interval_ms,
            # kafka-python's poll sleeps retry_backoff_ms whenever it finds no fetch in
            # flight, which happens routinely between two fetch responses: with its 100 ms
            # default every few hundred milliseconds a batch of points waited ~100 ms more
            # (p99 produce->output 240 ms at 12k points/s; see bench/throughput.py).
            retry_backoff_ms=CONSUMER_RETRY_BACKOFF_MS,
            **common,
        )
        self._consumer.subscribe([self.cfg.input_topic], listener=_listener(self))
        self._wait_for_topic_metadata()  # after subscribe(), before the first poll joins
        return self._consumer

    def _new_producer(self) -> Any:
        from kafka import KafkaProducer
        from kafka.partitioner.default import murmur2

        self._murmur2 = murmur2  # the default partitioner's hash, for _partition_of
        return KafkaProducer(
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            batch_size=262_144,  # a burst of dead letters goes out in few large requests
            max_in_flight_requests_per_connection=5,
            # kafka-python requires delivery > linger + request timeout; deliver() waits
            # flush_timeout_s either way and treats anything unacknowledged as a failure.
            delivery_timeout_ms=max(
                int(self.cfg.flush_timeout_s * 1000), self.cfg.request_timeout_ms + 1000
            ),
            # a replacement made while the broker is down fails fast; the loop retries it
            bootstrap_timeout_ms=min(self.cfg.request_timeout_ms, 10_000),
            **client_options(self.cfg),
        )

    def reset_producer(self) -> None:
        """Replace the producer after a delivery failure: one whose batches expired keeps
        idempotence sequence state the broker no longer matches, and its re-sends can stall
        after the broker is back. Unacknowledged records are the caller's to send again."""
        old, self._producer = self._producer, None
        self._pending = []
        if old is not None:
            try:
                old.close(timeout=0)
            except Exception as exc:
                log.debug("producer close failed", extra={"fields": {"error": repr(exc)}})
        self._producer = self._new_producer()  # raises while no broker answers

    def _wait_for_topic_metadata(self, timeout_s: float = 15.0) -> None:
        """Fetch the cluster's metadata, subscribed, until it has the input topic.

        The group's leader records the partitions it assigned as the coordinator last saw
        them, and rejoins as soon as a metadata update differs. kafka-python 3.0 builds that
        view when it is constructed (subscribed to nothing) and then only on a metadata
        response, so a member that joined right after ``subscribe()`` assigned from an empty
        view, and the first metadata response revoked everything and rejoined: within half
        a second, in nearly every start, and in a few starts in a hundred that rejoin then
        stalled until ``[kafka] rejoin_after_s``. ``topics()`` waits for a metadata response,
        which also brings the coordinator's view up to date. A member that joins before the
        topic exists is assigned nothing, so this waits for it too, up to ``timeout_s``; a
        topic created later is picked up by the subscription (``metadata_max_age_ms``).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            if self.cfg.input_topic in self._consumer.topics():
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        log.warning(
            "input topic has no partitions yet; waiting for it to be created",
            extra={"fields": {"topic": self.cfg.input_topic}},
        )

    def poll(self, timeout_ms: int) -> Batch:
        try:
            batches = self._consumer.poll(
                timeout_ms=timeout_ms, max_records=self.cfg.max_poll_records
            )
        except Exception:
            self.broker_ok = False
            self.metrics.kafka_errors.labels("poll").inc()
            raise
        self.broker_ok = True
        out = Batch()
        for tp, records in batches.items():
            out.messages.extend(records)
            if records:  # records of a partition come in offset order
                out.next_offsets[(tp.topic, tp.partition)] = records[-1].offset + 1
        return out

    def reachable(self) -> bool:
        """A connection to at least one broker of the cluster is up (for /readyz).

        kafka-python has no public call for this (``bootstrap_connected`` turns False once
        the bootstrap socket is replaced by broker connections), so this asks its client,
        which the exact pin of kafka-python keeps stable; any surprise falls back to the
        outcome of the last poll.
        """
        client: Any = getattr(self._consumer, "_client", None)
        try:
            return any(client.connected(b.node_id) for b in client.cluster.brokers())
        except Exception:
            return self.broker_ok

    def assignment(self) -> list[TopicPartition]:
        return sorted((tp.topic, tp.partition) for tp in self._consumer.assignment())

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> None:
        """Queue one record (``value`` None: a tombstone; ``partition`` None: by key)."""
        if partition is None and key is not None:
            partition = self._partition_of(topic, key)
        fut = self._producer.send(topic, key=key, value=value, partition=partition)
        self._pending.append((fut, (topic, key, value, partition)))

    def _partition_of(self, topic: str, key: bytes) -> int | None:
        """The partition kafka-python's default partitioner gives ``key`` (murmur2 of the key
        over the topic's sorted partitions), remembered per key while the topic keeps its
        partition count: the hash, in Python, was a third of a keyed send (6-7 µs of 19).
        None while the producer has no metadata for the topic (kafka-python then waits)."""
        parts = self._producer._metadata.partitions_for_topic(topic)
        if not parts:
            return None
        known = self._partitions.get(topic)
        if known is None or known[0] != len(parts):
            known = (len(parts), sorted(parts), {})
            self._partitions[topic] = known
        n, ordered, by_key = known
        p = by_key.get(key)
        if p is None:
            if len(by_key) >= PARTITION_CACHE_KEYS:
                by_key.clear()
            p = by_key[key] = ordered[(self._murmur2(key) & 0x7FFFFFFF) % n]
        return p

    def detach(self) -> Sent:
        """The records sent since the last :meth:`deliver` or detach, as a group whose acks
        are awaited later (:meth:`settled`, ``deliver(sent=...)``) while the loop goes on."""
        sent, self._pending = self._pending, []
        return sent

    @staticmethod
    def settled(sent: Sent) -> bool:
        """Every record of ``sent`` has its answer from the broker (ack or error)."""
        return all(fut.is_done for fut, _ in sent)

    def deliver(self, timeout_s: float, sent: Sent | None = None) -> int:
        """Wait until every output sent since the last call (or the group ``sent``) is
        acknowledged (acks=all).

        Raises :class:`DeliveryError` listing the unacknowledged records if any failed or
        were not acknowledged within ``timeout_s``."""
        if sent is None:
            pending, self._pending = self._pending, []
        else:
            pending = sent
        if not pending:
            return 0
        try:
            self._producer.flush(timeout=timeout_s)
        except Exception as exc:  # KafkaTimeoutError: the futures below say which failed
            log.debug("flush incomplete", extra={"fields": {"error": repr(exc)}})
        deadline = time.monotonic() + timeout_s
        failed: list[Record] = []
        first: Exception | None = None
        for fut, rec in pending:
            try:
                fut.get(timeout=max(0.0, deadline - time.monotonic()))
            except Exception as exc:
                failed.append(rec)
                first = first or exc
        if failed:
            self.metrics.kafka_errors.labels("produce").inc()
            raise DeliveryError(
                f"{len(failed)} of {len(pending)} outputs not acknowledged within "
                f"{timeout_s:.0f}s: {first!r}; their inputs are not committed",
                failed,
            ) from first
        return len(pending)

    def commit(self, offsets: Mapping[TopicPartition, int], wait: bool = True) -> bool:
        """Commit ``next offset to read`` per partition; False if the group refused it.
        ``wait=False``: send the commit and return (True); the answer comes in a later
        ``poll``, and a refusal is retried with the next commit (the loop's periodic commit:
        a synchronous one held it for a round trip to the group coordinator, 10-12 ms)."""
        if not offsets:
            return True
        self.uncommitted.update(offsets)  # a failed commit rides along with the next one
        offsets = dict(self.uncommitted)
        try:
            if wait:
                self._consumer.commit(_offsets(offsets))
            else:
                self._consumer.commit_async(_offsets(offsets), callback=self._committed)
        except Exception as exc:  # e.g. CommitFailedError after a rebalance: re-read later
            self._commit_failed(exc)
            return False
        self.uncommitted.clear()
        self._commit_sent.update(offsets)
        if wait:
            self.metrics.commits.labels("ok").inc()
        return True

    def _committed(self, offsets: Mapping[Any, Any], response: Any) -> None:
        """kafka-python's answer to an asynchronous commit, handed over in a later ``poll``
        or commit (the loop thread's, or the revocation listener's while the loop waits)."""
        if not isinstance(response, Exception):
            self.metrics.commits.labels("ok").inc()
            return
        self._commit_failed(response)
        for tp, o in offsets.items():
            key = (tp.topic, tp.partition)
            if self._commit_sent.get(key) == o.offset:  # nothing newer sent since
                self.uncommitted.setdefault(key, o.offset)

    def _commit_failed(self, exc: BaseException) -> None:
        self.metrics.commits.labels("failed").inc()
        self.metrics.kafka_errors.labels("commit").inc()
        log.warning(
            "offset commit failed; the batch will be re-read (at-least-once)",
            extra={"fields": {"error": repr(exc)}},
        )

    def input_partitions(self) -> int:
        """Partitions of the input topic per the metadata (0 if it does not exist yet)."""
        return len(self._consumer.partitions_for_topic(self.cfg.input_topic) or ())

    def lag(self) -> dict[TopicPartition, int]:
        """Messages behind the high watermark, for partitions that have been fetched."""
        from kafka.structs import TopicPartition as TP

        out: dict[TopicPartition, int] = {}
        for t, p in self.assignment():
            tp = TP(t, p)
            hw = self._consumer.highwater(tp)
            if hw is None:
                continue
            try:
                pos = self._consumer.position(tp, timeout_ms=100)
            except Exception:  # position unknown yet (just assigned)
                continue
            if pos is not None:
                out[(t, p)] = max(0, int(hw) - int(pos))
        return out

    def close(self, timeout_s: float = 10.0) -> None:
        """Close both clients without committing anything the loop did not commit."""
        self._close_consumer()
        if self._producer is not None:
            _close_logging("producer", lambda: self._producer.close(timeout=timeout_s))
            self._producer = None
