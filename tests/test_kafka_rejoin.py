"""``KafkaIO.rejoin`` on the real broker: the way out of a rebalance that never completes.

The new consumer is a new member of the group: it takes the partitions back, the listener
reports the revocation and the new assignment in order, and it reads on from the committed
offsets, so nothing committed is read twice and nothing after it is skipped.
"""

from __future__ import annotations

import time
import uuid

import pytest
from prometheus_client import CollectorRegistry

from streamer.kafka_config import KafkaConfig
from streamer.kafka_io import Batch, KafkaIO
from streamer.metrics import Metrics
from tests import daemon_support as ds

pytestmark = pytest.mark.kafka


def points(lo: int, hi: int) -> list[tuple[bytes, bytes]]:
    return [(b"s%d" % (i % 4), b'{"stream":"s","ts":%d,"value":1}' % i) for i in range(lo, hi)]


def settle(io: KafkaIO, quiet_s: float = 3.0, timeout_s: float = 60.0) -> None:
    """Poll until the group is stable: assigned, and no rebalance for ``quiet_s``: without a
    commit, a rebalance in the middle of a read would read twice. A rejoin that hangs is
    replaced after 10 s, as the daemon does."""
    end, seen, quiet_from, pending_from = time.monotonic() + timeout_s, -1, 0.0, None
    while time.monotonic() < end:
        io.poll(200)
        now = time.monotonic()
        if len(io.rebalance_events) != seen:
            seen, quiet_from = len(io.rebalance_events), now
        pending_from = (pending_from or now) if io.rebalancing else None
        if pending_from is not None and now - pending_from > 10:
            io.rejoin()
            pending_from = None
        elif not io.rebalancing and io.assignment() and now - quiet_from >= quiet_s:
            return
    raise AssertionError(f"group not stable in {timeout_s} s: {io.rebalance_events}")


def poll_all(io: KafkaIO, n: int, timeout_s: float = 30.0) -> Batch:
    out = Batch()
    end = time.monotonic() + timeout_s
    while len(out.messages) < n and time.monotonic() < end:
        b = io.poll(200)
        out.messages += b.messages
        out.next_offsets.update(b.next_offsets)
    assert len(out.messages) == n, (len(out.messages), n)
    return out


def new_member(bootstrap: str, prefix: str) -> tuple[str, KafkaIO]:
    """A fresh two-partition topic and an opened KafkaIO in a group of its own."""
    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    ds.create_topics(bootstrap, {topic: 2})
    cfg = KafkaConfig(bootstrap_servers=(bootstrap,), input_topic=topic, group_id=f"g-{topic}")
    io = KafkaIO(cfg, Metrics.create(CollectorRegistry()))
    io.open()
    return topic, io


def test_a_new_member_is_assigned_once_not_revoked_and_assigned_again(
    kafka_bootstrap: str,
) -> None:
    """kafka-python 3.0 assigned from a view of the topic taken before ``subscribe()``; the
    first metadata response then revoked the whole assignment and rejoined (7 of 8 probes,
    and a rejoin that stalls now and then: see ``KafkaIO._wait_for_topic_metadata``)."""
    for run in range(3):
        _, io = new_member(kafka_bootstrap, "rj1")
        try:
            end = time.monotonic() + 30
            while not io.assignment() and time.monotonic() < end:
                io.poll(200)
            quiet = time.monotonic() + 3  # the revocation came within half a second
            while time.monotonic() < quiet:
                io.poll(200)
            # the eager protocol reports an empty revocation before a member's first join
            assert io.rebalance_events == [("revoked", []), ("assigned", [0, 1])], run
        finally:
            io.close(timeout_s=5)


def test_rejoin_is_a_new_member_that_reads_on_from_the_committed_offsets(
    kafka_bootstrap: str,
) -> None:
    topic, io = new_member(kafka_bootstrap, "rj")
    try:
        settle(io)
        assert io.rebalance_events[-1] == ("assigned", [0, 1])
        ds.produce(kafka_bootstrap, topic, points(0, 100))
        first = poll_all(io, 100)
        assert io.commit(first.next_offsets)
        member = io._consumer._coordinator._generation.member_id  # the pin keeps this stable
        io.rebalance_events.clear()

        io.rejoin()
        # the old member's partitions revoked on close, then the new member's join
        assert io.rebalance_events == [("revoked", [0, 1])]
        settle(io)
        assert io.rebalance_events[1] == ("revoked", [])  # the new member's first join
        assert io.rebalance_events[-1] == ("assigned", [0, 1])
        assert io._consumer._coordinator._generation.member_id != member
        assert io.rebalancing is False
        assert io.assignment() == [(topic, 0), (topic, 1)]
        ds.produce(kafka_bootstrap, topic, points(100, 150))
        after = poll_all(io, 50)
        want = sorted(v for _, v in points(100, 150))
        assert sorted(m.value for m in after.messages) == want  # none of the committed 100
    finally:
        io.close(timeout_s=5)


def test_an_asynchronous_commit_is_answered_in_a_later_poll_and_kept_by_the_group(
    kafka_bootstrap: str,
) -> None:
    """The loop's periodic commit does not wait for the coordinator; its answer is counted
    in a later poll, and the group holds the offsets, as after a synchronous commit."""
    from tests.reliability_support import committed

    topic, io = new_member(kafka_bootstrap, "ac")
    ok = io.metrics.commits.labels("ok")
    try:
        settle(io)
        ds.produce(kafka_bootstrap, topic, points(0, 40))
        batch = poll_all(io, 40)
        before = ok._value.get()
        assert io.commit(batch.next_offsets, wait=False)
        assert ok._value.get() == before  # sent, not answered yet
        end = time.monotonic() + 30
        while ok._value.get() == before and time.monotonic() < end:
            io.poll(100)
        assert ok._value.get() == before + 1
        assert not io.uncommitted
        want = {p: o for (_, p), o in batch.next_offsets.items()}
        assert committed(kafka_bootstrap, f"g-{topic}", topic) == want
    finally:
        io.close(timeout_s=5)


def test_a_refused_asynchronous_commit_is_retried_only_where_nothing_newer_was_sent() -> None:
    """Retrying an older commit over a newer one would move the group's offset backwards."""
    from kafka.errors import CommitFailedError
    from kafka.structs import OffsetAndMetadata, TopicPartition

    io = KafkaIO(KafkaConfig(bootstrap_servers=("127.0.0.1:1",), input_topic="t"),
                 Metrics.create(CollectorRegistry()))  # fmt: skip
    io._commit_sent = {("t", 0): 10, ("t", 1): 30}  # partition 1 committed again since
    refused = {TopicPartition("t", p): OffsetAndMetadata(o, "", -1) for p, o in ((0, 10), (1, 20))}
    io._committed(refused, CommitFailedError("rebalanced"))
    assert io.uncommitted == {("t", 0): 10}
    assert io.metrics.commits.labels("failed")._value.get() == 1
    io._commit_sent.clear()  # what a revocation does: nothing of before it is retried
    io.uncommitted.clear()
    io._committed(refused, CommitFailedError("rebalanced"))
    assert io.uncommitted == {}
