"""Detection quality: stream a NAB-layout corpus through ``lstmad replay`` and score its alerts.

Every file of the corpus becomes one stream (id ``<category>/<file>.csv``); all files are
merged into one JSON-lines file in event-time order, the daemon's input format, and replayed
by ``lstmad replay`` (``streamer.replay``: the same decode -> pipeline -> detectors code as
the Kafka path) with the given config, whose thresholds are used as they are: nothing is tuned
on the labels. Each ``open`` alert (anomaly or volatility) is a detection at its ``ts``; the
``resolved`` events are not detections. The detections are scored with NAB's three profiles
(``bench.detection.nab``) and window precision/recall/F1/time-to-detect.

Targets (issue 7): NAB standard >= 70 and window recall >= 0.9 on the synthetic corpus with
the default model and default thresholds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import json
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from bench import report
from bench.detection import corpus, nab

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "config.toml"
TARGET_NAB = 70.0
TARGET_RECALL = 0.9
COMMAND = "python -m bench detection"


def merged_messages(files: list[corpus.DataFile]) -> Iterator[bytes]:
    """Every row of every file as an input-topic JSON message, in (ts, file) order."""

    def rows(k: int, f: corpus.DataFile) -> Iterator[tuple[int, int, bytes]]:
        for t, v in zip(f.ts_ms.tolist(), f.values.tolist(), strict=True):
            msg = {"stream": f.name, "ts": t, "value": v}
            yield t, k, json.dumps(msg).encode()

    for _, _, line in heapq.merge(*(rows(k, f) for k, f in enumerate(files))):
        yield line


def parse_rfc3339_ms(text: str) -> int:
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return round(t.timestamp() * 1000)


def replay(files: list[corpus.DataFile], config: Path, workdir: Path) -> list[dict[str, Any]]:
    """Run ``lstmad replay`` over the merged corpus; return its alert documents."""
    from streamer import replay as sr

    source = workdir / "corpus.jsonl"
    with source.open("wb") as f:
        for line in merged_messages(files):
            f.write(line + b"\n")
    out = workdir / "alerts.jsonl"
    parser = argparse.ArgumentParser(prog="lstmad replay")
    sr.add_arguments(parser)
    args = parser.parse_args(
        [str(source), "--config", str(config), "--output", str(out), "--no-progress"]
    )
    code = sr.run(args)
    if code != 0:
        raise RuntimeError(f"lstmad replay exited with {code} (see its message above)")
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def detections(alerts: list[dict[str, Any]]) -> dict[str, list[tuple[int, str]]]:
    """stream -> [(ts_ms, type)] of every ``open`` alert."""
    out: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for a in alerts:
        if a.get("status") == "open":
            out[a["stream"]].append((parse_rfc3339_ms(a["ts"]), a["type"]))
    return out


def score(files: list[corpus.DataFile], found: dict[str, list[tuple[int, str]]]) -> dict[str, Any]:
    """NAB scores per profile, window metrics, and breakdowns by anomaly kind and base."""
    label_windows = sum(len(f.windows) for f in files)
    out: dict[str, Any] = {"files": len(files), "label_windows": label_windows, "nab": {}}
    masks = {}
    for f in files:
        d = np.zeros(len(f.ts_ms), dtype=bool)
        hits = [t for t, _ in found.get(f.name, [])]
        idx = np.searchsorted(f.ts_ms, hits)
        if np.any(idx >= len(f.ts_ms)) or np.any(f.ts_ms[np.minimum(idx, len(d) - 1)] != hits):
            raise ValueError(f"{f.name}: an alert's ts is not a row of the file")
        d[idx] = True
        masks[f.name] = d
    per_file: dict[str, nab.FileScore] = {}
    for pname, profile in nab.PROFILES.items():
        raw = null = 0.0
        for f in files:
            fs = nab.score_file(f.ts_ms, masks[f.name], f.windows, profile, f.name)
            raw, null = raw + fs.score, null + fs.null_score
            if pname == "standard":
                per_file[f.name] = fs
        out["nab"][pname] = {
            "score": nab.normalised(raw, null, label_windows, profile),
            "raw": raw,
            "null": null,
            "perfect": profile.tp_weight * label_windows,
        }
    onsets = {f.name: f.onsets_ms for f in files if f.onsets_ms}
    wm = nab.window_metrics({f.name: (f.ts_ms, per_file[f.name]) for f in files}, onsets)
    out["windows"] = asdict(wm)
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    for f in files:
        fs = per_file[f.name]
        c = by_kind[f.kind]
        c["files"] += 1
        c["windows"] += fs.windows
        c["detected"] += sum(1 for x in fs.first_detection if x >= 0)
        c["false_positive_alerts"] += fs.fp_rows
    out["by_kind"] = {k: dict(v) for k, v in sorted(by_kind.items())}
    out["alert_types"] = dict(Counter(t for v in found.values() for _, t in v))
    out["per_file"] = {
        f.name: {
            "windows": per_file[f.name].windows,
            "first_detection_rows": per_file[f.name].first_detection,
            "false_positive_alerts": per_file[f.name].fp_rows,
            "nab_standard_raw": per_file[f.name].score,
        }
        for f in files
    }
    return out


def run_bench(
    root: Path | None, labels: Path | None, config: Path, seed: int, rows: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lstmad-detect-") as tmp:
        work = Path(tmp)
        if root is None:
            root = corpus.generate(work / "corpus", seed=seed, rows=rows)
            source = f"synthetic (seed {seed}, {rows} rows per file)"
        else:
            source = str(root)
        files = corpus.load(root, labels)
        t0 = time.perf_counter()
        alerts = replay(files, config, work)
        elapsed = time.perf_counter() - t0
    result = score(files, detections(alerts))
    result.update(
        corpus=source,
        config=str(config),
        points=int(sum(len(f.ts_ms) for f in files)),
        replay_seconds=elapsed,
        alert_events=len(alerts),
    )
    return result


def figures(result: dict[str, Any], command: str) -> list[report.Figure]:
    b, w, n = "detection", result["windows"], result["nab"]
    return [
        report.figure(
            b,
            "NAB standard",
            n["standard"]["score"],
            "",
            command,
            report.at_least(n["standard"]["score"], TARGET_NAB),
        ),
        report.figure(b, "NAB reward_low_FP", n["reward_low_FP"]["score"], "", command),
        report.figure(b, "NAB reward_low_FN", n["reward_low_FN"]["score"], "", command),
        report.figure(
            b,
            "window recall",
            w["recall"],
            "",
            command,
            report.at_least(w["recall"], TARGET_RECALL),
        ),
        report.figure(b, "alert precision", w["precision"], "", command),
        report.figure(b, "window F1", w["f1"], "", command),
        report.figure(b, "median time to detect", w["median_ttd_rows"], "rows", command),
        report.figure(b, "median time to detect", w["median_ttd_s"], "s", command),
        report.figure(
            b, "replay throughput", result["points"] / result["replay_seconds"], "points/s", command
        ),
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", type=Path, help="NAB-layout corpus root (default: synthetic)")
    parser.add_argument("--labels", type=Path, help="labels JSON (default: <corpus>/labels.json)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="daemon config")
    parser.add_argument("--seed", type=int, default=7, help="synthetic corpus seed")
    parser.add_argument("--rows", type=int, default=4000, help="rows per synthetic file")


def run(args: argparse.Namespace) -> int:
    result = run_bench(args.corpus, args.labels, args.config, args.seed, args.rows)
    command = COMMAND if args.corpus is None else f"{COMMAND} --corpus {args.corpus}"
    figs = figures(result, command)
    report.print_table(figs)
    print("recall by anomaly kind:")
    for kind, c in result["by_kind"].items():
        print(
            f"  {kind:17s} {c['detected']:3d}/{c['windows']:3d} windows, "
            f"{c['false_positive_alerts']:3d} false-positive alerts in {c['files']} files"
        )
    if args.corpus is None:
        print(f"results -> {report.write_results('detection', figs, result)}")
    return 0
