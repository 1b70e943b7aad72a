"""The stateful single-step export: ``(x_t, [prev], h_k, c_k...) -> (prediction, ..., h_k', c_k')``.

O(1) work per point instead of O(W): the LSTM recurrence is written out as plain TensorFlow
ops from the trained Keras weights (gate order i, f, c, o; sigmoid gates, tanh cell, as in
``keras.layers.LSTM``), followed by the dense head and the same anchoring as the window model.
Only ``none`` and ``diff`` normalisation are stepwise (config rejects the others); ``diff``
carries the previous raw point as state ``prev``.

ONNX I/O: inputs ``x`` [B, F], ``prev`` [B, F] (diff only), ``h{k}``, ``c{k}`` [B, units_k];
outputs ``prediction`` [B, 1], ``prev_next``, ``h{k}_next``, ``c{k}_next``. Start from zero
states (and ``prev`` = the first point in diff mode). The manifest says ``mode = "stateful"``;
``streamer.model.load`` refuses such files by design: they exist for benchmarks.

Parity: stepping the ONNX graph through each test window must give the Keras window model's
prediction for that window within the export tolerance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from training.config import TrainingConfig
from training.export import PARITY_TOLERANCE, ExportError, convert, manifest_for, write
from training.export import relative_difference as rel_diff

PARITY_WINDOWS = 256


def stateful_path(cfg: TrainingConfig) -> Path:
    return cfg.output.with_name(cfg.output.stem + ".stateful.onnx")


def step_function(models: Any, cfg: TrainingConfig) -> tuple[Any, list[str]]:
    """(tf.function over the single step, its input names in order)."""
    import tensorflow as tf

    f, ti, diff = len(cfg.features), cfg.target_index, cfg.normalisation == "diff"
    norm = models.serve.get_layer("normalise")
    s = np.asarray(norm.diff_scale, np.float32)
    cells = [[np.asarray(w, np.float32) for w in layer.get_weights()] for layer in models.lstm]
    head = [
        (
            np.asarray(d.kernel.numpy(), np.float32),
            np.asarray(d.bias.numpy(), np.float32),
            d.activation,
        )
        for d in models.head
    ]
    names = ["x", *(["prev"] if diff else [])]
    specs = [tf.TensorSpec([None, f], tf.float32, name=n) for n in names]
    for k, spec in enumerate(cfg.model.lstm):
        for part in ("h", "c"):
            names.append(f"{part}{k}")
            specs.append(tf.TensorSpec([None, spec.units], tf.float32, name=f"{part}{k}"))

    @tf.function(input_signature=specs)
    def step(*args: Any) -> dict[str, Any]:
        x = args[0]
        state = list(args[2:] if diff else args[1:])
        out: dict[str, Any] = {}
        h = (x - args[1]) / s if diff else x
        for k, (kernel, recurrent, bias) in enumerate(cells):
            z = tf.matmul(h, kernel) + tf.matmul(state[2 * k], recurrent) + bias
            i, fg, g, o = tf.split(z, 4, axis=1)
            c = tf.sigmoid(fg) * state[2 * k + 1] + tf.sigmoid(i) * tf.tanh(g)
            h = tf.sigmoid(o) * tf.tanh(c)
            out[f"h{k}_next"], out[f"c{k}_next"] = h, c
        for kernel, bias, act in head:
            h = act(tf.matmul(h, kernel) + bias)
        scale = float(s[ti]) if diff else 1.0
        out["prediction"] = x[:, ti : ti + 1] + scale * h
        if diff:
            out["prev_next"] = tf.identity(x)
        return out

    return step, names


def run_sequence(
    session: Any, windows: npt.NDArray[np.float32], cfg: TrainingConfig, names: list[str]
) -> npt.NDArray[np.float32]:
    """Step an ONNX Runtime session through each window from zero state; last predictions."""
    b = len(windows)
    feeds: dict[str, npt.NDArray[np.float32]] = {}
    for k, spec in enumerate(cfg.model.lstm):
        feeds[f"h{k}"] = np.zeros((b, spec.units), np.float32)
        feeds[f"c{k}"] = np.zeros((b, spec.units), np.float32)
    start = 0
    if "prev" in names:
        feeds["prev"], start = windows[:, 0], 1
    pred = np.empty((b, 1), np.float32)
    outputs = [o.name for o in session.get_outputs()]
    for t in range(start, windows.shape[1]):
        feeds["x"] = np.ascontiguousarray(windows[:, t])
        res = dict(zip(outputs, session.run(None, feeds), strict=True))
        pred = res["prediction"]
        for name in feeds:
            if name != "x":
                feeds[name] = res[f"{name}_next"]
    return pred


def export(
    models: Any, cfg: TrainingConfig, test_windows: npt.NDArray[np.float32], fields: dict[str, Any]
) -> dict[str, Any]:
    """Convert the step graph, check it against the window model, write it with its manifest."""
    import onnxruntime as ort

    path = stateful_path(cfg)
    x = np.ascontiguousarray(test_windows[:PARITY_WINDOWS])
    with tqdm(total=3, desc="stateful export", unit="step", leave=False) as bar:
        step, names = step_function(models, cfg)
        model = convert(step)
        bar.update()
        session = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        got = run_sequence(session, x, cfg, names)
        want = models.serve(x, training=False).numpy()
        rel = rel_diff(got, want)
        if not rel <= PARITY_TOLERANCE:
            raise ExportError(
                f"stateful step graph run over {len(x)} test windows differs from the window "
                f"model by {rel:.3g} (relative), above {PARITY_TOLERANCE:g}; nothing written"
            )
        bar.update()
        write(model, manifest_for(model, cfg, "stateful", fields), path)
        bar.update()
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "parity_relative": rel,
        "parity_windows": len(x),
        "inputs": names,
    }
