"""Helpers for the daemon's integration tests: data with known anomalies, configs, processes.

Timelines (one point per minute per stream, ``N`` points, anomalies at ``AT``)::

    0 ........ 50 ........ 150 ................ AT=220 ...... 300 ......... N=360
    |  window  | anomaly warm-up | volatility warm-up done |  anomaly / regime  | calm

The default model (window 50) scores from point 50; the anomaly detector may alert after
its warm-up (30 scored points), the volatility detector after 100. Every injected anomaly
therefore sits well after both warm-ups. A daemon that takes over a stream midway restores
its state from the state topic and needs no warm-up (tests/test_daemon_restart.py and
tests/test_reliability_group.py inject right after the handover to show it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamer.localkafka import free_port

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "streamer" / "models" / "default.onnx"
N, AT, STEP_MS = 360, 220, 60_000
KINDS = ("spike", "dip", "level_shift", "volatility", "normal")


def series(kind: str, seed: int, n: int = N, at: int = AT) -> np.ndarray:
    """A seasonal stream (period 60 points) with noise, and one injected anomaly of ``kind``."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    base = 50.0 + 10.0 * np.sin(2 * np.pi * t / 60.0 + seed % 7) + rng.normal(0, 0.8, n)
    if kind == "spike":
        base[at] += 25.0
    elif kind == "dip":
        base[at] -= 25.0
    elif kind == "level_shift":
        base[at:] += 20.0
    elif kind == "volatility":
        base[at : at + 80] += rng.normal(0, 6.0, 80)
    elif kind != "normal":
        raise ValueError(kind)
    return base


@dataclass(frozen=True)
class Stream:
    name: str
    kind: str
    values: np.ndarray
    t0_ms: int

    def ts(self, i: int) -> int:
        return self.t0_ms + i * STEP_MS

    def message(self, i: int) -> bytes:
        return json.dumps(
            {"stream": self.name, "ts": self.ts(i), "value": float(self.values[i])}
        ).encode()


def make_streams(kinds: Iterable[str], prefix: str, t0_ms: int | None = None) -> list[Stream]:
    t0 = t0_ms if t0_ms is not None else int(time.time() * 1000) - 2 * 86_400_000
    return [
        Stream(f"{prefix}{i}.{kind}", kind, series(kind, seed=i), t0)
        for i, kind in enumerate(kinds)
    ]


def interleave(streams: list[Stream], lo: int = 0, hi: int = N) -> list[tuple[bytes, bytes]]:
    """(key, value) in time order across streams, as a live feed would deliver them."""
    return [(s.name.encode(), s.message(i)) for i in range(lo, hi) for s in streams]


def write_config(
    path: Path, bootstrap: str, topics: dict[str, str], port: int, **extra: Any
) -> Path:
    kafka = {
        "bootstrap_servers": [bootstrap],
        "poll_timeout_ms": 100,
        "max_poll_records": 2000,
        "shutdown_timeout_s": 15.0,
        # kafka-python 3.0's rejoin can hang when a member joins or leaves; the tests wait
        # well under the 60 s default for it to be replaced (tests/test_kafka_rejoin.py,
        # streamer.daemon).
        "rejoin_after_s": 10.0,
        **topics,
        **extra.pop("kafka", {}),
    }
    sections: dict[str, dict[str, Any]] = {
        "kafka": kafka,
        "model": {"path": str(MODEL), "reload_poll_s": 0.0},
        "metrics": {"host": "127.0.0.1", "port": port},
        "log": {"level": "INFO", "format": "json"},
        **extra,
    }
    lines = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in table.items())
    path.write_text("\n".join(lines) + "\n")
    return path


def topics_for(base: str) -> dict[str, str]:
    return {
        "input_topic": f"{base}-in",
        "alert_topic": f"{base}-alerts",
        "dlq_topic": f"{base}-dlq",
        "group_id": f"{base}-g",
    }


def create_topics(bootstrap: str, names: dict[str, int], timeout_s: float = 30.0) -> None:
    """Create the topics and wait until every partition is in the cluster's metadata, so a
    consumer group joining right after sees them (a busy broker propagates them late)."""
    from kafka import KafkaConsumer
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(n, p, 1) for n, p in names.items()])
    finally:
        admin.close()
    probe = KafkaConsumer(bootstrap_servers=bootstrap, metadata_max_age_ms=200)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if all(len(probe.partitions_for_topic(n) or ()) == p for n, p in names.items()):
                return
            time.sleep(0.1)
    finally:
        probe.close()
    raise AssertionError(f"topics {sorted(names)} not in the metadata after {timeout_s}s")


def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes, bytes]]) -> int:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256_000
    )
    n = 0
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value)
            n += 1
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)
    return n


def read_topic(
    bootstrap: str,
    topic: str,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout_s: float,
    settle_s: float = 0.0,
) -> list[dict[str, Any]]:
    """Every JSON record of ``topic`` from the start, polling until ``until(docs)`` or timeout.

    ``settle_s`` keeps reading that long after the condition holds, so a duplicate or an
    extra record arriving late is seen too.
    """
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    docs: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    settled_at: float | None = None
    try:
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                docs.extend(json.loads(r.value) for r in records)
            if settled_at is None and until(docs):
                settled_at = time.monotonic() + settle_s
            if settled_at is not None and time.monotonic() >= settled_at:
                break
    finally:
        consumer.close()
    return docs


@dataclass
class DaemonProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def ready(self) -> dict[str, Any] | None:
        code, body = self.get("/readyz")
        return json.loads(body) if code == 200 else None

    def wait_ready(self, timeout_s: float = 60.0, partitions: int = 1) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.tail()}")
            body = self.ready()
            if body is not None and len(body["partitions"]) >= partitions:
                return body
            time.sleep(0.1)
        raise AssertionError(f"daemon not ready within {timeout_s}s:\n{self.tail()}")

    def metric(self, name: str) -> float:
        code, text = self.get("/metrics")
        assert code == 200, code
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(name)

    def stop(self, timeout_s: float = 30.0) -> tuple[int, float]:
        """SIGTERM; return (exit code, seconds it took)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout_s)
        return code, time.monotonic() - t0

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


@contextmanager
def daemon(
    config: Path,
    port: int,
    log: Path,
    env_extra: dict[str, str] | None = None,
    env_drop: tuple[str, ...] = (),
) -> Iterator[DaemonProcess]:
    # ORT_DISABLE_TELEMETRY: this process has it from importing streamer; the daemon must
    # set it itself (tests/test_telemetry.py).
    drop = {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "ORT_DISABLE_TELEMETRY", *env_drop}
    env = {k: v for k, v in os.environ.items() if not k.startswith("LSTMAD_") and k not in drop}
    env.update(env_extra or {})
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamer", "serve", "--config", str(config)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    d = DaemonProcess(proc, port, log)
    try:
        yield d
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def new_port() -> int:
    return free_port()


def opens(docs: list[dict[str, Any]], stream: str, type_: str = "anomaly") -> list[dict[str, Any]]:
    return [
        d for d in docs if d["stream"] == stream and d["type"] == type_ and d["status"] == "open"
    ]


def episode_ok(docs: list[dict[str, Any]], s: Stream, type_: str = "anomaly", at: int = AT) -> bool:
    """An open at or shortly after the injection, and a resolved for that episode later.

    "Shortly": 10 points for an anomaly, 40 for a volatility regime (its short EWMA needs
    a few points of the new regime before the ratio crosses).
    """
    lag = 40 if type_ == "volatility" else 10
    for o in opens(docs, s.name, type_):
        if s.ts(at) <= o["ts_ms"] <= s.ts(at + lag):
            return any(
                d["status"] == "resolved"
                and d["stream"] == s.name
                and d["type"] == type_
                and d["episode_start"] == o["episode_start"]
                and d["ts_ms"] > o["ts_ms"]
                for d in docs
            )
    return False
