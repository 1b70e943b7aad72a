"""Inference speed: per-point Keras ``predict`` vs per-point and batched ONNX Runtime, one run.

For the reference architecture (``bench.reference``: LSTM 100 -> LSTM 100 -> Dense, window 50,
exported with tf2onnx) and for the daemon's default model file, this measures, with the same
thread count everywhere (default 1, the daemon's default):

- ``keras_predict``: one ``model.predict`` call per window, how the reference material serves
  (for the default model: its architecture as the trainer builds it from ``config.toml``);
- ``ort_per_point``: one ``session.run`` per window, the window sliced from a series each time;
- ``ort_batch_B``: one ``session.run`` per batch of B windows, B in 1, 8, 64, 512, 4096;
- ``ort_stateful_batch_B``: where a stateful single-step export exists, one ``session.run``
  advancing B streams by one point (O(1) work per point instead of O(window)).

Every figure is a per-point throughput (windows per second, from the median call time);
ratios are against per-point Keras. Target (issue 7): batched ORT >= 300x per-point Keras
predict, reference architecture.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from bench import report
from bench.timing import measure

BATCHES = (1, 8, 64, 512, 4096)
TARGET_RATIO = 300.0
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "streamer" / "models" / "default.onnx"
TRAINING_CONFIG = DEFAULT_MODEL.parent.parent.parent / "config.toml"  # trains default.onnx
COMMAND = "python -m bench inference"


def series_windows(n: int, window: int, features: int, seed: int = 0) -> np.ndarray:
    """``n`` overlapping windows [n, window, features] of a positive random walk (float32)."""
    rng = np.random.default_rng(seed)
    walk = 100.0 + np.cumsum(rng.normal(0, 0.5, (n + window, features)), axis=0)
    walk = np.abs(walk) + 1.0
    view = np.lib.stride_tricks.sliding_window_view(walk, window, axis=0)  # [n+1, F, W]
    return np.ascontiguousarray(np.swapaxes(view, 1, 2)[:n], dtype=np.float32)


def _ort_rates(run: Any, windows: np.ndarray, budget_s: float) -> dict[str, float]:
    """Per-point throughput of ``run`` (windows [B,W,F] -> predictions) per access pattern."""
    rates: dict[str, float] = {}
    n = len(windows)
    k = iter(range(10**9))

    def one() -> None:
        i = next(k) % n
        run(windows[i : i + 1])

    rates["ort_per_point"] = 1.0 / measure(one, min_calls=50, budget_s=budget_s).per_call
    for b in BATCHES:
        batch = np.ascontiguousarray(windows[:b])
        t = measure(lambda batch=batch: run(batch), min_calls=2, budget_s=budget_s)
        rates[f"ort_batch_{b}"] = b / t.per_call
    return rates


def reference_rates(threads: int, budget_s: float) -> dict[str, float]:
    """Keras and ORT throughputs for the reference architecture (needs TensorFlow)."""
    import onnxruntime as ort

    from bench import reference as ref

    ref.quiet_tensorflow(threads)
    model = ref.build_keras()
    windows = series_windows(max(BATCHES), ref.WINDOW, ref.FEATURES)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = threads
    session = ort.InferenceSession(
        ref.export_onnx(model), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    # Same numbers from both runtimes, or the comparison is meaningless.
    probe = windows[:8]
    diff = np.abs(session.run(None, {"window": probe})[0] - model.predict(probe, verbose=0)).max()
    if diff > 1e-4:
        raise RuntimeError(f"ONNX export disagrees with Keras by {diff:g} on the probe batch")

    k = iter(range(10**9))

    def keras_one() -> None:
        i = next(k) % len(windows)
        model.predict(windows[i : i + 1], verbose=0)

    rates = {"keras_predict": 1.0 / measure(keras_one, min_calls=20, budget_s=budget_s).per_call}
    big = windows[:512]
    t = measure(lambda: model.predict(big, batch_size=512, verbose=0), 2, budget_s)
    rates["keras_predict_batch_512"] = 512 / t.per_call
    rates.update(_ort_rates(lambda x: session.run(None, {"window": x}), windows, budget_s))
    return rates


def default_model_rates(path: Path, threads: int, budget_s: float) -> dict[str, float]:
    """ORT throughputs of a lstmad model file through the daemon's own loader and predict."""
    from streamer import model as sm

    m = sm.load(path, intra_op_threads=threads, inter_op_threads=threads)
    windows = series_windows(max(BATCHES), m.window, len(m.features))
    return _ort_rates(m.predict, windows, budget_s)


def default_keras_rate(config: Path, budget_s: float) -> float:
    """Per-point Keras ``predict`` of the default model's architecture, built by the trainer
    from ``[training]`` of ``config`` (untrained weights: speed does not depend on them)."""
    from training import config as tc
    from training import graph

    cfg = tc.load(config)
    serve = graph.build(cfg, np.ones(len(cfg.features))).serve
    windows = series_windows(64, cfg.window, len(cfg.features))
    k = iter(range(10**9))

    def one() -> None:
        i = next(k) % len(windows)
        serve.predict(windows[i : i + 1], verbose=0)

    return 1.0 / measure(one, min_calls=20, budget_s=budget_s).per_call


def stateful_rates(path: Path, threads: int, budget_s: float) -> dict[str, float]:
    """Per-point throughput of a stateful single-step export (``training.stateful``): one
    ``session.run`` advances B streams by one point, its ``*_next`` outputs fed back as state.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = threads
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    inputs = {i.name: i.shape for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    loop = {f"{name}_next": name for name in inputs if f"{name}_next" in outputs}
    rates: dict[str, float] = {}
    for b in BATCHES:
        feeds = {
            name: np.ones((b, int(shape[-1])), np.float32) * (0.0 if name in loop.values() else 1)
            for name, shape in inputs.items()
        }

        def step(feeds: dict[str, np.ndarray] = feeds) -> None:
            for name, value in zip(outputs, session.run(outputs, feeds), strict=True):
                if name in loop:
                    feeds[loop[name]] = value

        rates[f"ort_stateful_batch_{b}"] = b / measure(step, 2, budget_s).per_call
    return rates


def run_bench(
    threads: int = 1,
    budget_s: float = 2.0,
    model: Path = DEFAULT_MODEL,
    stateful: Path | None = None,
) -> int:
    figures: list[report.Figure] = []
    details: dict[str, Any] = {"threads": threads, "budget_s": budget_s, "batches": BATCHES}
    rates = reference_rates(threads, budget_s)
    details["reference"] = rates
    keras = rates["keras_predict"]
    for name, rate in rates.items():
        figures.append(report.figure("inference", f"ref {name}", rate, "points/s", COMMAND))
    for name, rate in rates.items():
        if name.startswith("ort_"):
            figures.append(
                report.figure("inference", f"ref {name} / keras", rate / keras, "x", COMMAND)
            )
    best = max((r, n) for n, r in rates.items() if n.startswith("ort_batch_"))
    details["reference_best_batch"] = best[1]
    figures.append(
        report.figure(
            "inference",
            f"ref batched ORT ({best[1].removeprefix('ort_')}) / keras predict",
            best[0] / keras,
            "x",
            COMMAND,
            report.at_least(best[0] / keras, TARGET_RATIO),
        )
    )
    if model.exists():
        drates = default_model_rates(model, threads, budget_s)
        dkeras = default_keras_rate(TRAINING_CONFIG, budget_s) if model == DEFAULT_MODEL else None
        details["default_model"] = {"path": str(model), "keras_predict": dkeras, **drates}
        if dkeras:
            figures.append(
                report.figure("inference", "default keras_predict", dkeras, "points/s", COMMAND)
            )
        base, base_name = (dkeras, "default keras") if dkeras else (keras, "ref keras")
        for name, rate in drates.items():
            figures.append(report.figure("inference", f"default {name}", rate, "points/s", COMMAND))
            figures.append(
                report.figure(
                    "inference", f"default {name} / {base_name}", rate / base, "x", COMMAND
                )
            )
    else:
        details["default_model"] = f"{model} not found: run `lstmad train` first"
        print(f"note: {model} not found; only the reference architecture was measured")
    stateful = stateful or _stateful_next_to(model)
    if stateful is not None:
        srates = stateful_rates(stateful, threads, budget_s)
        details["stateful"] = {"path": str(stateful), **srates}
        for name, rate in srates.items():
            label = f"{stateful.stem.removesuffix('.stateful')} {name}"
            figures.append(report.figure("inference", label, rate, "points/s", COMMAND))
            figures.append(
                report.figure("inference", f"{label} / ref keras", rate / keras, "x", COMMAND)
            )
    else:
        details["stateful"] = "no stateful export (training mode = 'stateful' writes one)"
    report.print_table(figures)
    print(f"results -> {report.write_results('inference', figures, details)}")
    return 0


def _stateful_next_to(model: Path) -> Path | None:
    """``<model>.stateful.onnx``, else the first stateful export of the bundled examples."""
    p = model.with_name(model.stem + ".stateful.onnx")
    if p.exists():
        return p
    runs = Path(__file__).resolve().parent.parent / "training" / "runs"
    return next(iter(sorted(runs.glob("*/*.stateful.onnx"))), None)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument(
        "--budget", type=float, default=2.0, help="seconds of measurement per figure"
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="lstmad model file")
    parser.add_argument(
        "--stateful",
        type=Path,
        help="stateful single-step export (default: <model>.stateful.onnx if it exists)",
    )


def run(args: argparse.Namespace) -> int:
    return run_bench(args.threads, args.budget, args.model, args.stateful)
