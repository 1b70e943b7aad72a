"""Reading training data into per-stream numpy series, with errors that name the row.

Two formats (chosen by the file suffix):

- CSV (``.csv``): a header row, then one row per point. ``features`` name columns; the
  optional ``time_column`` must increase strictly. One stream, named after the file.
- JSON lines (``.jsonl``/``.ndjson``): the daemon's input messages, one per line,
  ``{"stream": id, "ts": ..., "value": x}`` (feature ``value``) or ``{"stream": id, "ts": ...,
  "values": {name: x, ...}}``. Points are grouped by stream; ``ts`` (RFC 3339 or epoch ms) must
  increase strictly within a stream. Several streams pool their windows into one model.

Values are parsed row by row into compact ``array('d')`` buffers, so reading never holds more
than the final float64 series (8 bytes per value) plus one line.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from array import array
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.windows import check_ratio_valid
from training.config import TrainingConfig


class DataError(ValueError):
    """Unusable training data. The message names the file, the line or stream, and the column."""


@dataclass(frozen=True)
class Stream:
    """One time series: ``values`` is float64 [T, F] in the config's feature order."""

    name: str
    values: npt.NDArray[np.float64]


def _timestamp(raw: Any, where: str) -> float:
    """RFC 3339 string or epoch milliseconds -> epoch milliseconds."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp() * 1000.0
        except ValueError:
            pass
    raise DataError(f"{where}: timestamp {raw!r} is neither RFC 3339 nor epoch milliseconds")


def _finite(raw: Any, where: str) -> float:
    try:
        v = float(raw)
    except (TypeError, ValueError):
        raise DataError(f"{where}: value {raw!r} is not a number") from None
    if not math.isfinite(v):
        raise DataError(f"{where}: value {raw!r} is not finite (NaN/inf)")
    return v


def _read_csv(path: Path, cfg: TrainingConfig) -> list[Stream]:
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file, expected a header row")
        header = [h.strip() for h in header]
        wanted = [*cfg.features, *([cfg.time_column] if cfg.time_column else [])]
        missing = [c for c in wanted if c not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; the header has {header}")
        cols = [header.index(c) for c in cfg.features]
        tcol = header.index(cfg.time_column) if cfg.time_column else -1
        buf = array("d")
        last_ts = -math.inf
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(f"{path}: line {line}: {len(row)} fields, header has {len(header)}")
            for name, j in zip(cfg.features, cols, strict=True):
                buf.append(_finite(row[j], f"{path}: line {line}, column {name!r}"))
            if tcol >= 0:
                ts = _timestamp(row[tcol], f"{path}: line {line}, column {cfg.time_column!r}")
                if ts <= last_ts:
                    raise DataError(
                        f"{path}: line {line}, column {cfg.time_column!r}: time does not "
                        "increase; sort the file by time"
                    )
                last_ts = ts
    values = np.frombuffer(buf, dtype=np.float64).reshape(-1, len(cfg.features))
    return [Stream(path.stem, values)]


def _read_jsonl(path: Path, cfg: TrainingConfig) -> list[Stream]:
    bufs: dict[str, array[float]] = {}
    last_ts: dict[str, float] = {}
    wanted = set(cfg.streams)
    with path.open() as fh:
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            where = f"{path}: line {line}"
            try:
                msg = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not JSON ({exc.msg})") from None
            if not isinstance(msg, dict) or not isinstance(msg.get("stream"), str):
                raise DataError(f"{where}: expected an object with a string 'stream'")
            sid = msg["stream"]
            if wanted and sid not in wanted:
                continue
            if "ts" not in msg:
                raise DataError(f"{where}: stream {sid!r}: no 'ts'")
            ts = _timestamp(msg["ts"], f"{where}: stream {sid!r}")
            if ts <= last_ts.get(sid, -math.inf):
                raise DataError(f"{where}: stream {sid!r}: 'ts' does not increase")
            last_ts[sid] = ts
            if isinstance(msg.get("values"), dict):
                values = msg["values"]
            elif "value" in msg:
                values = {"value": msg["value"]}
            else:
                raise DataError(f"{where}: stream {sid!r}: neither 'value' nor 'values'")
            buf = bufs.setdefault(sid, array("d"))
            for name in cfg.features:
                if name not in values:
                    raise DataError(
                        f"{where}: stream {sid!r}: missing feature {name!r} "
                        f"(message has {sorted(values)})"
                    )
                buf.append(_finite(values[name], f"{where}: stream {sid!r}, feature {name!r}"))
    absent = sorted(wanted - set(bufs))
    if absent:
        raise DataError(f"{path}: stream(s) {absent} named in training.streams are not in the file")
    if not bufs:
        raise DataError(f"{path}: no points")
    f = len(cfg.features)
    return [Stream(s, np.frombuffer(b, dtype=np.float64).reshape(-1, f)) for s, b in bufs.items()]


def split_rows(n_rows: int, cfg: TrainingConfig) -> tuple[int, int]:
    """Row boundaries (a, b) of the time split: train rows [0, a), validation [a, b), test [b, T).

    A window's split is the split of its *target* row, so no target is ever seen by two splits
    (inputs of the first validation windows reach back into train rows, as they would live).
    """
    a = round(n_rows * cfg.split[0])
    b = round(n_rows * (cfg.split[0] + cfg.split[1]))
    return a, b


def target_ranges(n_rows: int, cfg: TrainingConfig) -> dict[str, tuple[int, int]]:
    """Target rows [lo, hi) per split; window i = rows [t - W, t) predicts row t."""
    a, b = split_rows(n_rows, cfg)
    return {"train": (cfg.window, a), "validation": (a, b), "test": (b, n_rows)}


def validate(streams: list[Stream], cfg: TrainingConfig, path: Path) -> None:
    """Reject streams that cannot give every split a window, and invalid ratio-mode data."""
    for s in streams:
        ranges = target_ranges(len(s.values), cfg)
        short = [k for k, (lo, hi) in ranges.items() if hi <= lo]
        if short:
            a, _ = split_rows(len(s.values), cfg)
            raise DataError(
                f"{path}: stream {s.name!r} has {len(s.values)} rows, too short for window "
                f"{cfg.window} with split {list(cfg.split)} (no {short[0]} windows; the train "
                f"split has {a} rows and needs more than {cfg.window}); lower training.window "
                "or add data"
            )
        if cfg.normalisation == "ratio":
            try:
                check_ratio_valid(s.values, list(cfg.features))
            except ValueError as exc:
                raise DataError(f"{path}: stream {s.name!r}: {exc}") from None


def load(cfg: TrainingConfig) -> list[Stream]:
    """Read ``cfg.data`` and validate it for ``cfg``."""
    path = cfg.data
    if not path.is_file():
        raise DataError(f"{path}: training.data file not found")
    if path.suffix == ".csv":
        if cfg.streams:
            raise DataError(f"{path}: training.streams applies to JSON lines, not CSV")
        streams = _read_csv(path, cfg)
    elif path.suffix in (".jsonl", ".ndjson"):
        streams = _read_jsonl(path, cfg)
    else:
        raise DataError(f"{path}: training.data must end in .csv, .jsonl or .ndjson")
    validate(streams, cfg, path)
    return streams


def fingerprint(streams: list[Stream], cfg: TrainingConfig) -> str:
    """sha256 over stream names, feature names and the raw values: what the model saw."""
    h = hashlib.sha256()
    h.update(json.dumps(list(cfg.features)).encode())
    for s in streams:
        h.update(s.name.encode() + b"\0")
        h.update(np.ascontiguousarray(s.values).tobytes())
    return "sha256:" + h.hexdigest()
