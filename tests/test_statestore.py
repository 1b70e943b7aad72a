"""The compacted state topic against the real broker: last write wins, tombstones delete,
and each input partition restores only its own streams."""

from __future__ import annotations

import json
import struct

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient

from streamer import statestore as ss

pytestmark = pytest.mark.kafka


def test_codec_round_trip_and_rejects_garbage() -> None:
    s = ss.StreamState("host1.cpu", 3, 41, b"\x00\x01binary")
    assert ss.decode(ss.encode(s)) == s
    with pytest.raises(ss.StateError, match="header"):
        ss.decode(b"nope")
    with pytest.raises(ss.StateError, match="unreadable"):
        ss.decode(ss.MAGIC + b"\x00\x00\x00\x02{]")


def test_the_header_is_the_json_the_previous_encoder_wrote() -> None:
    """States written before the faster header encoding must read back, and vice versa."""
    for name in ("host1.cpu", 'q"uote\\back', "unicodé.流", "ctl\x01\n"):
        s = ss.StreamState(name, 7, 2**40, b"blob")
        header = json.dumps({"stream": name, "partition": 7, "offset": 2**40}).encode()
        assert ss.encode(s) == ss.MAGIC + struct.pack(">I", len(header)) + header + b"blob"
        assert ss.decode(ss.encode(s)) == s


def test_checkpoint_restore_per_partition(kafka_bootstrap: str, topic_name: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    ss.ensure_topic(admin, topic_name, partitions=3)
    ss.ensure_topic(admin, topic_name, partitions=3)  # idempotent
    (desc,) = admin.describe_topics([topic_name])
    admin.close()
    assert len(desc["partitions"]) == 3

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    store = ss.StateStore(topic_name, producer, {"bootstrap_servers": kafka_bootstrap})
    first = [ss.StreamState(f"s{i}", i % 3, 10 + i, bytes([i])) for i in range(9)]
    later = [ss.StreamState("s0", 0, 99, b"newer"), ss.StreamState("s4", 1, 98, b"newer4")]
    for f in store.checkpoint(first) + store.checkpoint(later) + store.forget({"s3": 0}):
        f.get(timeout=30)
    producer.close()

    got = store.restore([0, 1])
    # partition 0 holds s0 s3 s6, partition 1 holds s1 s4 s7; s3 was deleted; s0/s4 rewritten
    assert sorted(got) == ["s0", "s1", "s4", "s6", "s7"]
    assert got["s0"] == later[0] and got["s4"] == later[1]
    assert got["s6"].offset == 16 and got["s6"].blob == bytes([6])
    assert store.restore([]) == {}
    assert sorted(store.restore([2])) == ["s2", "s5", "s8"]
