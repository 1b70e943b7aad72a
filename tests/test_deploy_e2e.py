"""End to end: the real daemon scores real Kafka data under a real Prometheus; the systemd
notify protocol, the exposition format and every dashboard query are checked against it.

One module-scoped stack (about 30 s): a producer thread writes seeded points for a few
streams (sine + noise, a spike every ``SPIKE_EVERY`` points, a few unusable messages) to a
fresh input topic of the session's broker; ``lstmad serve`` runs as a subprocess with its
own NOTIFY_SOCKET (a datagram socket this test binds) and WATCHDOG_USEC, inside the unit's
MemoryDenyWriteExecute and SystemCallFilter (tests/test_deploy_systemd.Sandbox); /usr/bin/prometheus
scrapes it every second using the job of deploy/prometheus/scrape-lstmad.yml and loads the
alerting rules. Everything is bounded: producer by count and time, every wait by a deadline.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from tests.test_deploy_grafana import dashboard_queries, variable_queries
from tests.test_deploy_systemd import Sandbox

pytestmark = [pytest.mark.kafka, pytest.mark.prometheus, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
STREAMS = ("host1.cpu", "host2.cpu", "db1.latency", "web.rps")
SPIKE_EVERY = 150  # points between injected spikes, per stream
HISTORY = 120  # points per stream before the daemon starts (window 50 of the default model)
PRODUCE_FOR_S = 120.0  # the live producer's hard bound (the stack lives ~30 s)
SCRAPE_S = 1
# Grafana's $__rate_interval is max(4 x scrape interval, step + scrape interval).
RATE_INTERVAL = f"{4 * SCRAPE_S + 6}s"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, cond: Callable[[], Any], timeout: float, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except (OSError, ValueError) as exc:  # not up yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return str(r.read().decode())


@dataclass
class Notifications:
    """Datagrams received on the NOTIFY_SOCKET, read by a background thread."""

    sock: socket.socket
    messages: list[str] = field(default_factory=list)

    def run(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            self.messages.append(data.decode())

    def seen(self, line: str) -> bool:
        return any(line in m.splitlines() for m in self.messages)


class Producer:
    """Seeded points for STREAMS with periodic spikes, plus a few unusable messages."""

    def __init__(self, bootstrap: str, topic: str):
        self.topic = topic
        self.kp = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
        self.rng = np.random.default_rng(20261201)
        self.i = 0
        self.stop = threading.Event()
        self.sent = 0

    def point(self, stream: str, k: int, ts_ms: int) -> bytes:
        base = 10 * (1 + STREAMS.index(stream))
        value = base + math.sin(k / 8) + 0.1 * self.rng.standard_normal()
        if k % SPIKE_EVERY == SPIKE_EVERY - 1:
            value += 40  # dozens of window swings: an anomaly
        return json.dumps({"stream": stream, "ts": ts_ms, "value": value}).encode()

    def batch(self, ts_ms: int) -> None:
        for s in STREAMS:
            self.kp.send(self.topic, key=s.encode(), value=self.point(s, self.i, ts_ms))
        self.i += 1
        self.sent += len(STREAMS)

    def history(self, n: int) -> None:
        now = int(time.time() * 1000)
        for j in range(n):
            self.batch(now - (n - j) * 1000)
        for bad in (b"not json", b'{"stream": "host1.cpu"}', b'{"stream": "x", "value": "hi"}'):
            self.kp.send(self.topic, key=b"bad", value=bad)
        self.kp.flush(timeout=30)

    def live(self) -> None:
        deadline = time.monotonic() + PRODUCE_FOR_S
        last = 0
        while not self.stop.is_set() and time.monotonic() < deadline:
            ts = max(last + 1, int(time.time() * 1000))
            self.batch(ts)
            last = ts
            if self.i % 50 == 0:
                self.kp.send(self.topic, key=b"bad", value=b"\xff not json")
            self.stop.wait(0.02)
        self.kp.flush(timeout=30)
        self.kp.close(timeout=10)


@dataclass
class Stack:
    daemon: subprocess.Popen[bytes]
    notify: Notifications
    metrics_url: str
    prom_url: str
    log: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        q = urllib.parse.urlencode({"query": expr})
        body = json.loads(http_get(f"{self.prom_url}/api/v1/query?{q}"))
        assert body["status"] == "success", body
        return list(body["data"]["result"])


def write_config(tmp: Path, bootstrap: str, topics: dict[str, str]) -> Path:
    cfg = tmp / "config.toml"
    cfg.write_text(
        f"""
[kafka]
bootstrap_servers = ["{bootstrap}"]
input_topic = "{topics["input"]}"
alert_topic = "{topics["alerts"]}"
dlq_topic = "{topics["dlq"]}"
group_id = "{topics["group"]}"
poll_timeout_ms = 100
shutdown_timeout_s = 15.0

[metrics]
host = "127.0.0.1"
stream_labels = ["host1.cpu", "db1.latency"]

[log]
format = "text"
"""
    )
    return cfg


def prometheus_config(tmp: Path, target: str) -> Path:
    """deploy/prometheus/scrape-lstmad.yml with this test's target, interval and rules path."""
    doc = yaml.safe_load((ROOT / "deploy" / "prometheus" / "scrape-lstmad.yml").read_text())
    (job,) = doc["scrape_configs"]
    assert job["job_name"] == "lstmad"
    job["scrape_interval"] = f"{SCRAPE_S}s"
    job["scrape_timeout"] = f"{SCRAPE_S}s"
    job["static_configs"] = [{"targets": [target]}]
    doc["rule_files"] = [str(ROOT / "deploy" / "prometheus" / "lstmad-rules.yml")]
    doc["global"] = {"evaluation_interval": f"{SCRAPE_S}s"}
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def stop_process(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus missing: apt-get install prometheus"
    tmp = tmp_path_factory.mktemp("e2e")
    tag = uuid.uuid4().hex[:8]
    topics = {k: f"e2e-{k}-{tag}" for k in ("input", "alerts", "dlq", "group")}
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics(
        [NewTopic(topics["input"], 2, 1)] + [NewTopic(topics[k], 1, 1) for k in ("alerts", "dlq")]
    )
    admin.close()
    producer = Producer(kafka_bootstrap, topics["input"])
    producer.history(HISTORY)

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp / "notify.sock"))
    notify = Notifications(sock)
    threading.Thread(target=notify.run, daemon=True).start()

    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LSTMAD_", "WATCHDOG_"))},
        "NOTIFY_SOCKET": str(tmp / "notify.sock"),
        "WATCHDOG_USEC": "2000000",  # WATCHDOG=1 every second
        "LSTMAD_METRICS_PORT": str(port),
    }
    log = tmp / "daemon.log"
    lstmad = str(Path(sys.executable).with_name("lstmad"))
    cfg = write_config(tmp, kafka_bootstrap, topics)
    with log.open("wb") as out:
        # In the unit's sandbox: MemoryDenyWriteExecute and SystemCallFilter.
        daemon = subprocess.Popen(
            [lstmad, "serve", "--config", str(cfg)],
            env=env,
            stdout=out,
            stderr=out,
            preexec_fn=Sandbox(),
        )
    prom_port = free_port()
    prom_log = (tmp / "prometheus.log").open("wb")
    prom = subprocess.Popen(
        [
            prometheus,
            f"--config.file={prometheus_config(tmp, f'127.0.0.1:{port}')}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--storage.tsdb.retention.time=1h",
        ],
        stdout=prom_log,
        stderr=prom_log,
    )
    live = threading.Thread(target=producer.live, daemon=True)
    s = Stack(
        daemon, notify, f"http://127.0.0.1:{port}/metrics", f"http://127.0.0.1:{prom_port}", log
    )
    try:
        try:
            wait_for("READY=1 from the daemon", lambda: notify.seen("READY=1"), 60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\ndaemon log:\n{log.read_text()[-3000:]}") from None
        live.start()
        wait_for("Prometheus ready", lambda: "Ready" in http_get(f"{s.prom_url}/-/ready"), 30)
        yield s
    finally:
        producer.stop.set()
        if live.is_alive():
            live.join(timeout=40)
        stop_process(daemon)
        stop_process(prom)
        prom_log.close()
        sock.close()
        if daemon.returncode not in (0, None):
            print(log.read_text()[-4000:])


def test_daemon_speaks_ready_and_watchdog_over_notify_socket(stack: Stack) -> None:
    assert stack.daemon.poll() is None, stack.log.read_text()[-2000:]
    assert stack.notify.seen("READY=1")
    wait_for("WATCHDOG=1", lambda: stack.notify.seen("WATCHDOG=1"), 10)
    pings = sum(m == "WATCHDOG=1" for m in stack.notify.messages)
    wait_for(
        "a second WATCHDOG=1",
        lambda: sum(m == "WATCHDOG=1" for m in stack.notify.messages) > pings,
        10,
    )


def sample(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_daemon_scores_and_alerts_and_promtool_accepts_its_metrics(stack: Stack) -> None:
    def scored() -> str | None:
        text = http_get(stack.metrics_url)
        ok = (
            sample(text, "lstmad_predictions_total") > 100
            and sample(text, "lstmad_alerts_total") > 0
        )
        return text if ok else None

    text = wait_for("predictions and alerts", scored, 60)
    assert sample(text, "lstmad_invalid_messages_total") >= 3
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: apt-get install prometheus"
    res = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 0 and not res.stdout.strip() and not res.stderr.strip(), (
        res.stdout + res.stderr
    )


def substitute(expr: str) -> str:
    """The dashboard's variables as Grafana would fill them for 'All' on this job."""
    return (
        expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$job", "lstmad")
        .replace("$instance", ".*")
    )


def test_every_dashboard_query_returns_data_from_prometheus(stack: Stack) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 20

    def missing() -> list[str]:
        return [f"{title}: {e}" for title, e in queries if not stack.query(substitute(e))]

    deadline = time.monotonic() + 60
    left = missing()
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left = missing()
    assert not left, "dashboard queries without data:\n" + "\n".join(left)
    for title, expr in queries:
        result = stack.query(substitute(expr))
        print(f"{len(result):3d} series, first {result[0]['value'][1]:>12.12}  {title}")
        for r in result:
            value = float(r["value"][1])
            assert math.isfinite(value), f"{title}: {expr} -> {r}"
    # Not just zeros: the seeded spikes open alerts, the bad messages are dead-lettered.
    for expr in (
        'sum(increase(lstmad_alerts_total{job="lstmad", status="open"}[2m]))',
        'sum(increase(lstmad_invalid_messages_total{job="lstmad"}[2m]))',
        'sum(increase(lstmad_predictions_total{job="lstmad"}[2m]))',
    ):
        wait_for(f"{expr} > 0", lambda e=expr: float(stack.query(e)[0]["value"][1]) > 0, 45)
    # Template variables: label_values(metric, label) must list this job / instance.
    for metric, label in variable_queries():
        series = stack.query(substitute(metric))
        assert series and all(label in r["metric"] for r in series), (metric, label)


def test_alerting_rules_load_and_evaluate_in_prometheus(stack: Stack) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        body = json.loads(http_get(f"{stack.prom_url}/api/v1/rules"))
        rules = [r for g in body["data"]["groups"] for r in g["rules"]]
        done = rules and all(
            not r.get("lastEvaluation", "0001").startswith("0001")  # 0001-01-01: never
            for r in rules
        )
        return rules if done else None

    rules = wait_for("every rule evaluated", evaluated, 20)
    assert len(rules) == 10
    assert all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]
    firing = {r["name"] for r in rules if r["state"] == "firing"}
    assert "LstmadDown" not in firing and "LstmadAbsent" not in firing


def test_sigterm_sends_stopping_and_exits_cleanly(stack: Stack) -> None:
    stack.daemon.send_signal(signal.SIGTERM)
    rc = stack.daemon.wait(timeout=30)
    assert rc == 0, stack.log.read_text()[-3000:]
    wait_for("STOPPING=1", lambda: stack.notify.seen("STOPPING=1"), 5)
    order = [m.splitlines()[0] for m in stack.notify.messages]
    assert order.index("READY=1") < order.index("STOPPING=1")
