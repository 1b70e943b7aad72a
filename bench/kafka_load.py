"""Load for the Kafka benchmarks: the messages, a fast producer, and the bare consumer.

The bare consumer is the ceiling the daemon is compared with: the same client library
(kafka-python) and ``max_poll_records``, doing only what any consumer must do, poll and
JSON-decode each message. Rates are measured between the moments 10% and 90% of the load
had been consumed, so start-up and the last partial batch do not count.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm


def messages(
    streams: int, points: int, start_ms: int, first: int = 0
) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of points ``first..points-1`` of every stream, round-robin, 1 s apart."""
    for k in range(first, points):
        ts = start_ms + 1000 * k
        for s in range(streams):
            key = b"s%06d" % s
            yield key, b'{"stream":"%s","ts":%d,"value":%.4f}' % (key, ts, 50.0 + (k * 7 + s) % 13)


def producer(bootstrap: str, linger_ms: int = 20) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=linger_ms,
        batch_size=1 << 20,
        max_request_size=1 << 22,
    )


def produce(bootstrap: str, topic: str, streams: int, points: int, start_ms: int) -> float:
    """Produce the whole load before anything consumes it; returns seconds taken."""
    p = producer(bootstrap)
    t0 = time.perf_counter()
    for key, value in tqdm(
        messages(streams, points, start_ms),
        total=streams * points,
        desc=f"produce {streams} streams",
        unit="msg",
        mininterval=2,
        leave=False,
    ):
        p.send(topic, key=key, value=value)
    p.flush()
    p.close()
    return time.perf_counter() - t0


LOADGEN = Path(__file__).resolve().parent / "loadgen"
# The load generator shares the 2 cores with what it loads: the serial collector and the C1
# compiler alone (no C2, whose compiler threads kept working through the measured load) took
# its steady cost at 15k msgs/s from 0.29-0.31 of a core to 0.09-0.10 (with the message
# building of PacedProducer.java's paced()), measured from /proc over 8 s, twice each.
LOADGEN_JVM = ("-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")


def paced_produce(
    bootstrap: str,
    topic: str,
    streams: int,
    first: int,
    last: int,
    start_ms: int,
    rate: float,
    warm_s: float = 0.0,
) -> tuple[int, float]:
    """Points ``first..last-1`` of every stream (as :func:`messages`) at ``rate`` messages/s,
    by Kafka's Java client (``loadgen/PacedProducer.java``, compiled on first use against
    the broker's jars): a Python producer at 24k messages/s takes half of this 2-core
    machine from the daemon it loads. With ``warm_s`` the producer first runs that long at
    the same rate into ``<topic>.warmup``, which nothing reads, so the JVM's compilation is
    over before the measured load starts. Returns (messages sent, seconds taken), both of
    the measured part."""
    from streamer.localkafka import fetch_jars

    jars = fetch_jars()
    cp = f"{jars}/*"
    build = LOADGEN / "build"
    src = LOADGEN / "PacedProducer.java"
    cls = build / "PacedProducer.class"
    if not cls.exists() or cls.stat().st_mtime < src.stat().st_mtime:
        if shutil.which("javac") is None:
            raise RuntimeError("javac not found: the live load needs a JDK (openjdk-17-jdk)")
        build.mkdir(exist_ok=True)
        subprocess.run(["javac", "-cp", cp, "-d", str(build), str(src)], check=True)
    args = [bootstrap, topic, streams, first, last, start_ms, rate, warm_s]
    proc = subprocess.run(
        ["java", *LOADGEN_JVM, "-cp", f"{build}:{cp}", "PacedProducer", *map(str, args)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    got = re.search(r"sent (\d+) in ([0-9.]+) s", proc.stdout)
    if proc.returncode != 0 or got is None:
        raise RuntimeError(f"PacedProducer failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return int(got[1]), float(got[2])


def rate_10_90(samples: Sequence[tuple[float, float]], total: int) -> float:
    """Points/s between the samples where 10% and 90% of ``total`` had been consumed."""
    lo = next((t, c) for t, c in samples if c >= 0.1 * total)
    hi = next((t, c) for t, c in samples if c >= 0.9 * total)
    if hi[0] <= lo[0]:
        raise RuntimeError("too few progress samples to measure a rate; raise --points")
    return (hi[1] - lo[1]) / (hi[0] - lo[0])


def bare_rate(
    bootstrap: str, topic: str, total: int, deadline_s: float, reader: str = "kafka-python"
) -> float:
    """Points/s of a consumer that only polls and JSON-decodes, over the whole topic, with
    kafka-python's own record reader or (``reader="lstmad"``) the daemon's
    (:mod:`streamer.kafka_records`)."""
    from kafka import KafkaConsumer

    from streamer import kafka_records

    kafka_records.use(reader)

    c = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bare-{uuid.uuid4().hex}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=5000,
    )
    got, samples, end = 0, [], time.monotonic() + deadline_s
    try:
        while got < total:
            if time.monotonic() > end:
                raise RuntimeError(f"bare consumer read {got}/{total} in {deadline_s}s")
            for records in c.poll(timeout_ms=200, max_records=5000).values():
                for r in records:
                    json.loads(r.value)
                got += len(records)
            samples.append((time.perf_counter(), got))
    finally:
        c.close()
        kafka_records.uninstall()
    return rate_10_90(samples, total)


def quantile(buckets: dict[float, float], q: float) -> float:
    """Quantile of a cumulative histogram, linear within the bucket (Prometheus-style)."""
    bounds = list(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return float("nan")
    rank, prev_b, prev_c = q * total, 0.0, 0.0
    for b in bounds:
        c = buckets[b]
        if c >= rank:
            if b == float("inf"):
                return prev_b
            return prev_b + (b - prev_b) * (rank - prev_c) / max(c - prev_c, 1e-12)
        prev_b, prev_c = b, c
    return bounds[-1]
