"""Generate the bundled example data sets, deterministically (fixed seeds).

``python -m training.examples.generate [--out DIR]`` writes, next to this file by default:

- ``sine.csv``: the reference sine wave, 5001 points, amplitude 1, frequency 1, time step
  0.01 (columns ``t``, ``sinewave``).
- ``stock.csv``: a stock-like daily series (columns ``date``, ``close``, ``volume``): a
  geometric random walk whose volatility switches between calm and stressed regimes (a
  two-state Markov chain), and a volume that rises with the absolute return.
- ``ops.jsonl``: operations metrics for several streams in the daemon's input format
  (``{"stream", "ts", "value"}``, 10-minute points, interleaved by time as Kafka would
  deliver them): daily and weekly seasonality, a trend, noise, and a few injected anomalies
  (spikes, a level shift, a stuck sensor) listed in ``ops_anomalies.json`` with their times.
"""

from __future__ import annotations

import argparse
import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OPS_START = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday
OPS_STEP = timedelta(minutes=10)
OPS_POINTS = 4032  # four weeks of 10-minute points
DAY, WEEK = 144, 1008  # points per day / week


def sine(
    n: int = 5001, amplitude: float = 1.0, freq: float = 1.0, step: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(n) * step
    return t, amplitude * np.sin(2 * np.pi * freq * t)


def stock(n: int = 3000, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Close and volume; returns (close, volume), both positive."""
    rng = np.random.default_rng(seed)
    vols = np.array([0.008, 0.025])  # daily sigma in calm / stressed regimes
    stay = np.array([0.985, 0.95])
    regime = np.empty(n, dtype=int)
    regime[0] = 0
    for i in range(1, n):
        r = regime[i - 1]
        regime[i] = r if rng.random() < stay[r] else 1 - r
    ret = rng.standard_normal(n) * vols[regime] + 0.0002
    close = 100.0 * np.exp(np.cumsum(ret))
    volume = 1e6 * (1 + 40 * np.abs(ret)) * np.exp(0.2 * rng.standard_normal(n))
    return close, volume


def ops_streams(seed: int = 11) -> tuple[dict[str, np.ndarray], list[dict[str, object]]]:
    """name -> values [OPS_POINTS], plus the list of injected anomalies."""
    rng = np.random.default_rng(seed)
    i = np.arange(OPS_POINTS)
    day = np.sin(2 * np.pi * (i % DAY) / DAY - np.pi / 2)  # low at night, high mid-day
    weekday = ((i // DAY) % 7) < 5
    specs = {  # base, daily amplitude, weekend factor, trend per week, noise sigma
        "web1.cpu": (35.0, 20.0, 0.5, 1.5, 2.0),
        "web2.cpu": (30.0, 18.0, 0.5, 2.0, 2.5),
        "db1.cpu": (50.0, 10.0, 0.8, 0.5, 1.5),
        "api.requests_per_s": (800.0, 500.0, 0.4, 20.0, 40.0),
        "api.latency_ms": (120.0, 30.0, 0.7, -2.0, 8.0),
    }
    out, anomalies = {}, []
    for name, (base, amp, weekend, trend, sigma) in specs.items():
        season = amp * day * np.where(weekday, 1.0, weekend)
        ar = np.zeros(OPS_POINTS)  # AR(1) noise: realistic, partly predictable wiggles
        e = rng.standard_normal(OPS_POINTS) * sigma
        for k in range(1, OPS_POINTS):
            ar[k] = 0.7 * ar[k - 1] + e[k]
        out[name] = base + season + trend * i / WEEK + ar

    # A few injected anomalies, all in the test split (rows >= 85%), so the validation residuals
    # that calibrate the thresholds are clean and the test split shows what detection sees.
    def mark(stream: str, at: int, kind: str, length: int) -> None:
        anomalies.append(
            {
                "stream": stream,
                "kind": kind,
                "start": _ts(at),
                "end": _ts(at + length - 1),
                "index": at,
                "length": length,
            }
        )

    out["web1.cpu"][3500] += 45.0
    mark("web1.cpu", 3500, "spike", 1)
    out["api.latency_ms"][3600:3612] += 150.0
    mark("api.latency_ms", 3600, "burst", 12)
    out["db1.cpu"][3800:] += 25.0
    mark("db1.cpu", 3800, "level_shift", OPS_POINTS - 3800)
    out["web2.cpu"][3650:3722] = out["web2.cpu"][3650]
    mark("web2.cpu", 3650, "stuck", 72)
    out["api.requests_per_s"][3950] -= 900.0
    mark("api.requests_per_s", 3950, "dip", 1)
    return out, anomalies


def _ts(index: int) -> str:
    return (OPS_START + index * OPS_STEP).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_all(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    t, y = sine()
    p = out / "sine.csv"
    with p.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["t", "sinewave"])
        w.writerows((f"{a:.2f}", f"{b:.6f}") for a, b in zip(t, y, strict=True))
    written.append(p)
    close, volume = stock()
    p = out / "stock.csv"
    first = datetime(2014, 1, 2)
    with p.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["date", "close", "volume"])
        for k, (c, v) in enumerate(zip(close, volume, strict=True)):
            w.writerow([(first + timedelta(days=k)).strftime("%Y-%m-%d"), f"{c:.4f}", int(v)])
    written.append(p)
    streams, anomalies = ops_streams()
    p = out / "ops.jsonl"
    with p.open("w") as fh:
        for k in range(OPS_POINTS):
            ts = _ts(k)
            for name, values in streams.items():
                fh.write(json.dumps({"stream": name, "ts": ts, "value": round(values[k], 3)}))
                fh.write("\n")
    written.append(p)
    p = out / "ops_anomalies.json"
    p.write_text(json.dumps(anomalies, indent=2) + "\n")
    written.append(p)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output directory")
    for p in write_all(parser.parse_args().out):
        print(f"wrote {p} ({p.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
