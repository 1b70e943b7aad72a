"""Helpers for the fault tests (tests/test_reliability_*.py): the reference alert ids of a feed
computed in-process with the daemon's own Scorer, a paced live feed, committed offsets."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry

from streamer import config
from streamer.decode import Limits
from streamer.kafka_io import Message
from streamer.metrics import Metrics
from streamer.routing import Router
from streamer.scoring import Scorer
from tests import daemon_support as ds

# short sessions: a member killed with -9 leaves the group after 6 s, not 10 s
FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def reference_ids(feed: Iterable[tuple[bytes | None, bytes | None]], batch: int = 2000) -> set[str]:
    """Alert ids of an uninterrupted run over ``feed`` (the daemon's Scorer, default config)."""
    cfg = config.from_dict({"model": {"path": str(ds.MODEL), "reload_poll_s": 0.0}}, ds.REPO, {})
    metrics = Metrics.create(CollectorRegistry())
    k = cfg.kafka
    limits = Limits(k.max_message_bytes, int(k.max_age_s * 1000), int(k.max_ahead_s * 1000))
    scorer = Scorer(Router(cfg.model, cfg.detect, metrics), limits, metrics)
    msgs = [Message("in", 0, i, key, v, 0) for i, (key, v) in enumerate(feed)]
    ids: set[str] = set()
    for lo in range(0, len(msgs), batch):
        out = scorer.score(msgs[lo : lo + batch], time.time())
        ids |= {doc["alert_id"] for _, doc in out.alerts}
    return ids


class PacedFeed(threading.Thread):
    """Produce ``feed`` in order over about ``seconds`` (in ``rounds`` equal slices)."""

    def __init__(self, bootstrap: str, topic: str, feed: list[tuple[bytes, bytes]],
                 seconds: float, rounds: int) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.args = bootstrap, topic, feed, seconds, rounds
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        from kafka import KafkaProducer

        bootstrap, topic, feed, seconds, rounds = self.args
        producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=10, delivery_timeout_ms=180_000,
            request_timeout_ms=5000, reconnect_backoff_max_ms=1000, enable_idempotence=True,
        )  # fmt: skip
        try:
            step = max(1, len(feed) // rounds)
            t0 = time.monotonic()
            for r, lo in enumerate(range(0, len(feed), step)):
                for key, value in feed[lo : lo + step]:
                    producer.send(topic, key=key, value=value)
                wait = t0 + (r + 1) * seconds / rounds - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            producer.flush(timeout=170)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            producer.close(timeout=10)
            self.done.set()


def topic_feed(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[tuple[bytes, bytes]]:
    """What ``topic`` really holds, partition after partition in offset order: the data the
    daemon read (a producer retrying through an outage may have reordered its own sends)."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        got: dict[int, list[tuple[bytes, bytes]]] = {tp.partition: [] for tp in tps}
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"reading {topic} back took over {timeout_s}s"
            for tp, records in consumer.poll(timeout_ms=500, max_records=20_000).items():
                got[tp.partition].extend((r.key, r.value) for r in records)
        return [kv for p in sorted(got) for kv in got[p]]
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition (-1: none), without joining the group."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        out = {}
        for p in parts:
            c = consumer.committed(TopicPartition(topic, p))
            out[p] = -1 if c is None else int(c)
        return out
    finally:
        consumer.close(autocommit=False)


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        return {tp.partition: int(o) for tp, o in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def wait_all_committed(bootstrap: str, group: str, topic: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    ends = end_offsets(bootstrap, topic)
    while time.monotonic() < deadline:
        if committed(bootstrap, group, topic) == ends:
            return
        time.sleep(0.5)
    raise AssertionError(
        f"group {group} committed {committed(bootstrap, group, topic)}, end offsets {ends}"
    )


def alert_docs(
    bootstrap: str, topic: str, want: set[str], timeout_s: float
) -> list[dict[str, Any]]:
    """Every alert of ``topic``, read until the ids cover ``want`` (then 2 s more)."""

    def done(docs: list[dict[str, Any]]) -> bool:
        return want <= {d["alert_id"] for d in docs}

    return ds.read_topic(bootstrap, topic, done, timeout_s, settle_s=2.0)


def duplicates(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    counts = collections.Counter(d["alert_id"] for d in docs)
    seen: set[str] = set()
    out = []
    for d in docs:
        if counts[d["alert_id"]] > 1 and d["alert_id"] in seen:
            out.append(d)
        seen.add(d["alert_id"])
    return out
