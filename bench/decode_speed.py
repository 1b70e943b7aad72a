"""Per-message decode speed: msgs/s of json.loads alone, orjson.loads alone, the original
stdlib decode and :func:`streamer.decode.decode`, on the same realistic message mix.

``python -m bench.decode_speed [--messages N] [--runs R]``. The mix (seeded): 80% one-feature
``{"stream","ts" (epoch ms),"value"}`` messages, 10% with an RFC 3339 ``ts``, 10% with a
two-feature ``values`` object, over 1,000 distinct streams, all valid (the daemon's steady
state); then each shape alone, and the mix made stale (rejected). Each figure is the best of
``--runs`` passes in this process, so a burst of other work on the shared machine moves it
little. Before timing, every message is checked to decode to the same Point both ways.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from streamer.decode import Limits, Point, _decode_json, decode

NOW_MS = 1_764_576_000_000  # 2025-12-01T08:00:00Z
LIMITS = Limits()
ONE, TWO = ("value",), ("close", "volume")


def features(stream: str) -> tuple[str, ...]:
    """As the daemon's router: a stream id -> its model's feature names."""
    return TWO if stream[0] == "m" else ONE


SHAPES = ("epoch-ms value", "RFC 3339 value", "two-feature values")


def make_mix(n: int, streams: int = 1000, seed: int = 7) -> list[tuple[str, bytes]]:
    """``n`` (shape, message) pairs: 80% / 10% / 10% of :data:`SHAPES`, ts ascending."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        sid = rng.randrange(streams)
        ts = NOW_MS - (n - i) * 10
        shape = rng.choices(SHAPES, weights=(8, 1, 1))[0]
        msg: dict[str, object] = {"stream": f"s{sid:06d}", "ts": ts, "value": rng.random() * 100}
        if shape == SHAPES[1]:
            iso = datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="milliseconds")
            msg["ts"] = iso.replace("+00:00", "Z")
        elif shape == SHAPES[2]:
            vals = {"close": round(rng.uniform(100, 200), 2), "volume": rng.randrange(10**6)}
            msg = {"stream": f"m{sid:06d}", "ts": ts, "values": vals}
        out.append((shape, json.dumps(msg, separators=(",", ":")).encode()))
    return out


def original(value: bytes) -> object:
    """The decoder before orjson: size check, stdlib json.loads, decode_object."""
    if len(value) > LIMITS.max_bytes:
        return None
    return _decode_json(value, None, features, LIMITS, NOW_MS)


def new(value: bytes) -> object:
    return decode(value, None, features, LIMITS, NOW_MS)


def best_rate(fn: Callable[[bytes], object], msgs: list[bytes], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        for m in msgs:
            fn(m)
        best = min(best, time.perf_counter() - t0)
    return len(msgs) / best


def compare(label: str, msgs: list[bytes], runs: int) -> None:
    old, cur = (best_rate(fn, msgs, runs) for fn in (original, new))
    print(f"  {label:18s} original {old:>9,.0f}  decode {cur:>9,.0f} msgs/s  {cur / old:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.decode_speed", description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000, help="messages in the mix")
    parser.add_argument("--runs", type=int, default=3, help="passes per figure; best is kept")
    args = parser.parse_args(argv)
    mix = make_mix(args.messages)
    msgs = [m for _, m in mix]
    for m in msgs:
        a, b = original(m), new(m)
        if not (isinstance(b, Point) and a == b):
            print(f"decoders disagree on {m!r}: {a} vs {b}", file=sys.stderr)
            return 1
    cases: list[tuple[str, Callable[[bytes], object]]] = [
        ("json.loads(value.decode()) alone", lambda m: json.loads(m.decode("utf-8"))),
        ("orjson.loads(value) alone", orjson.loads),
        ("original decode (stdlib json)", original),
        ("decode (orjson + short path)", new),
    ]
    print(f"{len(msgs):,} messages over 1,000 streams, best of {args.runs} runs")
    rates = {}
    for name, fn in cases:
        rates[name] = best_rate(fn, msgs, args.runs)
        print(f"  {name:34s} {rates[name]:>12,.0f} msgs/s  {1e6 / rates[name]:6.2f} us/msg")
    print(f"  decode / original decode: {rates[cases[3][0]] / rates[cases[2][0]]:.2f}x")
    for shape in SHAPES:
        compare(shape, [m for kind, m in mix if kind == shape], args.runs)
    # most rejections are parsed twice (orjson, then the original route that names the reason);
    # a stale ts, the common case after an outage, is named on the short path
    compare(
        "rejected (stale)",
        [m.replace(b'"ts":17', b'"ts":16').replace(b'"ts":"2025', b'"ts":"2021') for m in msgs],
        args.runs,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
