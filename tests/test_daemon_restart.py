"""SIGTERM, then a restart: every consumed point committed, no alert twice, none lost.

Per-stream state survives the restart (the state topic, streamer.handover), so the second
injection sits 40 points after the restart, less than one window (50): a process that had to
warm up again could not score it, let alone alert::

    daemon A: 0 ........ 220 (anomaly 1) ...... 240 | SIGTERM, exit 0, offsets committed
    daemon B:                                    240 ... 280 (spike 2) ........... 360
"""

from __future__ import annotations

import collections
import time
import uuid
from pathlib import Path
from typing import Any

from tests import daemon_support as ds

KINDS = ("spike", "dip", "level_shift", "normal")
SPLIT, AT2, END = 240, 280, 360


def two_phase(prefix: str) -> list[ds.Stream]:
    t0 = int(time.time() * 1000) - 2 * 86_400_000
    out = []
    for i, kind in enumerate(KINDS):
        values = ds.series(kind, seed=i, n=END, at=ds.AT)
        if kind != "normal":
            values[AT2] += 25.0 if kind != "dip" else -25.0
        out.append(ds.Stream(f"{prefix}{i}.{kind}", kind, values, t0))
    return out


def committed_equals_end(bootstrap: str, group: str, topic: str) -> bool:
    """The group's committed offset is the end of every partition (no group join needed)."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        ends = consumer.end_offsets(tps)
        return all(consumer.committed(tp) == ends[tp] for tp in tps)
    finally:
        consumer.close(autocommit=False)


def test_restart_after_sigterm_loses_nothing_and_repeats_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    base = f"rs-{uuid.uuid4().hex[:8]}"
    topics = ds.topics_for(base)
    ds.create_topics(
        kafka_bootstrap,
        {topics["input_topic"]: 2, topics["alert_topic"]: 1, topics["dlq_topic"]: 1},
    )
    streams = two_phase("r")
    anomalous = [s for s in streams if s.kind != "normal"]
    port = ds.new_port()
    config = ds.write_config(tmp_path / "lstmad.toml", kafka_bootstrap, topics, port)
    phase1 = ds.interleave(streams, 0, SPLIT)
    ds.produce(kafka_bootstrap, topics["input_topic"], phase1)

    with ds.daemon(config, port, tmp_path / "a.log") as a:
        a.wait_ready(partitions=2)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and a.metric("lstmad_points_total") < len(phase1):
            time.sleep(0.2)
        assert a.metric("lstmad_points_total") == len(phase1)
        code, took = a.stop()
    assert code == 0 and took < 15.0, a.tail()
    assert committed_equals_end(kafka_bootstrap, topics["group_id"], topics["input_topic"])
    first = ds.read_topic(
        kafka_bootstrap,
        topics["alert_topic"],
        lambda docs: all(ds.episode_ok(docs, s) for s in anomalous),
        30,
    )
    assert all(ds.episode_ok(first, s) for s in anomalous), first

    phase2 = ds.interleave(streams, SPLIT, END)
    ds.produce(kafka_bootstrap, topics["input_topic"], phase2)
    with ds.daemon(config, port, tmp_path / "b.log") as b:
        b.wait_ready(partitions=2)

        def done(docs: list[dict[str, Any]]) -> bool:
            return all(ds.episode_ok(docs, s, at=AT2) for s in anomalous)

        docs = ds.read_topic(kafka_bootstrap, topics["alert_topic"], done, 60, settle_s=2.0)
        points_b = b.metric("lstmad_points_total")
        code, _ = b.stop()
    assert code == 0, b.tail()
    # B read exactly the uncommitted rest: nothing of phase 1 twice.
    assert points_b == len(phase2)
    ids = collections.Counter(d["alert_id"] for d in docs)
    assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1]
    for s in anomalous:
        assert ds.episode_ok(docs, s, at=ds.AT) and ds.episode_ok(docs, s, at=AT2), s.name
        assert len(ds.opens(docs, s.name)) == 2, [d for d in docs if d["stream"] == s.name]
    assert not [d for d in docs if d["stream"].endswith(".normal")]
