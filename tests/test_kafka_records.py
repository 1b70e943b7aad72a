"""The daemon's record reader (``streamer.kafka_records``) against kafka-python's own, on the
real broker: the same ``ConsumerRecord``s, field for field, for every shape of record and
batch the broker serves (keys, null keys and values, headers, multi-byte lengths, offsets
and timestamps, gzip batches, log-append time, transaction markers); the same bookkeeping;
and a corrupt batch is refused as kafka-python refuses it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import CorruptRecordError

from streamer import kafka_records

pytestmark = pytest.mark.kafka


def create(bootstrap: str, name: str, partitions: int = 2, **cfg: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1, topic_configs=cfg)])
    finally:
        admin.close()


def produce_shapes(bootstrap: str, topic: str) -> int:
    """Every record shape, plain and gzip-compressed; returns how many records."""
    n = 0
    base = int(time.time() * 1000) - 100_000
    for compression in (None, "gzip"):
        p = KafkaProducer(bootstrap_servers=bootstrap, compression_type=compression, linger_ms=50)
        for i in range(300):  # > 64 a batch: multi-byte offset and timestamp deltas
            key = None if i % 7 == 0 else (b"k%d" % i) * (1 + i % 40)  # lengths past 63
            value: bytes | None = b'{"stream":"s%d","ts":%d,"value":%d}' % (i, i, i)
            if i % 11 == 0 and key is not None:
                value = None  # a tombstone
            elif i % 13 == 0:
                value = value * 30  # a long value: a 2-byte length varint
            headers = [("h", b"v"), ("ключ", b"")] if i % 5 == 0 else []
            p.send(topic, key=key, value=value, headers=headers, partition=i % 2,
                   timestamp_ms=base + 997 * i)  # fmt: skip
            n += 1
        p.flush()
        p.close()
    return n


def read_all(bootstrap: str, topic: str, total: int, **cfg: Any) -> list[Any]:
    """Every record of the topic, in partition then offset order."""
    from kafka.structs import TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **cfg)
    got: list[Any] = []
    end = time.monotonic() + 60
    try:
        c.assign([TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic))])
        c.seek_to_beginning()
        while len(got) < total and time.monotonic() < end:
            for recs in c.poll(timeout_ms=200).values():
                got.extend(recs)
        assert len(got) == total, (len(got), total)
        return sorted(got, key=lambda r: (r.partition, r.offset))
    finally:
        c.close()


def stock_reader() -> None:
    """kafka-python's own reader, whatever an earlier test in this process installed."""
    from kafka.consumer.fetcher import Fetcher

    kafka_records.uninstall()
    assert Fetcher.PartitionRecords._unpack_records is not kafka_records._unpack_records


def test_the_fast_reader_gives_kafka_pythons_records_field_for_field(
    kafka_bootstrap: str, topic_name: str
) -> None:
    create(kafka_bootstrap, topic_name)
    total = produce_shapes(kafka_bootstrap, topic_name)
    stock_reader()
    stock = read_all(kafka_bootstrap, topic_name, total)
    assert kafka_records.install()
    try:
        mine = read_all(kafka_bootstrap, topic_name, total)
    finally:
        kafka_records.uninstall()
    assert mine == stock
    assert any(r.headers for r in mine) and any(r.key is None for r in mine)
    assert any(r.value is None for r in mine) and max(len(r.value or b"") for r in mine) > 127


def test_log_append_time_and_transaction_markers(kafka_bootstrap: str, topic_name: str) -> None:
    create(kafka_bootstrap, topic_name, 1, **{"message.timestamp.type": "LogAppendTime"})
    p = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"tx-{topic_name}")
    p.init_transactions()
    for round_ in range(2):  # each commit writes a control batch the reader must skip
        p.begin_transaction()
        for i in range(20):
            p.send(topic_name, key=b"k", value=b"%d-%d" % (round_, i))
        p.commit_transaction()
    p.close()
    stock_reader()
    stock = read_all(kafka_bootstrap, topic_name, 40)
    assert kafka_records.install()
    try:
        mine = read_all(kafka_bootstrap, topic_name, 40)
        # after the last record the fetcher steps over the marker and reads nothing more
        again = read_all(kafka_bootstrap, topic_name, 40, isolation_level="read_committed")
    finally:
        kafka_records.uninstall()
    assert mine == stock and again == stock
    assert stock[0].timestamp_type == 1  # log-append time: the broker's, one per batch
    assert [r.offset for r in mine] == [*range(20), *range(21, 41)]  # offset 20: a marker


@pytest.mark.parametrize("fast", [False, True], ids=["kafka-python", "fast"])
def test_a_corrupt_batch_is_refused_by_both_readers(fast: bool) -> None:
    from kafka.consumer.fetcher import Fetcher
    from kafka.record import MemoryRecords
    from kafka.record.default_records import DefaultRecordBatchBuilder
    from kafka.structs import TopicPartition

    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                  batch_size=1 << 20)  # fmt: skip
    for i in range(5):
        b.append(i, timestamp=1000 + i, key=b"k", value=b"v%d" % i, headers=[])
    good = bytes(b.build())
    tp = TopicPartition("t", 0)

    def read(data: bytes, check_crcs: bool = True) -> list[Any]:
        stock_reader()
        if fast:
            assert kafka_records.install()
        try:
            pr = Fetcher.PartitionRecords(0, tp, MemoryRecords(data), check_crcs=check_crcs)
            return list(pr.take())
        finally:
            kafka_records.uninstall()

    assert [r.value for r in read(good)] == [b"v%d" % i for i in range(5)]
    flipped = bytearray(good)
    flipped[-1] ^= 0xFF  # the last value byte: the CRC no longer matches
    with pytest.raises(CorruptRecordError, match="crc"):
        read(bytes(flipped))
    # Without the CRC check, a record whose length does not add up is still refused.
    short = bytearray(good)
    short[61] = 2 * 3  # the first record's length varint (zigzag): 3 bytes, not ~12
    with pytest.raises(CorruptRecordError):
        read(bytes(short), check_crcs=False)


@pytest.mark.parametrize("reader", ["lstmad", "kafka-python"])
def test_the_daemons_consumer_uses_the_configured_reader(kafka_bootstrap: str, reader: str) -> None:
    from kafka.consumer.fetcher import Fetcher
    from prometheus_client import CollectorRegistry

    from streamer.kafka_config import KafkaConfig
    from streamer.kafka_io import KafkaIO
    from streamer.metrics import Metrics

    topic = f"rr-{reader}-{time.monotonic_ns()}"
    create(kafka_bootstrap, topic, 1)
    cfg = KafkaConfig(bootstrap_servers=(kafka_bootstrap,), input_topic=topic, record_reader=reader)
    io = KafkaIO(cfg, Metrics.create(CollectorRegistry()))
    io.open()
    try:
        fast = Fetcher.PartitionRecords._unpack_records is kafka_records._unpack_records
        assert fast == (reader == "lstmad")
    finally:
        io.close(timeout_s=5)
        kafka_records.uninstall()
