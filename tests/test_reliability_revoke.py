"""Offsets are committed on an interval, and on revocation: a member that loses partitions
checkpoints and commits everything it delivered before the new owner reads a point.

Daemon A runs alone with ``commit_interval_s`` far longer than the test, so after its first
batch nothing is committed by the interval. Once A has scored the first part of the feed
(the injected anomalies included), daemon B joins: A must checkpoint and commit on the
revocation, so B restores those states and starts exactly where A stopped. Without that
commit B would re-read A's points from A's first commit and re-send their alerts.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests import daemon_support as ds
from tests import reliability_support as rs

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
KINDS = ("spike", "dip", "level_shift", "normal") * 2  # 8 streams over 4 partitions
SPLIT = 240  # points per stream produced before B joins (the anomalies are at ds.AT = 220)


def test_revocation_commits_what_was_delivered(kafka_bootstrap: str, tmp_path: Path) -> None:
    base = f"rv-{uuid.uuid4().hex[:8]}"
    topics = ds.topics_for(base)
    ds.create_topics(
        kafka_bootstrap,
        {topics["input_topic"]: 4, topics["alert_topic"]: 1, topics["dlq_topic"]: 1},
    )
    streams = ds.make_streams(KINDS, "rv")
    feed = ds.interleave(streams)
    want = rs.reference_ids(feed)
    first = ds.interleave(streams, 0, SPLIT)
    kafka = {**rs.FAST_GROUP, "commit_interval_s": 3600.0}
    ports = ds.new_port(), ds.new_port()
    configs = [
        ds.write_config(tmp_path / f"d{i}.toml", kafka_bootstrap, topics, p, kafka=kafka)
        for i, p in enumerate(ports)
    ]
    group, topic = topics["group_id"], topics["input_topic"]
    with ds.daemon(configs[0], ports[0], tmp_path / "a.log") as a:
        a.wait_ready(partitions=4)
        # In two parts, the second once the first is scored: A's first batch is committed at
        # once, so the second part is A's uncommitted work even when A's whole first part
        # comes in one batch (as after a rejoin, which a stuck rebalance gets).
        half = len(first) // 2
        for part, done in ((first[:half], half), (first[half:], len(first))):
            ds.produce(kafka_bootstrap, topic, part)
            deadline = time.monotonic() + 60
            while a.metric("lstmad_points_total") < done and time.monotonic() < deadline:
                time.sleep(0.2)
            assert a.metric("lstmad_points_total") == done, a.tail()
        ends = rs.end_offsets(kafka_bootstrap, topic)
        before = rs.committed(kafka_bootstrap, group, topic)
        assert before != ends, (before, ends)  # the interval has not committed it all
        with ds.daemon(configs[1], ports[1], tmp_path / "b.log") as b:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                ra, rb = a.ready(), b.ready()
                pa, pb = (ra or {}).get("partitions", []), (rb or {}).get("partitions", [])
                if pa and pb and len(pa) + len(pb) == 4:
                    break
                time.sleep(0.2)
            else:
                raise AssertionError((a.ready(), b.ready(), a.tail(), b.tail()))
            at_handover = rs.committed(kafka_bootstrap, group, topic)
            ds.produce(kafka_bootstrap, topic, ds.interleave(streams, SPLIT))
            docs = rs.alert_docs(kafka_bootstrap, topics["alert_topic"], want, 60)
            restored = b.metric("lstmad_state_restored_streams_total")
            codes = b.stop()[0], a.stop()[0]
    assert codes == (0, 0), a.tail() + b.tail()
    assert at_handover == ends, (before, at_handover, ends)
    assert "committed on revocation" in a.log.read_text(), a.tail()
    assert restored > 0, b.tail()
    got = {d["alert_id"] for d in docs}
    assert got == want, (sorted(want - got), sorted(got - want))
    dups = rs.duplicates(docs)
    assert not dups, dups
    print(
        f"\n[revoke] committed before the join {before}, at the handover {at_handover} "
        f"(end offsets {ends}); {restored:.0f} states restored by the newcomer; "
        f"{len(docs)} alerts = {len(want)} reference ids, 0 duplicates"
    )
