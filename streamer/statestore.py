"""Per-stream state on a compacted Kafka topic (the changelog pattern).

Why a Kafka topic and not a local file: the state must follow a partition to whichever
daemon owns it after a rebalance, and survive the loss of a pod's disk. Kafka already
stores the input; a compacted topic keyed by stream keeps the latest state of every stream
for as long as the stream lives, and a tombstone (null value) removes an evicted one.

Co-partitioning: the state of a stream read from input partition *p* is written to state
partition *p* (explicitly, not by key hash), so the owner of input partition *p* restores
exactly the streams it will score by reading state partition *p* from the beginning.

Consistency with offsets: the daemon checkpoints a stream's state (produced and acked) before
it commits the offsets of the points that made it, and every record carries the input offset
of the last point it reflects. After a crash between checkpoint and commit, the replayed
points with an offset at or below that are recognised as already applied and skipped, so
restored state never sees a point twice and the alerts they caused are not sent again.

Record value: ``b"LSTS1" + 4-byte big-endian header length + JSON header + state bytes``;
the header is ``{"stream", "partition", "offset"}`` (offset of the last applied point).
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MAGIC = b"LSTS1"
log = logging.getLogger("lstmad.state")


class StateError(ValueError):
    """A state record that cannot be decoded; the message names the stream and the reason."""


@dataclass(frozen=True)
class StreamState:
    stream: str
    partition: int
    offset: int  # input offset of the last point this state reflects
    blob: bytes  # Pipeline.export_state bytes


def encode(state: StreamState) -> bytes:
    # The same bytes as json.dumps of the header dict, a quarter of its cost (a checkpoint
    # encodes every touched stream in one loop iteration).
    header = b'{"stream": %s, "partition": %d, "offset": %d}' % (
        json.dumps(state.stream).encode(),
        state.partition,
        state.offset,
    )
    return MAGIC + struct.pack(">I", len(header)) + header + state.blob


def decode(value: bytes) -> StreamState:
    if not value.startswith(MAGIC) or len(value) < len(MAGIC) + 4:
        raise StateError("state record has no LSTS1 header")
    (n,) = struct.unpack_from(">I", value, len(MAGIC))
    start = len(MAGIC) + 4
    try:
        header = json.loads(value[start : start + n])
        return StreamState(
            str(header["stream"]),
            int(header["partition"]),
            int(header["offset"]),
            value[start + n :],
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise StateError(f"state record header is unreadable: {exc}") from exc


# A checkpoint per batch rewrites every busy stream often: roll segments every 10 min or
# 64 MiB so the compactor can clean them (it never cleans the active segment), which bounds
# what a restore reads to about the live states plus one segment.
TOPIC_CONFIGS = {
    "cleanup.policy": "compact",
    "min.compaction.lag.ms": "0",
    "segment.ms": "600000",
    "segment.bytes": str(64 * 1024 * 1024),
    "min.cleanable.dirty.ratio": "0.1",
}


def ensure_topic(admin: Any, topic: str, partitions: int) -> None:
    """Create the compacted state topic with ``partitions`` partitions if it does not exist."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    try:
        admin.create_topics(
            [
                NewTopic(
                    topic,
                    num_partitions=partitions,
                    replication_factor=-1,
                    topic_configs=TOPIC_CONFIGS,
                )
            ]
        )
    except TopicAlreadyExistsError:
        return


class StateStore:
    """Checkpoint and restore stream states on ``topic`` with a producer and a client config."""

    def __init__(self, topic: str, producer: Any, client_config: Mapping[str, Any]) -> None:
        self.topic = topic
        self.producer = producer
        self.client_config = dict(client_config)

    def checkpoint(self, states: Iterable[StreamState]) -> list[Any]:
        """Send one record per state (keyed by stream); returns the send futures to await."""
        return [
            self.producer.send(
                self.topic, key=s.stream.encode(), value=encode(s), partition=s.partition
            )
            for s in states
        ]

    def forget(self, streams: Mapping[str, int]) -> list[Any]:
        """Tombstones for evicted streams (stream -> partition)."""
        return [
            self.producer.send(self.topic, key=k.encode(), value=None, partition=p)
            for k, p in streams.items()
        ]

    def restore(self, partitions: Iterable[int], timeout_s: float = 60.0) -> dict[str, StreamState]:
        """The latest state of every stream in the given state partitions (tombstones drop it)."""
        from kafka import KafkaConsumer, TopicPartition

        tps = [TopicPartition(self.topic, p) for p in sorted(set(partitions))]
        if not tps:
            return {}
        consumer = KafkaConsumer(enable_auto_commit=False, group_id=None, **self.client_config)
        try:
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            end = consumer.end_offsets(tps)
            out: dict[str, StreamState] = {}
            deadline = time.monotonic() + timeout_s
            while any(consumer.position(tp) < end[tp] for tp in tps):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"restoring state from {self.topic} took over {timeout_s}s")
                for records in consumer.poll(timeout_ms=500, max_records=10_000).values():
                    for r in records:
                        key = r.key.decode() if r.key else ""
                        if r.value is None:
                            out.pop(key, None)
                            continue
                        try:
                            out[key] = decode(r.value)
                        except StateError as exc:  # that stream warms up again
                            out.pop(key, None)
                            log.warning(
                                "unreadable state record skipped",
                                extra={"fields": {"stream": key, "error": str(exc)}},
                            )
            return out
        finally:
            consumer.close()
