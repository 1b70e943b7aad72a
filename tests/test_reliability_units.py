"""The handover's pieces without a broker: replayed points the restored state holds are
skipped, revoked streams are dropped, evicted ones tombstoned, a state that no longer fits
is not restored; a hot reload of a tampered (checksum-mismatched) model file is refused
while the old model keeps serving."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import onnx
from prometheus_client import CollectorRegistry

from streamer import config, statestore
from streamer.decode import Limits
from streamer.handover import Handover
from streamer.kafka_io import Message
from streamer.metrics import Metrics
from streamer.routing import Router
from streamer.scoring import Scorer
from tests import daemon_support as ds

NOW = time.time()


class Sent:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None, int | None]] = []

    def send(self, topic: str, key: bytes | None, value: bytes | None,
             partition: int | None = None) -> None:  # fmt: skip
        self.records.append((topic, key, value, partition))


def scorer(model: Path = ds.MODEL, reload_poll_s: float = 0.0) -> Scorer:
    cfg = config.from_dict(
        {"model": {"path": str(model), "reload_poll_s": reload_poll_s}}, ds.REPO, env={}
    )
    metrics = Metrics.create(CollectorRegistry())
    return Scorer(Router(cfg.model, cfg.detect, metrics), Limits(max_age_ms=0), metrics)


def msgs(streams: list[ds.Stream], lo: int, hi: int) -> list[Message]:
    out = []
    for j, s in enumerate(streams):
        out.extend(Message("in", j, i, s.name.encode(), s.message(i), 0) for i in range(lo, hi))
    return out


def ids(out: Any) -> list[str]:
    return [doc["alert_id"] for _, doc in out.alerts]


def test_restore_then_replay_skips_applied_points_and_gives_the_same_alerts() -> None:
    streams = ds.make_streams(("spike", "level_shift"), "u")
    ref = scorer()
    want = ids(ref.score(msgs(streams, 0, ds.N), NOW))
    assert len(want) >= 3
    a = scorer()
    first = a.score(msgs(streams, 0, 230), NOW)  # both episodes open here
    sent = Sent()
    h = Handover(a, "st", {}, 1.0)
    assert h.checkpoint(sent, first.touched) == 2
    states = {statestore.decode(v).stream: statestore.decode(v) for _, _, v, _ in sent.records if v}
    assert {s.offset for s in states.values()} == {229} and {p for *_, p in sent.records} == {0, 1}
    # a new owner restores, then the group replays from an older commit (offset 200)
    b = scorer()
    hb = Handover(b, "st", {}, 1.0)
    hb.store.restore = lambda parts, timeout_s: states  # type: ignore[method-assign]
    assert hb.restore([0, 1]) == 2
    again = b.score(msgs(streams, 200, ds.N), NOW)
    assert again.skipped == 2 * 30  # offsets 200..229 of both streams were already applied
    assert ids(first) + ids(again) == want  # no episode re-opened, none lost
    # revocation drops the streams of the lost partition only
    assert b.drop({0}) == [streams[0].name] and b.router.stream_count() == 1
    # eviction: a tombstone per evicted stream, on its partition
    _, gone = b.evict(now=1e12, idle_s=1.0)
    assert gone == {streams[1].name: 1}
    tomb = Sent()
    assert hb.forget(tomb, gone) == 1 and tomb.records == [
        ("st", streams[1].name.encode(), None, 1)
    ]


def test_a_state_that_does_not_fit_is_not_restored() -> None:
    a = scorer()
    streams = ds.make_streams(("normal",), "v")
    a.score(msgs(streams, 0, 60), NOW)
    blob = a.router.routes[0].pipeline.export_state([streams[0].name])[streams[0].name]
    bad = statestore.StreamState(streams[0].name, 0, 59, blob[:-3])
    good = statestore.StreamState("other", 0, 5, blob)
    b = scorer()
    h = Handover(b, "st", {}, 1.0)
    h.store.restore = lambda parts, timeout_s: {bad.stream: bad, good.stream: good}  # type: ignore[method-assign]
    assert h.restore([0]) == 1
    assert b.partition_of("other") == 0 and b.partition_of(streams[0].name) is None
    assert b.restored == {"other": (0, 5)}


def test_tampered_model_on_reload_is_refused_and_the_old_one_serves(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    shutil.copy(ds.MODEL, path)
    s = scorer(path, reload_poll_s=1.0)
    route = s.router.routes[0]
    old = route.model.sha256
    model = onnx.load(path)
    model.graph.node[0].name = "tampered"  # the manifest's sha256 no longer matches
    onnx.save(model, path)
    assert s.router.maybe_reload(now=10.0) == [("default", "refused")]
    assert route.model.sha256 == old
    streams = ds.make_streams(("spike",), "t")
    assert ids(s.score(msgs(streams, 0, ds.N), NOW))  # still scoring with the old model
