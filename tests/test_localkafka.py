"""The test harness's own broker, exercised through kafka-python exactly as the daemon uses it."""

from __future__ import annotations

import json
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

pytestmark = pytest.mark.kafka


def test_admin_creates_topics_with_partitions(kafka_bootstrap: str, topic_name: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic_name, num_partitions=4, replication_factor=1)])
        deadline = time.monotonic() + 30
        partitions: set[int] = set()
        while time.monotonic() < deadline and len(partitions) < 4:
            (desc,) = admin.describe_topics([topic_name])
            partitions = {p["partition_index"] for p in desc["partitions"]}
            time.sleep(0.1)
        assert partitions == {0, 1, 2, 3}
        assert topic_name in admin.list_topics()
    finally:
        admin.close()


def test_produce_then_consume_round_trip(kafka_bootstrap: str, topic_name: str) -> None:
    sent = [
        {"stream": f"s{i % 3}", "ts": 1_700_000_000_000 + i, "value": i / 10} for i in range(50)
    ]
    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        acks="all",
        value_serializer=lambda v: json.dumps(v).encode(),
        key_serializer=str.encode,
    )
    for msg in sent:
        producer.send(topic_name, key=msg["stream"], value=msg)
    producer.flush(timeout=30)
    producer.close()

    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=f"g-{topic_name}",
        value_deserializer=json.loads,
    )
    consumer.subscribe([topic_name])
    got: list[dict[str, object]] = []
    deadline = time.monotonic() + 30
    while len(got) < len(sent) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(r.value for r in records)
    consumer.commit()
    committed = consumer.committed(TopicPartition(topic_name, 0))
    consumer.close()
    assert got == sent  # one partition: order is kept
    assert committed == len(sent)
