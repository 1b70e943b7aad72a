"""``/metrics``, ``/healthz`` and ``/readyz`` on one port, served from a background thread.

* ``/healthz`` (liveness): 200 while the run loop has turned within ``stale_after_s``; a
  wedged loop turns it 503 so the supervisor restarts the process.
* ``/readyz`` (readiness): 200 when partitions are assigned, every route's model is loaded
  and the broker answered the last request; the body says which condition fails.
* ``/metrics``: the Prometheus text exposition of the registry passed in.

:class:`Health` is written by the loop thread and read by the HTTP threads; each field is
a single reference assignment, so no lock is needed. Checks take ``now`` (monotonic s).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


@dataclass
class Health:
    stale_after_s: float = 30.0
    last_loop: float | None = None  # monotonic seconds of the last loop iteration
    assigned: tuple[str, ...] = ()  # "topic:partition" currently owned
    models_loaded: bool = False
    broker_ok: bool = False
    stopping: bool = False

    def live(self, now: float) -> tuple[bool, dict[str, Any]]:
        age = None if self.last_loop is None else now - self.last_loop
        ok = age is not None and age <= self.stale_after_s
        return ok, {"loop_age_s": None if age is None else round(age, 3)}

    def ready(self, now: float) -> tuple[bool, dict[str, Any]]:
        live, info = self.live(now)
        checks = {
            "assigned": bool(self.assigned),
            "model_loaded": self.models_loaded,
            "broker_reachable": self.broker_ok,
            "loop_alive": live,
            "not_stopping": not self.stopping,
        }
        body = {"checks": checks, "partitions": list(self.assigned), **info}
        return all(checks.values()), body


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        now = time.monotonic()
        if path == "/metrics":
            self._send(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            ok, body = self.server.health.live(now)
            self._json(ok, body)
        elif path == "/readyz":
            ok, body = self.server.health.ready(now)
            self._json(ok, body)
        else:
            self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

    def _json(self, ok: bool, body: dict[str, Any]) -> None:
        body = {"status": "ok" if ok else "fail", **body}
        self._send(200 if ok else 503, json.dumps(body).encode() + b"\n", "application/json")

    def _send(self, code: int, data: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes every 15 s are not worth a log line


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], registry: CollectorRegistry, health: Health):
        self.registry = registry
        self.health = health
        super().__init__(addr, _Handler)


class HttpServer:
    """Owns the listening socket and its thread; ``port`` is the bound one (after ``start``)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, health: Health):
        self._server = _Server((host, port), registry, health)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="lstmad-http", daemon=True
        )

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
