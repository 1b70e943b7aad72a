"""/metrics, /healthz and /readyz on one real HTTP port."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from streamer.http import Health, HttpServer
from streamer.metrics import Metrics


def test_liveness_follows_the_loop_clock() -> None:
    h = Health(stale_after_s=10.0)
    assert h.live(100.0)[0] is False  # the loop never turned
    h.last_loop = 95.0
    assert h.live(100.0) == (True, {"loop_age_s": 5.0})
    assert h.live(105.5)[0] is False


def test_readiness_needs_every_condition() -> None:
    h = Health(stale_after_s=10.0, last_loop=1.0, models_loaded=True, broker_ok=True)
    ok, body = h.ready(2.0)
    assert not ok and body["checks"]["assigned"] is False
    h.assigned = ("metrics:0", "metrics:3")
    ok, body = h.ready(2.0)
    assert ok and body["partitions"] == ["metrics:0", "metrics:3"]
    h.broker_ok = False
    assert h.ready(2.0)[0] is False
    h.broker_ok, h.stopping = True, True
    assert h.ready(2.0)[0] is False


@pytest.fixture
def server() -> Iterator[tuple[HttpServer, Health, Metrics]]:
    registry = CollectorRegistry()
    metrics = Metrics.create(registry, ["web1.cpu"])
    health = Health(stale_after_s=5.0)
    srv = HttpServer("127.0.0.1", 0, registry, health).start()
    try:
        yield srv, health, metrics
    finally:
        srv.stop()


def get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def test_endpoints_over_http(server: tuple[HttpServer, Health, Metrics]) -> None:
    srv, health, metrics = server
    metrics.points.inc(7)
    code, ctype, text = get(srv.port, "/metrics")
    assert code == 200 and ctype.startswith("text/plain")
    assert "lstmad_points_total 7.0" in text
    assert 'lstmad_invalid_messages_total{reason="not_json"} 0.0' in text
    assert 'lstmad_stream_prediction_error_bucket{le="1.0",stream="web1.cpu"}' in text

    code, _, body = get(srv.port, "/healthz")
    assert code == 503 and json.loads(body)["status"] == "fail"
    health.last_loop = time.monotonic()
    code, _, body = get(srv.port, "/healthz")
    assert code == 200 and json.loads(body)["status"] == "ok"

    code, _, body = get(srv.port, "/readyz")
    assert code == 503 and json.loads(body)["checks"]["assigned"] is False
    health.assigned, health.models_loaded, health.broker_ok = ("m:0",), True, True
    code, ctype, body = get(srv.port, "/readyz")
    assert code == 200 and ctype == "application/json" and json.loads(body)["partitions"] == ["m:0"]

    assert get(srv.port, "/nope")[0] == 404
