"""``lstmad replay FILE``: the daemon's pipeline over a file, without Kafka.

The file is JSON lines in the input-topic format, or CSV with a header: ``stream``, ``ts``
and either ``value`` or one column per model feature (empty ``stream`` cells fall back to
nothing: the row is dead-lettered as ``missing_stream``). Lines go through the same
:class:`streamer.scoring.Scorer` as Kafka messages, in batches, so the alerts equal those
of ``lstmad serve`` on the same data except for the delivery fields ``detected_at`` and
``source`` (here ``{"topic": "file:<name>", "partition": 0, "offset": <line number>}``).

Alerts go to stdout (or ``--output``) as JSON lines; ``--dead-letters FILE`` keeps the
unusable rows; a tqdm progress bar and a summary go to stderr. Backtests replay history,
so the staleness bound (``[kafka] max_age_s``) is off here; everything else is as configured.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from prometheus_client import CollectorRegistry

BATCH = 2000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="JSON lines (.jsonl/.json/.ndjson) or .csv")
    parser.add_argument(
        "--config", default=os.environ.get("LSTMAD_CONFIG", "config.toml"), help="config file"
    )
    parser.add_argument("--output", "-o", type=Path, help="alerts file (default: stdout)")
    parser.add_argument("--dead-letters", type=Path, help="write unusable rows here (JSON lines)")
    parser.add_argument(
        "--format", choices=("auto", "jsonl", "csv"), default="auto", help="input format"
    )
    parser.add_argument("--batch", type=int, default=BATCH, help="rows per pipeline call")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _number_or_text(cell: str) -> Any:
    try:
        return float(cell)
    except ValueError:
        return cell  # left as text: the decoder dead-letters it with bad_value


def csv_rows_as_json(lines: IO[str], name: str) -> Iterator[bytes]:
    """Each CSV row as the equivalent input-topic JSON message (bytes)."""
    reader = csv.DictReader(lines)
    header = reader.fieldnames or []
    for col in ("stream", "ts"):
        if col not in header:
            raise ValueError(f"{name}: CSV header lacks the {col!r} column (has {header})")
    feats = [c for c in header if c not in ("stream", "ts")]
    if not feats:
        raise ValueError(f"{name}: CSV has no value column besides 'stream' and 'ts'")
    for row in reader:
        ts_cell = (row.get("ts") or "").strip()
        ts: Any = int(ts_cell) if ts_cell.isascii() and ts_cell.isdigit() else ts_cell
        obj: dict[str, Any] = {"ts": ts}
        if row.get("stream"):
            obj["stream"] = row["stream"]
        cells = {c: _number_or_text(row.get(c) or "") for c in feats}
        if feats == ["value"]:
            obj["value"] = cells["value"]
        else:
            obj["values"] = cells
        yield json.dumps(obj).encode()


def read_messages(path: Path, fmt: str) -> Iterator[bytes]:
    if fmt == "auto":
        fmt = "csv" if path.suffix.lower() == ".csv" else "jsonl"
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8") as f:
            yield from csv_rows_as_json(f, str(path))
        return
    with path.open("rb") as fb:
        for line in fb:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line


def _count_rows(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from streamer import alerts, config
    from streamer.decode import Limits
    from streamer.kafka_io import Message
    from streamer.manifest import ManifestError
    from streamer.metrics import Metrics
    from streamer.routing import Router
    from streamer.scoring import Scorer

    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:
        print(f"lstmad replay: {exc}", file=sys.stderr)
        return 2
    if not args.file.is_file():
        print(f"lstmad replay: {args.file}: no such file", file=sys.stderr)
        return 2
    if args.batch < 1:
        print("lstmad replay: --batch must be >= 1", file=sys.stderr)
        return 2
    metrics = Metrics.create(CollectorRegistry())
    try:
        router = Router(cfg.model, cfg.detect, metrics)
    except ManifestError as exc:
        print(f"lstmad replay: {exc}", file=sys.stderr)
        return 2
    k = cfg.kafka
    scorer = Scorer(router, Limits(k.max_message_bytes, 0, int(k.max_ahead_s * 1000)), metrics)
    topic = f"file:{args.file.name}"
    out: IO[bytes] = args.output.open("wb") if args.output else sys.stdout.buffer
    dead: IO[bytes] | None = args.dead_letters.open("wb") if args.dead_letters else None
    is_csv = args.format == "csv" or (args.format == "auto" and args.file.suffix.lower() == ".csv")
    total = _count_rows(args.file) - (1 if is_csv else 0)  # the CSV header is not a row
    n_alerts = n_dead = n_rows = 0
    bar = tqdm(total=total, unit="row", disable=args.no_progress, file=sys.stderr)
    try:
        batch: list[Message] = []
        rows = read_messages(args.file, args.format)
        for offset, value in enumerate(rows, start=1):
            batch.append(Message(topic, 0, offset, None, value, int(time.time() * 1000)))
            if len(batch) >= args.batch:
                a, d = _flush(scorer, batch, out, dead, alerts.encode)
                n_alerts, n_dead, n_rows = n_alerts + a, n_dead + d, n_rows + len(batch)
                bar.update(len(batch))
                batch = []
        if batch:
            a, d = _flush(scorer, batch, out, dead, alerts.encode)
            n_alerts, n_dead, n_rows = n_alerts + a, n_dead + d, n_rows + len(batch)
            bar.update(len(batch))
    except (ValueError, UnicodeDecodeError) as exc:
        print(f"lstmad replay: {exc}", file=sys.stderr)
        return 2
    finally:
        bar.close()
        if args.output:
            out.close()
        if dead is not None:
            dead.close()
    print(
        f"lstmad replay: {n_rows} rows, {n_alerts} alert events, {n_dead} dead-lettered, "
        f"{router.stream_count()} streams",
        file=sys.stderr,
    )
    return 0


def _flush(
    scorer: Any, batch: list[Any], out: IO[bytes], dead: IO[bytes] | None, encode: Any
) -> tuple[int, int]:
    res = scorer.score(batch, time.time())
    buf = io.BytesIO()
    for _, doc in res.alerts:
        buf.write(encode(doc) + b"\n")
    out.write(buf.getvalue())
    out.flush()
    if dead is not None:
        for _, doc in res.dead:
            dead.write(encode(doc) + b"\n")
    return len(res.alerts), len(res.dead)
