"""Keyed outputs on the real broker: ``KafkaIO.send`` picks each key's partition itself
(remembered per key) and must put every record where kafka-python's default partitioner
would, also after the topic grows."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewPartitions, NewTopic
from prometheus_client import CollectorRegistry

from streamer.kafka_config import KafkaConfig
from streamer.kafka_io import KafkaIO
from streamer.metrics import Metrics

pytestmark = pytest.mark.kafka

KEYS = [b"host-%d.cpu" % i for i in range(300)] + [f"ünï-{i}".encode() for i in range(20)]


def partitions_by_key(bootstrap: str, topic: str, n: int) -> dict[bytes, set[int]]:
    """Every key of the first ``n`` records of ``topic`` -> the partitions it is in."""
    from kafka.structs import TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    got: dict[bytes, set[int]] = {}
    seen = 0
    end = time.monotonic() + 60
    try:
        c.assign([TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic))])
        c.seek_to_beginning()
        while seen < n and time.monotonic() < end:
            for recs in c.poll(timeout_ms=200).values():
                for r in recs:
                    got.setdefault(r.key, set()).add(r.partition)
                    seen += 1
        assert seen == n, (seen, n)
        return got
    finally:
        c.close()


def send_both(io: KafkaIO, raw: Any, mine: str, theirs: str, keys: list[bytes]) -> None:
    for key in keys:
        io.send(mine, key, b"v")
        raw.send(theirs, key=key, value=b"v")  # kafka-python's own choice
    io.deliver(30)
    raw.flush(30)


def test_keyed_sends_go_where_kafka_pythons_partitioner_puts_them(kafka_bootstrap: str) -> None:
    base = f"ks-{uuid.uuid4().hex[:8]}"
    mine, theirs = f"{base}-mine", f"{base}-theirs"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(mine, 5, 1), NewTopic(theirs, 5, 1)])
    cfg = KafkaConfig(bootstrap_servers=(kafka_bootstrap,), input_topic=base,
                      metadata_max_age_ms=500)  # fmt: skip
    io = KafkaIO(cfg, Metrics.create(CollectorRegistry()))
    io._producer = io._new_producer()  # the producer alone: no consumer group needed here
    raw = KafkaProducer(bootstrap_servers=kafka_bootstrap, metadata_max_age_ms=500)
    probes = 0
    try:
        send_both(io, raw, mine, theirs, KEYS)
        first = partitions_by_key(kafka_bootstrap, mine, len(KEYS))
        assert first == partitions_by_key(kafka_bootstrap, theirs, len(KEYS))
        assert {len(v) for v in first.values()} == {1} and len(set().union(*first.values())) == 5
        # remembered, not hashed again (the first send waited for the topic's metadata)
        assert len(io._partitions[mine][2]) >= len(KEYS) - 1

        admin.create_partitions({mine: NewPartitions(8), theirs: NewPartitions(8)})
        end = time.monotonic() + 30
        while time.monotonic() < end and not (
            len(io._producer._metadata.partitions_for_topic(mine) or ()) == 8
            and len(raw._metadata.partitions_for_topic(theirs) or ()) == 8
        ):
            io.send(mine, b"probe", b"v")  # sends keep the producers' metadata fresh
            raw.send(theirs, key=b"probe", value=b"v")
            probes += 1
            time.sleep(0.2)
        assert len(io._producer._metadata.partitions_for_topic(mine)) == 8
        io.deliver(30)
        raw.flush(30)
        # The same keys again, and new ones: the remembered partitions are for 5, not 8.
        send_both(io, raw, mine, theirs, KEYS + [b"after-%d" % i for i in range(300)])
        total = 2 * len(KEYS) + 300 + probes
        after_mine = partitions_by_key(kafka_bootstrap, mine, total)
        after_theirs = partitions_by_key(kafka_bootstrap, theirs, total)
        del after_mine[b"probe"], after_theirs[b"probe"]
        assert after_mine == after_theirs
        assert any(len(v) == 2 for v in after_mine.values())  # some keys moved with growth
    finally:
        io.close(timeout_s=5)
        raw.close()
        admin.close()
