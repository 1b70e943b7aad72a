"""bench/loadgen's Java producer sends exactly the messages of bench.kafka_load.messages, paced."""

from __future__ import annotations

import time
import uuid

import pytest

from bench.kafka_load import messages, paced_produce
from tests import daemon_support as ds
from tests import reliability_support as rs

pytestmark = pytest.mark.kafka


def test_paced_producer_sends_the_python_messages_at_the_rate(kafka_bootstrap: str) -> None:
    topic = f"lg-{uuid.uuid4().hex[:8]}"
    ds.create_topics(kafka_bootstrap, {topic: 1})
    start_ms = int(time.time() * 1000) - 60_000
    sent, seconds = paced_produce(kafka_bootstrap, topic, 50, 2, 12, start_ms, 1000.0)
    assert sent == 500
    assert 0.4 <= seconds <= 5.0, seconds  # 500 messages at 1,000/s, paced (not a burst)
    got = rs.topic_feed(kafka_bootstrap, topic)
    assert got == list(messages(50, 12, start_ms, 2))


def test_paced_producer_warms_up_on_another_topic(kafka_bootstrap: str) -> None:
    """The warm-up goes to <topic>.warmup only; the measured topic and the returned count
    and time are those of the measured load alone."""
    topic = f"lgw-{uuid.uuid4().hex[:8]}"
    ds.create_topics(kafka_bootstrap, {topic: 1, f"{topic}.warmup": 1})
    start_ms = int(time.time() * 1000) - 60_000
    t0 = time.monotonic()
    sent, seconds = paced_produce(kafka_bootstrap, topic, 50, 2, 12, start_ms, 1000.0, warm_s=1.0)
    took = time.monotonic() - t0
    assert sent == 500
    assert 0.4 <= seconds <= 5.0, seconds
    assert took >= seconds + 0.9, (took, seconds)  # the warm-up ran first, at the rate
    assert rs.topic_feed(kafka_bootstrap, topic) == list(messages(50, 12, start_ms, 2))
    warm = rs.topic_feed(kafka_bootstrap, f"{topic}.warmup")
    assert warm == list(messages(50, 20, start_ms)), len(warm)  # ceil(1 s x 1000/s / 50)
