"""What the interpreter lock costs the daemon's inference worker.

    .venv/bin/python -m bench.gil_handoff [--windows 2700]

The daemon computes a batch's forecasts on a worker thread while its loop thread polls and
decodes the next batch (``streamer.daemon``). ONNX Runtime releases the GIL inside each
``session.run``, but the worker must take it back between chunks; while the loop thread
runs pure Python (kafka-python's record parsing, the decoder), each hand-back waits up to
the switch interval. This prints the time of one ``OnnxModel.predict`` of ``--windows``
windows of the default model alone and beside a busy pure-Python thread, per chunk size
and switch interval (best of ``--repeat``), then the same through the inference process
(``[model] inference = "process"``, :mod:`streamer.inference`), whose chunk loop does not
share this interpreter's lock.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import numpy as np

from streamer import model as model_mod
from streamer.inference import InferenceProcess

DEFAULT = model_mod.__file__.rsplit("/", 1)[0] + "/models/default.onnx"


def timed(m: model_mod.OnnxModel, x: np.ndarray, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        m.predict(x)
        best = min(best, time.perf_counter() - t)
    return best


def beside_busy(m: model_mod.OnnxModel, x: np.ndarray, repeat: int) -> tuple[float, float]:
    """(alone, beside a busy pure-Python thread) best times of ``m.predict(x)``."""
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            sum(i * i for i in range(1000))

    alone = timed(m, x, repeat)
    th = threading.Thread(target=busy)
    th.start()
    try:
        return alone, timed(m, x, repeat)
    finally:
        stop.set()
        th.join()


def show(label: str, alone: float, beside: float) -> None:
    print(
        f"  {label}: alone {alone * 1e3:6.1f} ms, beside a busy Python thread "
        f"{beside * 1e3:6.1f} ms ({beside / alone:.1f}x)"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=2700)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    if args.windows < 1 or args.repeat < 1:
        raise SystemExit("--windows and --repeat must be >= 1")
    m = model_mod.load(DEFAULT)
    rng = np.random.default_rng(7)
    x = (rng.random((args.windows, m.window, len(m.features))) + 1).astype(np.float32) * 50
    chunk0, switch0 = model_mod.MAX_BATCH, sys.getswitchinterval()
    print(f"{args.windows} windows of {DEFAULT}, best of {args.repeat}")
    try:
        for chunk in (64, 512):
            model_mod.MAX_BATCH = chunk
            for switch in (0.005, 0.001):
                sys.setswitchinterval(switch)
                show(f"chunk {chunk:4d}, switch interval {switch * 1e3:.0f} ms",
                     *beside_busy(m, x, args.repeat))  # fmt: skip
    finally:
        model_mod.MAX_BATCH = chunk0
        sys.setswitchinterval(switch0)
    remote = InferenceProcess()
    try:
        served = model_mod.load(DEFAULT, remote=remote)
        show(
            f"inference process (chunk {model_mod.MAX_BATCH})", *beside_busy(served, x, args.repeat)
        )
    finally:
        remote.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
