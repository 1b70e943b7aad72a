"""Batch scoring: bulk histogram updates equal per-value observe; routes, labels, rejections."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from streamer.config import ModelConfig, RouteConfig
from streamer.decode import Limits
from streamer.kafka_io import Message
from streamer.metrics import ERROR_BUCKETS, Metrics
from streamer.pipeline import DetectConfig, Points
from streamer.routing import Router
from streamer.scoring import Scorer, observe_many
from tests import daemon_support as ds
from tests.test_manifest import write_model


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for m in registry.collect()
        for s in m.samples
        if not s.name.endswith("_created")
    }


def test_observe_many_equals_observe_one_by_one() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate(
        [rng.exponential(2.0, 5000), np.asarray(ERROR_BUCKETS), [0.0, 1e9, np.inf, np.nan]]
    )
    bulk, loop = CollectorRegistry(), CollectorRegistry()
    hb = Histogram("e", "e", buckets=ERROR_BUCKETS, registry=bulk)
    hl = Histogram("e", "e", buckets=ERROR_BUCKETS, registry=loop)
    observe_many(hb, values)
    for v in values[np.isfinite(values)]:
        hl.observe(float(v))
    a, b = samples(bulk), samples(loop)
    assert a.keys() == b.keys()
    for k in a:
        assert np.isclose(a[k], b[k], rtol=1e-12), k


def messages(streams: list[ds.Stream], lo: int, hi: int) -> list[Message]:
    return [Message("in", 0, n, k, v, 0) for n, (k, v) in enumerate(ds.interleave(streams, lo, hi))]


def test_routes_labels_predictions_and_rejections(tmp_path: Path) -> None:
    small = write_model(tmp_path / "w4.onnx")
    registry = CollectorRegistry()
    metrics = Metrics.create(registry, ["db0.normal"])
    cfg = ModelConfig(path=ds.MODEL, routes=(RouteConfig("db", ("db*",), small),))
    router = Router(cfg, DetectConfig(), metrics)
    scorer = Scorer(
        router, Limits(max_age_ms=0), metrics, predictions=True, labelled_streams=("db0.normal",)
    )
    streams = ds.make_streams(("normal",), "db") + ds.make_streams(("normal",), "web")
    batch = messages(streams, 0, 60)
    batch.append(Message("in", 0, 999, None, streams[0].message(3), 0))  # older than its last
    out = scorer.score(batch, time.time())
    # db0 (window 4) is scored from its 5th point, web0 (window 50) from its 51st.
    per_stream = {s.name: sum(p["stream"] == s.name for _, p in out.predictions) for s in streams}
    assert per_stream == {"db0.normal": 56, "web0.normal": 10}
    assert {p["model"]["route"] for _, p in out.predictions} == {"db", "default"}
    assert [(d["reason"], d["source"]["offset"]) for _, d in out.dead] == [("out_of_order", 999)]
    assert out.points == 120 and out.invalid == {"out_of_order": 1}
    assert registry.get_sample_value("lstmad_predictions_total") == 66
    assert (
        registry.get_sample_value("lstmad_stream_prediction_error_count", {"stream": "db0.normal"})
        == 56
    )
    assert registry.get_sample_value("lstmad_batch_streams_count") == 2  # one per route
    assert registry.get_sample_value("lstmad_inference_seconds_count") == 2
    assert registry.get_sample_value("lstmad_active_streams") == 2
    doc = out.predictions[0][1]
    assert json.loads(json.dumps(doc)) == doc and doc["ts_ms"] == streams[0].ts(4)


def test_applied_sources_drive_drop_and_evict_across_routes(tmp_path: Path) -> None:
    """Each stream's partition of its last applied point sits in its route's pipeline: a
    revocation drops exactly the streams last read from the revoked partitions, in every
    route, and an eviction reports each stream's partition for its tombstone."""
    small = write_model(tmp_path / "w4.onnx")
    metrics = Metrics.create(CollectorRegistry())
    cfg = ModelConfig(path=ds.MODEL, routes=(RouteConfig("db", ("db*",), small),))
    detect = DetectConfig(max_streams=2, initial_capacity=1)  # grows while the test runs
    scorer = Scorer(Router(cfg, detect, metrics), Limits(max_age_ms=0), metrics)
    streams = ds.make_streams(("normal", "spike"), "db") + ds.make_streams(
        ("normal", "spike", "normal"), "web"
    )
    part = {s.name: i % 3 for i, s in enumerate(streams)}  # db0:0 db1:1 web0:2 web1:0 web2:1
    batch = [
        Message("in", part[k.decode()], 100 + n, k, v, 0)
        for n, (k, v) in enumerate(ds.interleave(streams, 0, 10))
    ]
    out = scorer.score(batch, time.time())
    # web2 is the third stream of its route, over the limit of 2: refused, nothing recorded
    assert [d["reason"] for _, d in out.dead][:1] == ["stream_limit"]
    assert scorer.partition_of("web2.normal") is None and "web2.normal" not in out.touched
    last = {k.decode(): 100 + n for n, (k, _) in enumerate(ds.interleave(streams, 0, 10))}
    held = [s.name for s in streams[:4]]
    assert {s: scorer.partition_of(s) for s in held} == {s: part[s] for s in held}
    assert out.touched == {s: (part[s], last[s]) for s in held}
    # keyed by the pipelines' own id objects, not the decoder's per-message copies
    for r, names in ((0, held[:2]), (1, held[2:])):
        index = scorer.router.routes[r].pipeline.index
        assert all(next(k for k in out.touched if k == s) is index.ids[index.get(s)] for s in names)
    # db1 moves to partition 2 (e.g. the input topic grew): the newest point's source wins
    scorer.score([Message("in", 2, 500, b"db1.spike", streams[1].message(10), 0)], time.time())
    assert scorer.partition_of("db1.spike") == 2
    # the recorded source is not part of the exported state
    pipe = scorer.router.routes[0].pipeline
    assert len(pipe.export_state(["db0.normal"])["db0.normal"]) == pipe.codec.nbytes
    assert scorer.drop({0, 1}) == ["db0.normal", "web1.spike"]
    assert scorer.router.stream_count() == 2 and scorer.partition_of("db0.normal") is None
    assert scorer.drop({7}) == []
    out, gone = scorer.evict(now=1e12, idle_s=1.0)
    assert gone == {"db1.spike": 2, "web0.normal": 2} and scorer.router.stream_count() == 0
    # a freed row handed to a new stream holds no stale source
    pipe.process(ds_points("db9.x"), 0.0)
    assert scorer.partition_of("db9.x") is None
    assert scorer.evict(now=1e12, idle_s=1.0)[1] == {"db9.x": -1}


def ds_points(stream: str) -> Points:
    return Points([stream], np.asarray([1], dtype=np.int64), np.zeros((1, 1)))
