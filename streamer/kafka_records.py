"""A faster reader of Kafka's record batches for kafka-python's consumer.

kafka-python parses every fetched record in Python: per record, a ``DefaultRecord`` object
built from seven calls to ``decode_varint``, a dozen property look-ups on its batch header,
two deserializer calls and a header-size sum, then a ``ConsumerRecord``. In the daemon's
profile that is a third of the loop's time (``bench/throughput.py --profile``).
:func:`install` replaces ``Fetcher.PartitionRecords._unpack_records``, the generator that
does it, by one that reads the v2 batch format (Kafka 0.11+) itself, with the single-byte
varints inline and the batch header read once. It yields the same ``ConsumerRecord``s, with
the same bookkeeping (``next_fetch_offset``, ``records_read``, ``bytes_read``) and the same
errors: the batch CRC is checked as before, and a record that does not add up to its
length, or bytes left after a batch's last record, raise ``CorruptRecordError``.

Anything else goes through kafka-python's own generator, unchanged: key or value
deserializers, ``read_committed`` consumers (aborted transactions), and older batch formats
within a fetch. Control batches (transaction markers) are skipped as kafka-python skips
them. The reader depends on kafka-python internals, so it is installed only for the exact
version pinned in ``pyproject.toml``; any other version keeps its own reader (with a log
line), which is slower, not wrong. ``tests/test_kafka_records.py`` checks that both readers
give the same records against the real broker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import kafka
import kafka.errors as errors
from kafka.consumer.fetcher import ConsumerRecord, Fetcher
from kafka.protocol.consumer import IsolationLevel
from kafka.record.util import decode_varint

log = logging.getLogger("lstmad.kafka")

PINNED = "3.0.12"  # the kafka-python whose internals this reads (pyproject.toml)
_original: Any = None


def install() -> bool:
    """Use the fast reader in every kafka-python consumer of this process (idempotent);
    False if this kafka-python is not the pinned one (its own reader stays)."""
    global _original
    if _original is not None:
        return True
    if kafka.__version__ != PINNED:
        log.warning(
            "kafka-python is not the pinned version: its own, slower record reader is used",
            extra={"fields": {"version": kafka.__version__, "pinned": PINNED}},
        )
        return False
    _original = Fetcher.PartitionRecords._unpack_records
    Fetcher.PartitionRecords._unpack_records = _unpack_records
    return True


def use(reader: str) -> None:
    """``[kafka] record_reader``: "lstmad" installs this reader, "kafka-python" keeps (or
    puts back) kafka-python's own."""
    if reader == "lstmad":
        install()
    else:
        uninstall()


def uninstall() -> None:
    """kafka-python's own reader again (for tests that compare the two)."""
    global _original
    if _original is not None:
        Fetcher.PartitionRecords._unpack_records = _original
        _original = None


def _unpack_records(
    self: Any, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any
) -> Iterator[Any]:
    """``Fetcher.PartitionRecords._unpack_records`` for v2 batches (see the module doc)."""
    if (
        key_deserializer is not None
        or value_deserializer is not None
        or self.isolation_level == IsolationLevel.READ_COMMITTED
    ):
        yield from _original(self, tp, records, key_deserializer, value_deserializer)
        return
    topic, partition = tp.topic, tp.partition
    try:
        batch = records.next_batch()
        last_batch = None
        while batch is not None:
            last_batch = batch
            if self.check_crcs and not batch.validate_crc():
                raise errors.CorruptRecordError(
                    f"Record batch for partition {tp} at offset {batch.base_offset} "
                    "failed crc check"
                )
            if batch.magic != 2:
                yield from _legacy_batch(self, tp, batch)
                batch = records.next_batch()
                continue
            self.leader_epoch = epoch = batch.leader_epoch
            if batch.is_control_batch:
                self.next_fetch_offset = batch.next_offset
                batch = records.next_batch()
                continue
            batch._maybe_uncompress()
            buf = batch._buffer
            pos = batch._pos
            base = batch.base_offset
            ts_type = batch.timestamp_type
            append_ts = batch.max_timestamp if ts_type == batch.LOG_APPEND_TIME else None
            first_ts = batch.first_timestamp
            view = memoryview(buf)
            try:
                # Each single-byte varint is decoded inline, deliberately repeated: a helper
                # call per varint made the reader 0.4 µs a record (18%) slower.
                for _ in range(batch._num_records):
                    b = buf[pos]
                    if b < 0x80:
                        length, pos = (b >> 1) ^ -(b & 1), pos + 1
                    else:
                        length, pos = _varint(buf, pos)
                    start = pos
                    b = buf[pos]  # attributes, unused (as in kafka-python)
                    if b < 0x80:
                        pos += 1
                    else:
                        _, pos = _varint(buf, pos)
                    b = buf[pos]
                    if b < 0x80:
                        ts_delta, pos = (b >> 1) ^ -(b & 1), pos + 1
                    else:
                        ts_delta, pos = _varint(buf, pos)
                    b = buf[pos]
                    if b < 0x80:
                        off_delta, pos = (b >> 1) ^ -(b & 1), pos + 1
                    else:
                        off_delta, pos = _varint(buf, pos)
                    b = buf[pos]
                    if b < 0x80:
                        key_len, pos = (b >> 1) ^ -(b & 1), pos + 1
                    else:
                        key_len, pos = _varint(buf, pos)
                    if key_len >= 0:
                        key = bytes(view[pos : pos + key_len])
                        pos += key_len
                    else:
                        key = None
                    b = buf[pos]
                    if b < 0x80:
                        value_len, pos = (b >> 1) ^ -(b & 1), pos + 1
                    else:
                        value_len, pos = _varint(buf, pos)
                    if value_len >= 0:
                        value = bytes(view[pos : pos + value_len])
                        pos += value_len
                    else:
                        value = None
                    b = buf[pos]
                    if b < 0x80:
                        n_headers, pos = (b >> 1) ^ -(b & 1), pos + 1
                    else:
                        n_headers, pos = _varint(buf, pos)
                    headers: list[tuple[str, bytes | None]] = []
                    header_size = -1
                    if n_headers:
                        pos, header_size = _headers(buf, view, pos, n_headers, headers)
                    if pos - start != length:
                        raise errors.CorruptRecordError(
                            f"Invalid record size: expected to read {length} bytes in record "
                            f"payload, but instead read {pos - start}"
                        )
                    offset = base + off_delta
                    self.records_read += 1
                    self.bytes_read += length
                    self.next_fetch_offset = offset + 1
                    yield ConsumerRecord(
                        topic, partition, epoch, offset,
                        first_ts + ts_delta if append_ts is None else append_ts, ts_type,
                        key, value, headers, None,
                        -1 if key is None else key_len, -1 if value is None else value_len,
                        header_size,
                    )  # fmt: skip
            except (ValueError, IndexError) as err:
                raise errors.CorruptRecordError(f"Found invalid record structure: {err!r}") from err
            finally:
                view.release()
            if pos != len(buf):
                raise errors.CorruptRecordError(
                    f"{len(buf) - pos} unconsumed bytes after all records consumed"
                )
            batch = records.next_batch()
        else:
            # v2 keeps a batch's last offset even when compaction removed its last record:
            # the next fetch starts after the batch (as kafka-python does).
            if last_batch and last_batch.magic == 2:
                self.next_fetch_offset = last_batch.next_offset
            self.drain()
    except StopIteration as exc:  # a generator must not leak StopIteration (as kafka-python)
        log.exception("StopIteration raised unpacking messageset")
        raise RuntimeError("StopIteration raised unpacking messageset") from exc


def _varint(buf: bytearray, pos: int) -> tuple[int, int]:
    """A zigzag varint at ``pos`` of more than one byte: (value, next position). Two bytes
    (offset and timestamp deltas up to 8,191) inline, longer ones by kafka-python's."""
    b2 = buf[pos + 1]
    if b2 < 0x80:
        r = (buf[pos] & 0x7F) | (b2 << 7)
        return (r >> 1) ^ -(r & 1), pos + 2
    return decode_varint(buf, pos)


def _headers(
    buf: bytearray, view: memoryview, pos: int, n: int, out: list[tuple[str, bytes | None]]
) -> tuple[int, int]:
    """Read ``n`` record headers into ``out``; (next position, kafka-python's header size)."""
    if n < 0:
        raise errors.CorruptRecordError(f"Found invalid number of record headers {n}")
    size = 0
    for _ in range(n):
        k_len, pos = decode_varint(buf, pos)
        if k_len < 0:
            raise errors.CorruptRecordError(f"Invalid negative header key size {k_len}")
        h_key = buf[pos : pos + k_len].decode("utf-8")
        pos += k_len
        v_len, pos = decode_varint(buf, pos)
        if v_len >= 0:
            h_value: bytes | None = bytes(view[pos : pos + v_len])
            pos += v_len
        else:
            h_value = None
        out.append((h_key, h_value))
        size += len(h_key.encode("utf-8")) + (len(h_value) if h_value is not None else 0)
    return pos, size


def _legacy_batch(self: Any, tp: Any, batch: Any) -> Iterator[Any]:
    """One v0/v1 message set, record by record, as kafka-python reads it."""
    for record in batch:
        if self.check_crcs and not record.validate_crc():
            raise errors.CorruptRecordError(
                f"Record for partition {tp} at offset {record.offset} failed crc check"
            )
        key, value = record.key, record.value
        headers = record.headers
        header_size = (
            sum(len(k.encode("utf-8")) + (len(v) if v is not None else 0) for k, v in headers)
            if headers
            else -1
        )
        self.records_read += 1
        self.bytes_read += record.size_in_bytes
        self.next_fetch_offset = record.offset + 1
        yield ConsumerRecord(
            tp.topic, tp.partition, self.leader_epoch, record.offset, record.timestamp,
            record.timestamp_type, key, value, headers, record.checksum,
            len(key) if key is not None else -1, len(value) if value is not None else -1,
            header_size,
        )  # fmt: skip
