"""Peak RSS of `lstmad train` on a 500k-point and a 5M-point series (memory-bounded training).

Usage: ``.venv/bin/python bench/train_memory.py [--points 500000 5000000] [--keep DIR]``

For each size it writes a seeded CSV series (seasonality + random walk + noise) and a config
with bounded work (1 epoch of 40 batches, 2000 scored windows per split), then runs
``/usr/bin/time -v python -m training train --config ...`` in a fresh process and reads
"Maximum resident set size". Windows are drawn on the fly (training/pipeline.py), so the peak
should grow only by the series itself (8 bytes per value), not by W x that.

Targets (issue 4): peak(5M) < 3 GB and peak(5M) <= 1.5 x peak(500k). Exit status 1 if missed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 500_000

CONFIG = """[training]
name = "memory-{n}"
data = "series.csv"
features = ["value"]
target = "value"
window = 50
normalisation = "zscore"
output = "model.onnx"
artifacts = "runs"
batch_size = 64
epochs = 1
steps_per_epoch = 40
eval_max_windows = 2000
seed = 1

[training.model]
lstm = [{{ units = 16 }}]
"""


def write_series(path: Path, n: int, seed: int = 0) -> None:
    """n points written CHUNK at a time, so this script's own memory stays small."""
    rng = np.random.default_rng(seed)
    level = 100.0
    with path.open("w") as fh:
        fh.write("value\n")
        for start in range(0, n, CHUNK):
            i = np.arange(start, min(start + CHUNK, n))
            walk = level + np.cumsum(rng.normal(scale=0.05, size=len(i)))
            level = float(walk[-1])
            v = walk + 5 * np.sin(2 * np.pi * i / 288) + rng.normal(scale=0.5, size=len(i))
            fh.write("\n".join(f"{x:.4f}" for x in v))
            fh.write("\n")


def measure(n: int, workdir: Path) -> dict[str, float]:
    d = workdir / f"n{n}"
    d.mkdir(parents=True, exist_ok=True)
    write_series(d / "series.csv", n)
    (d / "train.toml").write_text(CONFIG.format(n=n))
    cmd = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        "-m",
        "training",
        "train",
        "--config",
        str(d / "train.toml"),
    ]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"training on {n} points failed (exit {proc.returncode})")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    if not m:
        raise SystemExit("no 'Maximum resident set size' in /usr/bin/time -v output")
    return {
        "points": n,
        "peak_rss_mb": int(m.group(1)) / 1024,
        "wall_s": round(wall, 1),
        "csv_mb": round((d / "series.csv").stat().st_size / 2**20, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--points", type=int, nargs=2, default=[500_000, 5_000_000], metavar=("SMALL", "LARGE")
    )
    parser.add_argument("--keep", type=Path, help="work in DIR and keep the files")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lstmad-mem-") as tmp:
        work = args.keep or Path(tmp)
        small, large = (measure(n, work) for n in args.points)
    ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
    ok = large["peak_rss_mb"] < 3072 and ratio <= 1.5
    for r in (small, large):
        print(
            f"{r['points']:>10,} points ({r['csv_mb']} MB CSV): peak RSS "
            f"{r['peak_rss_mb']:.0f} MB, wall {r['wall_s']} s"
        )
    print(
        f"ratio large/small: {ratio:.3f} (target <= 1.5); large < 3 GB: "
        f"{large['peak_rss_mb'] < 3072} -> {'PASS' if ok else 'FAIL'}"
    )
    print(json.dumps({"small": small, "large": large, "ratio": round(ratio, 3), "pass": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
