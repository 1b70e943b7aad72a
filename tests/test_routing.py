"""Glob routing to several models, and hot reload that keeps windows and refuses bad files."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import onnx
import pytest
from prometheus_client import CollectorRegistry

from streamer import manifest as mf
from streamer.config import ModelConfig, RouteConfig
from streamer.decode import Limits
from streamer.kafka_io import Message
from streamer.metrics import Metrics
from streamer.pipeline import DetectConfig
from streamer.routing import Router
from streamer.scoring import Scorer
from tests.daemon_support import MODEL
from tests.test_manifest import write_model


def relabel(src: Path, dst: Path, version: str) -> Path:
    """The same graph under a new manifest version: a valid model with another sha256."""
    man, _ = mf.read(src)
    model = onnx.load(src)
    mf.embed(model, dataclasses.replace(man, version=version))
    onnx.save(model, dst)
    return dst


def touch_later(p: Path) -> None:
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def router(
    tmp_path: Path, process: bool = False, **over: object
) -> tuple[Router, CollectorRegistry]:
    registry = CollectorRegistry()
    path = tmp_path / "model.onnx"
    if not path.exists():
        shutil.copy(MODEL, path)
    cfg = ModelConfig(path=path, reload_poll_s=1.0, **over)  # type: ignore[arg-type]
    metrics = Metrics.create(registry)
    return Router(cfg, DetectConfig(), metrics, inference_process=process), registry


def feed(scorer: Scorer, stream: str, values: list[float], t0: int) -> None:
    msgs = [
        Message(
            "t", 0, i, None, json.dumps({"stream": stream, "ts": t0 + i, "value": v}).encode(), 0
        )
        for i, v in enumerate(values)
    ]
    out = scorer.score(msgs, time.time())
    assert not out.dead, out.dead


def test_streams_go_to_the_first_matching_route(tmp_path: Path) -> None:
    small = write_model(tmp_path / "small.onnx")
    routes = (
        RouteConfig("db", ("db*.cpu", "pg.*"), small),
        RouteConfig("web", ("web*",), small),
    )
    r, registry = router(tmp_path, routes=routes)
    assert [x.name for x in r.routes] == ["db", "web", "default"]
    assert r.route_of("db1.cpu") == 0 and r.route_of("pg.locks") == 0
    assert r.route_of("web3.mem") == 1 and r.route_of("DB1.cpu") == 2  # case-sensitive
    assert r.features_of("db1.cpu") == ("value",)
    info = registry.get_sample_value(
        "lstmad_model_info",
        {
            "db_name": "t",
            "db_version": "1",
            "db_sha256": r.routes[0].model.sha256,
            "db_path": str(small),
            "web_name": "t",
            "web_version": "1",
            "web_sha256": r.routes[1].model.sha256,
            "web_path": str(small),
            "default_name": "ops-default",
            "default_version": r.routes[2].model.version,
            "default_sha256": r.routes[2].model.sha256,
            "default_path": str(tmp_path / "model.onnx"),
        },
    )
    assert info == 1.0


def test_a_refused_model_at_start_names_the_route(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    with pytest.raises(mf.ManifestError, match=r"route 'db'.*not a valid ONNX"):
        router(tmp_path, routes=(RouteConfig("db", ("db*",), tmp_path / "bad.onnx"),))


@pytest.mark.parametrize("process", [False, True], ids=["thread", "process"])
def test_hot_reload_keeps_windows_and_refuses_bad_files(tmp_path: Path, process: bool) -> None:
    r, registry = router(tmp_path, process)
    try:
        hot_reload(r, registry, tmp_path)
        if r.remote is not None:  # the child holds the serving model's session only
            assert r.remote._loaded == {r.routes[0].model.sha256}
    finally:
        r.close()


def hot_reload(r: Router, registry: CollectorRegistry, tmp_path: Path) -> None:
    scorer = Scorer(r, Limits(max_age_ms=0), r.metrics)
    path = r.routes[0].path
    old_sha = r.routes[0].model.sha256
    feed(scorer, "s", [float(i % 7) for i in range(60)], 1_000_000)
    assert r.maybe_reload(now=0.0) == []  # unchanged file: nothing to do

    def reloads(result: str) -> float:
        return registry.get_sample_value("lstmad_model_reloads_total", {"result": result}) or 0.0

    # 1. A corrupt file (e.g. half-copied): refused, the old model keeps serving.
    path.write_bytes(b"\x08\x07 not onnx")
    assert r.maybe_reload(now=10.0) == [("default", "refused")]
    assert r.routes[0].model.sha256 == old_sha and reloads("refused") == 1
    # 2. A valid model with another window: refused by the pipeline, old model serves.
    write_model(path)
    touch_later(path)
    assert r.maybe_reload(now=20.0) == [("default", "refused")]
    assert r.routes[0].model.sha256 == old_sha and reloads("refused") == 2
    # 3. A valid compatible model: swapped in, windows kept (the next point is scored at once).
    relabel(MODEL, tmp_path / "v2.onnx", "2")
    os.replace(tmp_path / "v2.onnx", path)
    touch_later(path)
    assert r.maybe_reload(now=30.0) == [("default", "ok")]
    assert r.routes[0].model.version == "2" and r.routes[0].model.sha256 != old_sha
    before = registry.get_sample_value("lstmad_predictions_total")
    feed(scorer, "s", [3.0], 2_000_000)
    assert registry.get_sample_value("lstmad_predictions_total") == before + 1
    # 4. Not due yet: no stat at all; SIGHUP forces the check.
    relabel(MODEL, path, "3")
    assert r.maybe_reload(now=30.5) == []
    r.request_reload()
    assert r.maybe_reload(now=30.6) == [("default", "ok")] and r.routes[0].model.version == "3"
    assert reloads("ok") == 3  # the start plus two reloads


def test_the_default_route_alone_caches_nothing(tmp_path: Path) -> None:
    r, _ = router(tmp_path)
    scorer = Scorer(r, Limits(max_age_ms=0), r.metrics)
    feed(scorer, "a.cpu", [1.0, 2.0], 1_000_000)
    assert r.route_of("a.cpu") == 0 and r.route_of("anything") == 0
    assert r._cache == {}  # a per-stream cost with nothing to choose
