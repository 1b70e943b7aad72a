"""1,000 streams interleaved on 4 partitions are all scored by one daemon.

A window-4 persistence model (``tests/test_manifest.write_model``) keeps the feed small:
six points per stream, so every stream gets at least one prediction, published on the
predictions topic, which names each scored stream.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from tests import daemon_support as ds
from tests.test_manifest import write_model

STREAMS, POINTS = 1000, 6


def test_a_thousand_streams_on_four_partitions_are_all_scored(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    base = f"st-{uuid.uuid4().hex[:8]}"
    topics = {**ds.topics_for(base), "predictions_topic": f"{base}-pred"}
    ds.create_topics(
        kafka_bootstrap,
        {
            topics["input_topic"]: 4,
            topics["alert_topic"]: 1,
            topics["dlq_topic"]: 1,
            topics["predictions_topic"]: 4,
        },
    )
    model = write_model(tmp_path / "w4.onnx")
    port = ds.new_port()
    config = ds.write_config(tmp_path / "lstmad.toml", kafka_bootstrap, topics, port)
    config.write_text(config.read_text().replace(str(ds.MODEL), str(model)))
    t0 = int(time.time() * 1000) - 3_600_000
    feed = [
        (
            f"svc{j:04d}.latency".encode(),
            json.dumps(
                {
                    "stream": f"svc{j:04d}.latency",
                    "ts": t0 + i * 1000,
                    "value": 10.0 + (i * 7 + j) % 5,
                }
            ).encode(),
        )
        for i in range(POINTS)
        for j in range(STREAMS)
    ]
    with ds.daemon(config, port, tmp_path / "d.log") as d:
        d.wait_ready(partitions=4)
        ds.produce(kafka_bootstrap, topics["input_topic"], feed)
        expected = STREAMS * (POINTS - 4)
        preds = ds.read_topic(
            kafka_bootstrap, topics["predictions_topic"], lambda xs: len(xs) >= expected, 90
        )
        active = d.metric("lstmad_active_streams")
        points = d.metric("lstmad_points_total")
        assert d.stop()[0] == 0
    probe = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    ends = probe.end_offsets([TopicPartition(topics["input_topic"], p) for p in range(4)])
    probe.close()
    assert all(n > 0 for n in ends.values()), ends  # the keys really spread over 4 partitions
    # Twice in CI (of about ten runs) no prediction arrived in 90 s and the daemon stopped
    # cleanly. The second time its log showed all four partitions revoked 0.6 s after they
    # were assigned and no assignment in the 90 s after (kafka-python 3.0's rejoin waiting
    # out the rebalance timeout). Say then what it scored and print its whole log (pytest
    # shows a failed test's captured output in full).
    if len(preds) != expected:
        print((tmp_path / "d.log").read_text(errors="replace"))
    assert len(preds) == expected, (len(preds), points, active)
    assert len({p["stream"] for p in preds}) == STREAMS
    assert active == STREAMS and points == len(feed)
    assert all(p["schema"] == "lstmad.prediction/v1" and p["predicted"] is not None for p in preds)
