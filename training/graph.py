"""The Keras graph: raw window -> per-window normalisation -> LSTM stack -> anchored raw forecast.

The two custom layers mirror ``streamer.windows`` exactly (same formulas, same epsilon), so the
exported ONNX file maps raw windows to raw next values and the daemon needs no preprocessing:

- :class:`Normalise` turns a raw window [B, W, F] into the network's input ([B, W-1, F] in
  ``diff`` mode, [B, W, F] otherwise).
- :class:`Anchor` returns ``last_target + error_scale(window) * output``, so a network that
  outputs 0 is naive persistence.

:func:`build` returns two models sharing every layer: ``train`` (raw window -> normalised
change, fitted with MSE on :func:`training.pipeline.normalised_target`) and ``serve`` (raw
window -> raw prediction [B, 1], what gets exported).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import ops

from streamer.windows import ZSCORE_EPS
from training.config import TrainingConfig


def _zscore_parts(w: Any) -> tuple[Any, Any]:
    mean = ops.mean(w, axis=1, keepdims=True)
    std = ops.sqrt(ops.mean(ops.square(w - mean), axis=1, keepdims=True))
    return mean, std + ZSCORE_EPS * (1.0 + ops.abs(mean))


class Normalise(keras.layers.Layer):
    """Raw window -> normalised network input, per window (``diff`` uses the fitted scale)."""

    def __init__(self, mode: str, diff_scale: list[float], **kw: Any) -> None:
        super().__init__(**kw)
        self.mode = mode
        self.diff_scale = [float(s) for s in diff_scale]

    def call(self, w: Any) -> Any:
        if self.mode == "ratio":
            return w / w[:, :1, :] - 1.0
        if self.mode == "zscore":
            mean, scale = _zscore_parts(w)
            return (w - mean) / scale
        if self.mode == "diff":
            s = ops.convert_to_tensor(np.asarray(self.diff_scale, np.float32))
            return (w[:, 1:, :] - w[:, :-1, :]) / s
        return w

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode, "diff_scale": self.diff_scale}


class Anchor(keras.layers.Layer):
    """(raw window, network output [B, 1]) -> last target + error_scale * output  [B, 1]."""

    def __init__(self, mode: str, target_index: int, diff_scale: list[float], **kw: Any) -> None:
        super().__init__(**kw)
        self.mode = mode
        self.target_index = target_index
        self.diff_scale = [float(s) for s in diff_scale]

    def call(self, inputs: Any) -> Any:
        w, out = inputs
        t = w[:, :, self.target_index : self.target_index + 1]  # [B, W, 1]
        last = t[:, -1, :]
        if self.mode == "ratio":
            scale = ops.abs(t[:, 0, :])
        elif self.mode == "zscore":
            scale = _zscore_parts(t)[1][:, 0, :]
        elif self.mode == "diff":
            scale = self.diff_scale[self.target_index]
        else:
            return last + out
        return last + scale * out

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "mode": self.mode,
            "target_index": self.target_index,
            "diff_scale": self.diff_scale,
        }


@dataclass(frozen=True)
class Models:
    train: keras.Model
    serve: keras.Model
    lstm: tuple[keras.layers.LSTM, ...]
    head: tuple[keras.layers.Dense, ...]


def build(cfg: TrainingConfig, diff_scale: np.ndarray) -> Models:
    """The train and serve models for ``cfg`` (layers shared; the seed is set by the caller)."""
    f = len(cfg.features)
    scale = [float(s) for s in diff_scale]
    raw = keras.Input((cfg.window, f), name="window", dtype="float32")
    h = Normalise(cfg.normalisation, scale, name="normalise")(raw)
    lstm = []
    for i, spec in enumerate(cfg.model.lstm):
        layer = keras.layers.LSTM(
            spec.units, return_sequences=spec.return_sequences, name=f"lstm_{i}"
        )
        lstm.append(layer)
        h = layer(h)
        if spec.dropout > 0:
            h = keras.layers.Dropout(spec.dropout, name=f"dropout_{i}")(h)
    head = [
        keras.layers.Dense(u, activation="tanh", name=f"dense_{i}")
        for i, u in enumerate(cfg.model.dense)
    ]
    # Start the output at zero: an untrained model is exactly naive persistence.
    head.append(keras.layers.Dense(1, name="change", kernel_initializer="zeros"))
    for layer in head:
        h = layer(h)
    pred = Anchor(cfg.normalisation, cfg.target_index, scale, name="prediction")([raw, h])
    return Models(
        keras.Model(raw, h, name="train"),
        keras.Model(raw, pred, name="serve"),
        tuple(lstm),
        tuple(head),
    )


def optimizer(cfg: TrainingConfig) -> keras.optimizers.Optimizer:
    cls = {
        "adam": keras.optimizers.Adam,
        "rmsprop": keras.optimizers.RMSprop,
        "sgd": keras.optimizers.SGD,
    }[cfg.optimizer]
    return cls(learning_rate=cfg.learning_rate)
