"""``lstmad demo``: the whole product on one machine in about a minute.

Starts a local single-node Kafka (``streamer.localkafka``), creates the topics, runs the
daemon in this process with the committed default model, produces the bundled operations
metrics (``training/examples/ops.jsonl``: five streams with a spike, a dip, a burst, a
level shift and a stuck sensor, see ``ops_anomalies.json``) at an accelerated rate with
timestamps shifted to end now, and prints every alert as it is read back from the alert
topic, plus the metrics URL. Stops everything after ``--duration`` seconds, when the data
is done and the alerts have settled, or on Ctrl-C. A developer tool: ``serve`` never
imports it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import tomllib
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "training" / "examples" / "ops.jsonl"
ANOMALIES = REPO / "training" / "examples" / "ops_anomalies.json"
SETTLE_S = 4.0  # after the last point: wait this long for the last alerts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=60.0, help="stop after (seconds)")
    parser.add_argument("--rate", type=float, default=500.0, help="messages per second")
    parser.add_argument(
        "--from-index",
        type=int,
        default=3300,
        help="first point of each stream to produce (earlier points are skipped for time)",
    )
    parser.add_argument("--metrics-port", type=int, default=0, help="HTTP port (0: a free one)")
    parser.add_argument("--partitions", type=int, default=4, help="input topic partitions")


def _ms(ts: str) -> int:
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def load_points(from_index: int) -> tuple[list[dict[str, Any]], int]:
    """The bundled streams from ``from_index`` on, timestamps shifted so the last is now."""
    if not DATA.is_file():
        raise SystemExit(f"lstmad demo: {DATA} is missing (run from a clone of the repository)")
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    last = max(_ms(r["ts"]) for r in rows)
    shift = int(time.time() * 1000) - last - 1000
    seen: dict[str, int] = {}
    out = []
    for r in rows:
        i = seen.get(r["stream"], 0)
        seen[r["stream"]] = i + 1
        if i >= from_index:
            out.append({"stream": r["stream"], "ts": _ms(r["ts"]) + shift, "value": r["value"]})
    return out, shift


def _print_injected(shift: int) -> None:
    from streamer.alerts import rfc3339

    if not ANOMALIES.is_file():
        return
    print("injected anomalies (ground truth, ops_anomalies.json):")
    for a in json.loads(ANOMALIES.read_text()):
        print(f"  {a['kind']:<12} {a['stream']:<20} from {rfc3339(_ms(a['start']) + shift)}")


def _format(doc: dict[str, Any], t0: float) -> str:
    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.4g}"

    return (
        f"[{time.monotonic() - t0:6.1f}s] {doc['status'].upper():<8} {doc['type']:<10} "
        f"{doc['stream']:<20} {doc['ts']}  value={num(doc['value'])} "
        f"predicted={num(doc['predicted'])} score={num(doc['score'])} {doc['severity']}"
    )


def _produce(
    bootstrap: str,
    topic: str,
    points: list[dict[str, Any]],
    rate: float,
    stop: threading.Event,
    done: threading.Event,
) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        t0 = time.monotonic()
        for i, p in enumerate(points):
            if stop.is_set():
                return
            ahead = i / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
            producer.send(topic, key=p["stream"].encode(), value=json.dumps(p).encode())
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)
        done.set()


def _stop_on_signals(stop: threading.Event) -> None:
    """Ctrl-C / SIGTERM set ``stop`` (kafka-python's network code swallows a
    KeyboardInterrupt raised inside its calls); a second one exits at once."""

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set():
            os._exit(128 + signum)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _config(bootstrap: str, topics: dict[str, str], port: int) -> Any:
    from streamer import config

    raw: dict[str, Any] = {}
    repo_cfg = REPO / "config.toml"
    if repo_cfg.is_file():
        doc = tomllib.loads(repo_cfg.read_text())
        raw = {k: doc[k] for k in ("model", "detect") if k in doc}
    raw["kafka"] = {
        "bootstrap_servers": [bootstrap],
        "group_id": f"lstmad-demo-{uuid.uuid4().hex[:6]}",
        "poll_timeout_ms": 100,
        **topics,
    }
    raw["metrics"] = {"host": "127.0.0.1", "port": port}
    raw["log"] = {"level": "WARNING", "format": "text"}
    return config.from_dict(raw, REPO, env={})


def run(args: argparse.Namespace) -> int:
    from kafka import KafkaConsumer
    from kafka.admin import KafkaAdminClient, NewTopic

    from streamer import logs
    from streamer.localkafka import LocalKafka
    from streamer.serve import build

    if args.duration <= 0 or args.rate <= 0:
        print("lstmad demo: --duration and --rate must be > 0", file=sys.stderr)
        return 2
    points, shift = load_points(args.from_index)
    t0 = time.monotonic()
    print("starting a local Kafka broker on 127.0.0.1 ...", flush=True)
    broker = LocalKafka()
    broker.start()
    stop, produced = threading.Event(), threading.Event()
    _stop_on_signals(stop)
    svc = None
    loop: threading.Thread | None = None
    n_alerts = 0
    failure: list[BaseException] = []
    consumer: Any = None
    try:
        print(f"kafka ready at {broker.bootstrap} in {time.monotonic() - t0:.1f}s", flush=True)
        topics = {"input_topic": "metrics", "alert_topic": "alerts", "dlq_topic": "metrics.dlq"}
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics(
            [
                NewTopic("metrics", args.partitions, 1),
                NewTopic("alerts", 1, 1),
                NewTopic("metrics.dlq", 1, 1),
            ]
        )
        admin.close()
        cfg = _config(broker.bootstrap, topics, args.metrics_port)
        logs.setup(cfg.log)
        logging.getLogger("kafka").setLevel(logging.ERROR)  # a fresh broker's rebalance chatter
        svc = build(cfg)
        r = svc.router.routes[-1]
        print(f"model: {r.model.name} v{r.model.version} ({r.path.name}, window {r.model.window})")
        print(f"metrics: {svc.metrics_url}", flush=True)
        daemon = svc.daemon

        def serve() -> None:
            try:
                daemon.run()
            except BaseException as exc:
                failure.append(exc)
                raise

        loop = threading.Thread(target=serve, name="lstmad-loop", daemon=True)
        loop.start()
        _print_injected(shift)
        streams = len({p["stream"] for p in points})
        print(
            f"producing {len(points)} points of {streams} streams at {args.rate:.0f}/s; "
            f"alerts as they arrive (Ctrl-C stops):",
            flush=True,
        )
        threading.Thread(
            target=_produce,
            args=(broker.bootstrap, "metrics", points, args.rate, stop, produced),
            daemon=True,
        ).start()
        consumer = KafkaConsumer(
            "alerts",
            bootstrap_servers=broker.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        deadline = t0 + args.duration
        quiet_since: float | None = None
        while time.monotonic() < deadline and loop.is_alive() and not stop.is_set():
            got = consumer.poll(timeout_ms=200)
            for records in got.values():
                for rec in records:
                    n_alerts += 1
                    print(_format(json.loads(rec.value), t0), flush=True)
            if produced.is_set():
                quiet_since = quiet_since or time.monotonic()
                if got:
                    quiet_since = time.monotonic()
                if time.monotonic() - quiet_since > SETTLE_S:
                    break
    except KeyboardInterrupt:
        stop.set()
    finally:
        if stop.is_set():
            print("\ninterrupted: stopping the daemon and the broker", flush=True)
        stop.set()
        if consumer is not None:
            consumer.close()
        if svc is not None:
            svc.daemon.request_stop()
            if loop is not None:
                loop.join(timeout=30)
            points_total = svc.registry.get_sample_value("lstmad_points_total") or 0
            svc.http.stop()
            svc.router.close()
            if failure:
                state = f"the daemon failed: {failure[0]!r}"
            elif loop is not None and loop.is_alive():
                state = "the daemon did not stop in time"
            else:
                state = "daemon stopped cleanly"
            print(f"done: {int(points_total)} points scored, {n_alerts} alert events; {state}")
        broker.stop()
    return 1 if failure else 0
