"""Two daemons in one consumer group split the partitions and alert once per anomaly.

Both daemons join before any data is produced, so no partition changes owner mid-stream
(a handover without the state topic of issue 8 would need a fresh warm-up on the new owner).
"""

from __future__ import annotations

import collections
import time
import uuid
from pathlib import Path
from typing import Any

from tests import daemon_support as ds

KINDS = ("spike", "dip", "level_shift", "normal") * 4  # 16 streams over 4 partitions


def test_two_daemons_split_partitions_and_alert_exactly_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    base = f"gr-{uuid.uuid4().hex[:8]}"
    topics = ds.topics_for(base)
    ds.create_topics(
        kafka_bootstrap,
        {topics["input_topic"]: 4, topics["alert_topic"]: 1, topics["dlq_topic"]: 1},
    )
    streams = ds.make_streams(KINDS, "g")
    anomalous = [s for s in streams if s.kind != "normal"]
    ports = ds.new_port(), ds.new_port()
    configs = [
        ds.write_config(tmp_path / f"d{i}.toml", kafka_bootstrap, topics, p)
        for i, p in enumerate(ports)
    ]
    with (
        ds.daemon(configs[0], ports[0], tmp_path / "d0.log") as a,
        ds.daemon(configs[1], ports[1], tmp_path / "d1.log") as b,
    ):
        a.wait_ready()
        b.wait_ready()
        deadline = time.monotonic() + 60
        split: tuple[list[str], list[str]] = ([], [])
        while time.monotonic() < deadline:
            ra, rb = a.ready(), b.ready()
            if ra and rb and len(ra["partitions"]) == 2 and len(rb["partitions"]) == 2:
                split = (ra["partitions"], rb["partitions"])
                break
            time.sleep(0.2)
        assert split[0] and not set(split[0]) & set(split[1]), (a.ready(), b.ready())

        feed = ds.interleave(streams)
        ds.produce(kafka_bootstrap, topics["input_topic"], feed)

        def done(docs: list[dict[str, Any]]) -> bool:
            return all(ds.episode_ok(docs, s) for s in anomalous)

        docs = ds.read_topic(kafka_bootstrap, topics["alert_topic"], done, 60, settle_s=3.0)
        points = a.metric("lstmad_points_total"), b.metric("lstmad_points_total")
        codes = a.stop()[0], b.stop()[0]
    assert codes == (0, 0), a.tail() + b.tail()
    assert all(p > 0 for p in points) and sum(points) == len(feed), points
    ids = collections.Counter(d["alert_id"] for d in docs)
    assert max(ids.values()) == 1
    for s in anomalous:
        assert ds.episode_ok(docs, s), s.name
        assert len(ds.opens(docs, s.name)) == 1, [d for d in docs if d["stream"] == s.name]
    assert not [d for d in docs if d["stream"].endswith(".normal")]
