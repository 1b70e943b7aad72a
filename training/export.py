"""Export the serve model to one ONNX file, manifest inside, checked against Keras.

Steps (a progress bar shows them): trace the serve model as a ``tf.function`` with input
``window`` float32 [batch, W, F] (dynamic batch) and output ``prediction`` [batch, 1]; convert
with tf2onnx at opset 17; run the converted graph in ONNX Runtime on the test windows and
compare with Keras (:func:`relative_difference`; above ``PARITY_TOLERANCE`` the export fails and
nothing is written); compute the graph digest, embed the manifest, write the file atomically.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from streamer import manifest as mf
from training.config import TrainingConfig

OPSET = 17
PARITY_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The exported graph does not reproduce the Keras model (or cannot be built)."""


def relative_difference(onnx_out: npt.NDArray[Any], keras_out: npt.NDArray[Any]) -> float:
    """max |onnx - keras| / max(max |keras|, 1e-12): the parity figure, relative to the output
    magnitude (elementwise ratios blow up on predictions that happen to be near zero)."""
    a = np.asarray(onnx_out, np.float64).ravel()
    b = np.asarray(keras_out, np.float64).ravel()
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))


def serve_function(serve: Any, cfg: TrainingConfig) -> Any:
    """The serve model as a traced tf.function: {"prediction": [B, 1]} from "window" [B, W, F]."""
    import tensorflow as tf

    spec = tf.TensorSpec([None, cfg.window, len(cfg.features)], tf.float32, name=mf.INPUT_NAME)

    @tf.function(input_signature=[spec])
    def predict(window: Any) -> dict[str, Any]:
        return {mf.OUTPUT_NAME: serve(window, training=False)}

    return predict


def convert(fn: Any) -> Any:
    """tf.function -> onnx.ModelProto at :data:`OPSET`."""
    import tf2onnx

    model, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=OPSET)
    return model


def run_onnx(model: Any, feeds: dict[str, npt.NDArray[Any]]) -> list[npt.NDArray[Any]]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    return list(session.run(None, feeds))


def versions() -> dict[str, str]:
    out = {}
    for name in ("tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def manifest_for(model: Any, cfg: TrainingConfig, mode: str, fields: dict[str, Any]) -> mf.Manifest:
    """A validated :class:`~streamer.manifest.Manifest` for the final graph ``model``."""
    d = {
        "schema": mf.SCHEMA,
        "name": cfg.name,
        "version": cfg.version,
        "mode": mode,
        "window": cfg.window,
        "features": list(cfg.features),
        "target": cfg.target,
        "normalisation": cfg.normalisation,
        "graph_sha256": mf.graph_digest(model),
        "versions": versions(),
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **fields,
    }
    return mf.parse(d, where=f"export of {cfg.output}")


def write(model: Any, manifest: mf.Manifest, path: Path) -> None:
    """Embed ``manifest`` and write ``path`` atomically (a reader never sees half a file)."""
    import onnx

    mf.embed(model, manifest)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save_model(model, str(tmp))
    os.replace(tmp, path)


def export(
    serve: Any,
    cfg: TrainingConfig,
    test_windows: npt.NDArray[np.float32],
    fields: dict[str, Any],
    path: Path | None = None,
) -> dict[str, Any]:
    """Convert, check parity on ``test_windows``, embed the manifest, write. Returns figures.

    ``fields`` are the manifest entries only training knows (metrics, calibration, ...).
    """
    path = path or cfg.output
    with tqdm(total=4, desc="export", unit="step", leave=False) as bar:
        fn = serve_function(serve, cfg)
        model = convert(fn)
        bar.update()
        (onnx_out,) = run_onnx(model, {mf.INPUT_NAME: test_windows})
        keras_out = fn(test_windows)[mf.OUTPUT_NAME].numpy()
        rel = relative_difference(onnx_out, keras_out)
        last = test_windows[:, -1, cfg.target_index : cfg.target_index + 1]
        if not rel <= PARITY_TOLERANCE:
            raise ExportError(
                f"ONNX Runtime and Keras differ by {rel:.3g} (relative) on {len(test_windows)} "
                f"test windows, above the {PARITY_TOLERANCE:g} tolerance; nothing was written"
            )
        bar.update()
        manifest = manifest_for(model, cfg, "window", fields)
        bar.update()
        write(model, manifest, path)
        bar.update()
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "parity_relative": rel,
        # The same gap relative to the forecast *change* (prediction - last value): stricter,
        # since the anchor's last value is copied through exactly on both sides.
        "parity_change_relative": relative_difference(onnx_out - last, keras_out - last),
        "parity_max_abs": float(np.max(np.abs(onnx_out - keras_out))),
        "parity_windows": len(test_windows),
    }
