"""100,000 malformed messages mixed into a valid feed, through the real broker and daemon.

Zero crashes, every malformed message in the dead-letter topic with a reason (counted by
its source offset), and the valid points' alerts identical to a clean run's. The bad
messages are drawn from a pool built by tests.test_daemon_hostile.hostile (every family of
bad input, a few of them over max_message_bytes), so producing them stays fast.
"""

from __future__ import annotations

import collections
import random
import time
import uuid
from pathlib import Path

import pytest

from streamer.metrics import INVALID_REASONS
from tests import daemon_support as ds
from tests import reliability_support as rs
from tests.test_daemon_hostile import hostile

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
BAD, POOL = 100_000, 3000
KINDS = ("spike", "dip", "level_shift", "volatility", "normal")


def test_100k_malformed_all_dead_lettered_alerts_unchanged(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    rng = random.Random(100)
    now_ms = int(time.time() * 1000)
    topics = ds.topics_for(f"mf-{uuid.uuid4().hex[:8]}")
    ds.create_topics(
        kafka_bootstrap,
        {topics["input_topic"]: 4, topics["alert_topic"]: 1, topics["dlq_topic"]: 4},
    )
    streams = ds.make_streams(KINDS, "m")
    clean = ds.interleave(streams)
    want = rs.reference_ids(clean)
    pool = [hostile(rng, now_ms) for _ in range(POOL)]
    pool = [m for m in pool if len(m) <= 65_536] + [m for m in pool if len(m) > 65_536][:2]
    bad_positions = sorted(rng.sample(range(len(clean) + BAD), BAD))
    mixed: list[tuple[bytes, bytes]] = []
    it = iter(clean)
    bad_set = set(bad_positions)
    for i in range(len(clean) + BAD):
        if i in bad_set:
            mixed.append((bytes([rng.randrange(256), rng.randrange(256)]), rng.choice(pool)))
        else:
            mixed.append(next(it))
    port = ds.new_port()
    config = ds.write_config(
        tmp_path / "m.toml", kafka_bootstrap, topics, port, kafka={"max_poll_records": 20_000}
    )
    t0 = time.monotonic()
    ds.produce(kafka_bootstrap, topics["input_topic"], mixed)
    produced_s = time.monotonic() - t0
    with ds.daemon(config, port, tmp_path / "m.log") as d:
        d.wait_ready(partitions=4)
        t1 = time.monotonic()
        rs.wait_all_committed(kafka_bootstrap, topics["group_id"], topics["input_topic"], 120)
        consumed_s = time.monotonic() - t1
        dead = ds.read_topic(kafka_bootstrap, topics["dlq_topic"], lambda x: len(x) >= BAD, 60)
        docs = rs.alert_docs(kafka_bootstrap, topics["alert_topic"], want, 30)
        assert d.proc.poll() is None, d.tail()
        points = d.metric("lstmad_points_total")
        code, _ = d.stop()
    assert code == 0, d.tail()
    assert points == len(clean)
    sources = {(x["source"]["partition"], x["source"]["offset"]) for x in dead}
    assert len(sources) == BAD, (len(sources), len(dead))
    reasons = collections.Counter(x["reason"] for x in dead)
    assert set(reasons) <= set(INVALID_REASONS), reasons
    assert {x["alert_id"] for x in docs} == want
    print(
        f"\n[malformed] {BAD} bad + {len(clean)} valid: produced in {produced_s:.1f}s, "
        f"consumed and committed in {consumed_s:.1f}s, {len(dead)} dead letters "
        f"({len(sources)} distinct sources), reasons {dict(reasons.most_common())}, "
        f"{len(want)} alerts = clean run"
    )
