"""Hostile input through the real broker: thousands of malformed messages and replayed
duplicates mixed into a feed. The daemon does not crash, every bad message is in the
dead-letter topic with a bounded reason, and the alerts equal those of the clean feed."""

from __future__ import annotations

import collections
import json
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

from streamer import alerts
from streamer.metrics import INVALID_REASONS
from tests import daemon_support as ds

HOSTILE, DUPLICATES = 3000, 200


def hostile(rng: random.Random, now_ms: int) -> bytes:
    """One message that no decoder may accept, drawn from every family of bad input."""
    ok_ts = now_ms - 86_400_000
    junk = "".join(
        chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x2FFF)])) for _ in range(8)
    )
    family = rng.randrange(12)
    if family == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60))) + b"\xff"  # not UTF-8
    if family == 1:
        return b"{" + junk.encode() + b'"'  # truncated JSON
    if family == 2:
        depth = rng.randrange(100, 5_000)
        return b"[" * depth + b"]" * depth  # deep nesting
    if family == 3:
        return json.dumps([junk, rng.random()]).encode()  # not an object
    if family == 4:
        v = rng.choice(["NaN", "Infinity", "-Infinity", "1e999"])
        return f'{{"stream": "h.{junk}", "ts": {ok_ts}, "value": {v}}}'.encode()
    if family == 5:
        v = rng.choice(['"12"', "true", "null", "[1]", '{"a": 1}', "1e300"])
        return f'{{"stream": "h.x", "ts": {ok_ts}, "value": {v}}}'.encode()
    if family == 6:
        return json.dumps({"stream": "h.x", "ts": ok_ts}).encode()  # no value
    if family == 7:
        return json.dumps({"stream": "h.x", "ts": ok_ts, "values": {junk: 1.0}}).encode()
    if family == 8:
        ts = rng.choice(
            ["yesterday", "2026-13-45T99:00:00Z", True, None, [ok_ts], "２０２６-01-01T00:00:00Z"]
        )
        return json.dumps({"stream": "h.x", "ts": ts, "value": 1.0}).encode()
    if family == 9:
        ts = rng.choice([0, 86_400_000, now_ms + 10**9, 253_402_300_799_999])  # far past / future
        return json.dumps({"stream": "h.x", "ts": ts, "value": 1.0}).encode()
    if family == 10:
        bad = rng.choice(["", "a\x00b", "\u2028", "x" * 300, "\ud800"])
        return json.dumps({"stream": bad, "ts": ok_ts, "value": 1.0}).encode()
    return json.dumps({"stream": "h.big", "pad": junk + "x" * 65_536}).encode()  # too large


def test_hostile_messages_are_dead_lettered_and_do_not_change_alerts(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    rng = random.Random(8)
    now_ms = int(time.time() * 1000)
    base = f"ho-{uuid.uuid4().hex[:8]}"
    topics = ds.topics_for(base)
    ds.create_topics(
        kafka_bootstrap,
        {topics["input_topic"]: 4, topics["alert_topic"]: 1, topics["dlq_topic"]: 2},
    )
    streams = ds.make_streams(("spike", "dip", "level_shift", "normal"), "h")
    clean = ds.interleave(streams)
    mixed: list[tuple[bytes | None, bytes | None]] = list(clean)
    for _ in range(HOSTILE):
        key = rng.choice([None, b"h.x", bytes(rng.randrange(256) for _ in range(4))])
        mixed.insert(rng.randrange(len(mixed) + 1), (key, hostile(rng, now_ms)))
    for _ in range(DUPLICATES):  # a point again, later than itself: out of order
        s = rng.choice(streams)
        i = rng.randrange(ds.N - 1)
        after = s.message(i + 1)
        pos = next(j for j, (_, v) in enumerate(mixed) if v == after) + 1
        mixed.insert(rng.randrange(pos, len(mixed) + 1), (s.name.encode(), s.message(i)))
    clean_file = tmp_path / "clean.jsonl"
    clean_file.write_bytes(b"".join(v + b"\n" for _, v in clean))
    port = ds.new_port()
    config = ds.write_config(tmp_path / "c.toml", kafka_bootstrap, topics, port)
    with ds.daemon(config, port, tmp_path / "d.log") as d:
        d.wait_ready(partitions=4)
        ds.produce(kafka_bootstrap, topics["input_topic"], mixed)
        dead = ds.read_topic(
            kafka_bootstrap,
            topics["dlq_topic"],
            lambda xs: len(xs) >= HOSTILE + DUPLICATES,
            90,
            settle_s=1.0,
        )
        docs = ds.read_topic(
            kafka_bootstrap,
            topics["alert_topic"],
            lambda xs: all(ds.episode_ok(xs, s) for s in streams if s.kind != "normal"),
            60,
            settle_s=1.0,
        )
        points = d.metric("lstmad_points_total")
        code, _ = d.stop()
    assert code == 0, d.tail()
    assert len(dead) == HOSTILE + DUPLICATES and points == len(clean)
    reasons = collections.Counter(x["reason"] for x in dead)
    assert set(reasons) <= set(INVALID_REASONS) and reasons["out_of_order"] == DUPLICATES
    assert len(reasons) >= 10, reasons  # every family reached its own reason
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamer",
            "replay",
            str(clean_file),
            "--config",
            str(config),
            "-o",
            str(tmp_path / "a.jsonl"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    reference = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]

    def key(a: dict[str, object]) -> tuple[str, ...]:
        return (str(a["stream"]), str(a["ts_ms"]), str(a["type"]), str(a["status"]))

    got = sorted((alerts.content(a) for a in docs), key=key)
    assert got == sorted((alerts.content(a) for a in reference), key=key)
