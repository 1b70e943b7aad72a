"""A seeded, labelled synthetic corpus in NAB layout, and the reader for any NAB-layout corpus.

Layout (NAB's): ``<root>/data/<category>/<file>.csv`` with a ``timestamp,value`` header and
timestamps like ``2026-01-01 00:05:00`` (UTC); ``<root>/labels.json`` maps
``"<category>/<file>.csv"`` to a list of ``[start, end]`` anomaly windows in that format.
This generator also writes ``<root>/meta.json`` (seed, per file: anomaly kind and the onset of
each window's anomaly) so time-to-detect can be measured from the onset.

Categories are the base signals (``seasonal`` metrics with a daily cycle, ``random_walk``,
``sine``); each file (two per base and kind by default) carries two anomalies of one kind
(spike, dip, level_shift, variance_burst, frequency_change, flat_line, drop_out, slow_drift)
or none (``clean``).
Windows follow NAB's convention: 10% of the file's length divided by its number of
anomalies, centred on the onset. Every value stays positive (ratio normalisation is defined);
a drop-out falls to 2% of the signal's level rather than to exactly zero.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BASES = ("seasonal", "random_walk", "sine")
KINDS = (
    "spike",
    "dip",
    "level_shift",
    "variance_burst",
    "frequency_change",
    "flat_line",
    "drop_out",
    "slow_drift",
)
STEP_S = 300  # one row every 5 minutes, like many NAB files
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
TS_FORMAT = "%Y-%m-%d %H:%M:%S"
WINDOW_FRACTION = 0.10  # NAB: windows cover 10% of a file, split among its anomalies


@dataclass(frozen=True)
class Series:
    """A base signal: ``values = level + cycle(t) + noise``; ``sigma`` is its local scale
    (noise std, or step std for a random walk), the unit anomaly sizes are measured in."""

    values: np.ndarray
    sigma: float
    level: float
    cycle: Callable[[np.ndarray], np.ndarray] | None  # None: no periodic component


def base_signal(kind: str, n: int, rng: np.random.Generator) -> Series:
    t = np.arange(n, dtype=np.float64)
    if kind == "seasonal":
        day = 288.0  # one day of 5-minute rows
        level, sigma = 50.0 + rng.uniform(0, 20), 1.0 + rng.uniform(0, 0.5)

        def daily(u: np.ndarray) -> np.ndarray:
            return 10.0 * np.sin(2 * np.pi * u / day) + 3.0 * np.sin(4 * np.pi * u / day + 1)

        return Series(level + daily(t) + rng.normal(0, sigma, n), sigma, level, daily)
    if kind == "random_walk":
        sigma = 0.3 + rng.uniform(0, 0.2)
        level = 100.0
        walk = level + np.cumsum(rng.normal(0, sigma, n))
        return Series(np.maximum(walk, 20.0), sigma, level, None)
    if kind == "sine":
        period = float(rng.integers(60, 140))
        level, sigma = 20.0, 0.2

        def wave(u: np.ndarray) -> np.ndarray:
            return 5.0 * np.sin(2 * np.pi * u / period)

        return Series(level + wave(t) + rng.normal(0, sigma, n), sigma, level, wave)
    raise ValueError(f"unknown base signal {kind!r}; expected one of {BASES}")


def inject(
    kind: str, s: Series, x: np.ndarray, at: int, rng: np.random.Generator, ramp: int = 100
) -> None:
    """Add one anomaly of ``kind`` to ``x`` (in place) starting at row ``at``.

    A slow drift ramps over ``ramp`` rows (the labelled window's part after the onset, so
    the drift is observable inside its window) to 12 sigma, about 0.1 sigma per row: far
    below the noise of one step, visible only cumulatively; the offset then persists.
    """
    n = len(x)
    sign = rng.choice([-1.0, 1.0])
    mag = max(8.0 * s.sigma, 0.05 * s.level)
    if kind == "spike":
        x[at] += mag * 1.5
    elif kind == "dip":
        x[at] -= min(mag * 1.5, 0.8 * x[at])
    elif kind == "level_shift":
        x[at:] += sign * min(mag, 0.4 * s.level)
    elif kind == "variance_burst":
        end = min(n, at + 100)
        x[at:end] += rng.normal(0, 5.0 * s.sigma, end - at)
    elif kind == "frequency_change":
        end = min(n, at + 300)
        t = np.arange(at, end, dtype=np.float64)
        if s.cycle is not None:  # the cycle runs three times faster, same amplitude
            x[at:end] += s.cycle(at + 3.0 * (t - at)) - s.cycle(t)
        else:  # a random walk starts to oscillate
            x[at:end] += 5.0 * s.sigma * np.sin(2 * np.pi * (t - at) / 8.0)
    elif kind == "flat_line":
        end = min(n, at + 150)
        x[at:end] = x[at - 1]
    elif kind == "drop_out":
        end = min(n, at + 30)
        x[at:end] = 0.02 * s.level
    elif kind == "slow_drift":
        end = min(n, at + ramp)
        ramp = np.linspace(0, sign * min(12.0 * s.sigma, 0.3 * s.level), end - at)
        x[at:end] += ramp
        x[end:] += ramp[-1]
    else:
        raise ValueError(f"unknown anomaly kind {kind!r}; expected one of {KINDS}")


def timestamps(n: int) -> list[str]:
    return [(EPOCH + dt.timedelta(seconds=STEP_S * i)).strftime(TS_FORMAT) for i in range(n)]


def make_file(
    base: str, kind: str | None, n: int, rng: np.random.Generator, anomalies: int = 2
) -> tuple[np.ndarray, list[int], list[tuple[int, int]]]:
    """Values, onset rows and window rows ``(l, r)`` of one file; ``kind=None`` is clean."""
    s = base_signal(base, n, rng)
    x = s.values.copy()
    if kind is None:
        return x, [], []
    probation = min(int(0.15 * n), 750)
    width = int(WINDOW_FRACTION * n / anomalies)
    # Evenly spaced slots after the probationary period, jittered, windows never overlapping.
    span = (n - probation - width) / anomalies
    onsets = [
        int(probation + width // 2 + k * span + rng.uniform(0.1, 0.6) * span)
        for k in range(anomalies)
    ]
    for at in onsets:
        inject(kind, s, x, at, rng, ramp=width - width // 2)
    x = np.maximum(x, 0.01 * s.level)  # keep values positive
    windows = [(at - width // 2, min(n - 1, at + width - width // 2 - 1)) for at in onsets]
    return x, onsets, windows


def generate(
    root: Path, seed: int = 7, rows: int = 4000, copies: int = 2, clean_per_base: int = 3
) -> Path:
    """Write the corpus under ``root`` (see the module docstring); returns ``root``.

    ``copies`` files per base signal and anomaly kind (``<kind>_<i>.csv``, each with its own
    random draw), plus ``clean_per_base`` files without anomalies (``clean_<i>.csv``)."""
    rng = np.random.default_rng(seed)
    ts = timestamps(rows)
    labels: dict[str, list[list[str]]] = {}
    meta: dict[str, object] = {"seed": seed, "rows": rows, "step_s": STEP_S, "files": {}}
    files: dict[str, object] = {}
    plan: list[tuple[str, str | None, str]] = []
    for base in BASES:
        plan += [(base, kind, f"{kind}_{i}.csv") for kind in KINDS for i in range(copies)]
        plan += [(base, None, f"clean_{i}.csv") for i in range(clean_per_base)]
    for base, kind, name in plan:
        values, onsets, windows = make_file(base, kind, rows, rng)
        rel = f"{base}/{name}"
        path = root / "data" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["timestamp", "value"])
            w.writerows(zip(ts, (f"{v:.6g}" for v in values), strict=True))
        labels[rel] = [[ts[lo], ts[hi]] for lo, hi in windows]
        files[rel] = {"kind": kind or "clean", "onsets": [ts[o] for o in onsets]}
    meta["files"] = files
    (root / "labels.json").write_text(json.dumps(labels, indent=1, sort_keys=True) + "\n")
    (root / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return root


@dataclass(frozen=True)
class DataFile:
    """One corpus file: epoch-ms timestamps, values, windows (ms) and anomaly onsets (ms)."""

    name: str
    ts_ms: np.ndarray
    values: np.ndarray
    windows: list[tuple[int, int]]
    onsets_ms: list[int]
    kind: str


def parse_ts(text: str, where: str) -> int:
    """A NAB timestamp (``YYYY-MM-DD HH:MM:SS[.ffffff]``, UTC) -> epoch milliseconds."""
    try:
        t = dt.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ValueError(f"{where}: bad timestamp {text!r} (expected {TS_FORMAT})") from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return round(t.timestamp() * 1000)


def read_csv(path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    ts: list[int] = []
    vals: list[float] = []
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["timestamp", "value"]:
            raise ValueError(f"{name}: header must start with 'timestamp,value', got {header}")
        for lineno, row in enumerate(reader, start=2):
            where = f"{name} line {lineno}"
            if len(row) < 2:
                raise ValueError(f"{where}: expected timestamp,value, got {row}")
            ts.append(parse_ts(row[0], where))
            try:
                vals.append(float(row[1]))
            except ValueError as exc:
                raise ValueError(f"{where}: column 'value' is not a number: {row[1]!r}") from exc
    return np.asarray(ts, dtype=np.int64), np.asarray(vals, dtype=np.float64)


def load(root: Path, labels: Path | None = None) -> list[DataFile]:
    """Read a NAB-layout corpus: every labelled ``data/<category>/<file>.csv`` in ``root``."""
    labels_path = labels or root / "labels.json"
    try:
        raw = json.loads(labels_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{labels_path}: cannot read the labels JSON: {exc}") from exc
    meta_path = root / "meta.json"
    meta = json.loads(meta_path.read_text())["files"] if meta_path.exists() else {}
    out = []
    for name in sorted(raw):
        path = root / "data" / name
        if not path.exists():
            raise ValueError(f"{labels_path}: labelled file {name!r} is not in {root / 'data'}")
        ts, values = read_csv(path, name)
        wins = [
            (parse_ts(a, f"{labels_path} {name}"), parse_ts(b, f"{labels_path} {name}"))
            for a, b in raw[name]
        ]
        info = meta.get(name, {})
        onsets = [parse_ts(o, f"{meta_path} {name}") for o in info.get("onsets", [])]
        out.append(DataFile(name, ts, values, wins, onsets, info.get("kind", "unknown")))
    return out
