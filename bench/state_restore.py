"""State handover cost: checkpoint and restore N streams through a real broker.

Builds N streams with full windows (default model), checkpoints them to a compacted state
topic on a LocalKafka of its own (the daemon's record format, co-partitioned over 4
partitions), then restores all partitions into a fresh Scorer as a new owner would, and
prints the figures: bytes per state record, checkpoint and restore seconds, streams/s.

    python -m bench.state_restore --streams 10000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from streamer import config
from streamer.decode import Limits
from streamer.handover import Handover
from streamer.kafka_io import Message
from streamer.localkafka import LocalKafka
from streamer.metrics import Metrics
from streamer.routing import Router
from streamer.scoring import Scorer

MODEL = "streamer/models/default.onnx"
PARTITIONS = 4


def scorer() -> Scorer:
    cfg = config.from_dict({"model": {"path": MODEL, "reload_poll_s": 0.0}}, Path("."), env={})
    metrics = Metrics.create(CollectorRegistry())
    return Scorer(Router(cfg.model, cfg.detect, metrics), Limits(max_age_ms=0), metrics)


class Producer:
    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.futures: list[Any] = []

    def send(self, topic: str, key: bytes | None, value: bytes | None,
             partition: int | None = None) -> None:  # fmt: skip
        self.futures.append(self.producer.send(topic, key=key, value=value, partition=partition))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=60, help="points per stream (window 50)")
    args = ap.parse_args(argv)
    now = time.time()
    t0_ms = int(now * 1000) - args.points * 60_000
    s = scorer()
    msgs = []
    for i in range(args.points):
        for k in range(args.streams):
            v = json.dumps({"stream": f"s{k}", "ts": t0_ms + i * 60_000, "value": (k + i) % 17})
            msgs.append(Message("in", k % PARTITIONS, i * args.streams + k, None, v.encode(), 0))
    touched: dict[str, tuple[int, int]] = {}
    for lo in range(0, len(msgs), 50_000):
        touched |= s.score(msgs[lo : lo + 50_000], now).touched
    from kafka import KafkaProducer

    with LocalKafka() as broker:
        client = {"bootstrap_servers": broker.bootstrap}
        h = Handover(s, "bench-state", client, restore_timeout_s=300)
        h.prepare(PARTITIONS)
        p = Producer(KafkaProducer(acks="all", linger_ms=5, batch_size=262_144, **client))
        t = time.perf_counter()
        n = h.checkpoint(p, touched)
        for f in p.futures:
            f.get(timeout=60)
        checkpoint_s = time.perf_counter() - t
        p.producer.close()
        record = len(s.router.routes[0].pipeline.export_state(["s0"])["s0"])
        fresh = scorer()
        h2 = Handover(fresh, "bench-state", client, restore_timeout_s=300)
        t = time.perf_counter()
        restored = h2.restore(range(PARTITIONS))
        restore_s = time.perf_counter() - t
    assert restored == args.streams == n, (restored, n)
    print(
        f"streams {args.streams}: state blob {record} B/stream; checkpoint {checkpoint_s:.2f} s "
        f"({args.streams / checkpoint_s:,.0f} streams/s); restore {restore_s:.2f} s "
        f"({args.streams / restore_s:,.0f} streams/s) over {PARTITIONS} partitions"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
