"""kill -9 of the daemon at 5 seeded random moments of a live feed with 20 injected anomalies.

After the restarts the set of alert ids equals that of an uninterrupted run over the same
data (the daemon's own Scorer, in-process), and an alert is only ever repeated for a point
after the last commit before a kill (the state checkpoint is acked before each commit and
restored on assignment, so nothing committed is scored twice and no warm-up is needed).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from pathlib import Path

import pytest

from tests import daemon_support as ds
from tests import reliability_support as rs

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
KINDS = ("spike", "dip", "level_shift", "volatility") * 5 + ("normal", "normal")
KILLS, FEED_S = 5, 40.0


def test_kill_9_five_times_gives_the_reference_alerts(kafka_bootstrap: str, tmp_path: Path) -> None:
    rng = random.Random(8)
    base = f"k9-{uuid.uuid4().hex[:8]}"
    topics = ds.topics_for(base)
    ds.create_topics(
        kafka_bootstrap,
        {topics["input_topic"]: 2, topics["alert_topic"]: 1, topics["dlq_topic"]: 1},
    )
    streams = ds.make_streams(KINDS, "k")
    feed = ds.interleave(streams)
    want = rs.reference_ids(feed)
    assert len(want) >= 40, len(want)  # 20 episodes, an open and a resolved each
    port = ds.new_port()
    config = ds.write_config(
        tmp_path / "k.toml", kafka_bootstrap, topics, port, kafka=dict(rs.FAST_GROUP)
    )
    producer = rs.PacedFeed(kafka_bootstrap, topics["input_topic"], feed, FEED_S, ds.N)
    producer.start()
    at_kill: list[dict[int, int]] = []
    logs = []
    for k in range(KILLS):
        logs.append(tmp_path / f"run{k}.log")
        with ds.daemon(config, port, logs[-1]) as d:
            d.wait_ready(partitions=2, timeout_s=60)
            time.sleep(rng.uniform(0.5, 3.0))
            assert d.proc.poll() is None, d.tail()
            d.proc.kill()
            d.proc.wait(timeout=10)
        at_kill.append(rs.committed(kafka_bootstrap, topics["group_id"], topics["input_topic"]))
    logs.append(tmp_path / "last.log")
    with ds.daemon(config, port, logs[-1]) as d:
        d.wait_ready(partitions=2, timeout_s=60)
        assert producer.done.wait(FEED_S + 60) and producer.error is None, producer.error
        rs.wait_all_committed(kafka_bootstrap, topics["group_id"], topics["input_topic"], 90)
        docs = rs.alert_docs(kafka_bootstrap, topics["alert_topic"], want, 30)
        code, _ = d.stop()
    assert code == 0, d.tail()
    got = {doc["alert_id"] for doc in docs}
    assert got == want, (sorted(want - got), sorted(got - want))
    dups = rs.duplicates(docs)
    for doc in dups:  # re-sent only for a point the group had not committed at some kill
        src = doc["source"]
        assert src is not None, doc
        assert any(src["offset"] >= c[src["partition"]] for c in at_kill), (doc, at_kill)
    restores = [
        json.loads(line)
        for log in logs
        for line in log.read_text(errors="replace").splitlines()
        if '"state restored"' in line
    ]
    assert restores and any(r["streams"] > 0 for r in restores)
    print(
        f"\n[kill-9] {KILLS} kills, {len(docs)} alerts read, {len(want)} distinct = reference, "
        f"{len(dups)} duplicates; committed at kills {at_kill}; restores (streams, s): "
        f"{[(r['streams'], r['seconds']) for r in restores]}"
    )
