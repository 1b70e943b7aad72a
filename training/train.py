"""``lstmad train``: fit the forecaster from ``[training]`` and export the model file.

Flow: load the config and data -> fit the ``diff`` scale on train rows -> fit on random
batches drawn on the fly (EarlyStopping, ReduceLROnPlateau, best checkpoint kept) -> score
model and naive persistence on train/validation/test -> calibrate on validation residuals ->
export (ONNX + manifest + parity check) -> optional stateful export. Artifacts (history,
checkpoint, summary) go to ``training.artifacts``.

Python API: :func:`train` (config path or :class:`~training.config.TrainingConfig`) -> summary.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training import config as config_mod
from training.config import TrainingConfig


def fit_diff_scale(streams: list[Any], cfg: TrainingConfig) -> npt.NDArray[np.float64]:
    """Per-feature diff scale over the train rows of every stream (pooled RMS of per-stream
    ``streamer.windows.fit_diff_scale``); all ones outside ``diff`` mode."""
    from streamer.windows import fit_diff_scale as fit_one
    from training.data import split_rows

    f = len(cfg.features)
    if cfg.normalisation != "diff":
        return np.ones(f)
    num, den = np.zeros(f), 0
    for s in streams:
        a, _ = split_rows(len(s.values), cfg)
        num += fit_one(s.values[:a]) ** 2 * (a - 1)
        den += a - 1
    return np.sqrt(num / den)


def _progress_callback(epochs: int, steps: int) -> Any:
    import keras
    from tqdm import tqdm

    class Progress(keras.callbacks.Callback):
        """One bar over all training steps; epoch losses in the postfix."""

        def on_train_begin(self, logs: Any = None) -> None:
            self.bar = tqdm(total=epochs * steps, desc="train", unit="batch")

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.bar.update()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs = logs or {}
            self.bar.set_postfix(
                epoch=epoch + 1,
                loss=f"{logs.get('loss', math.nan):.4g}",
                val=f"{logs.get('val_loss', math.nan):.4g}",
            )

        def on_train_end(self, logs: Any = None) -> None:
            self.bar.close()

    return Progress()


def _fit(
    models: Any, cfg: TrainingConfig, streams: list[Any], diff_scale: npt.NDArray[np.float64]
) -> dict[str, list[float]]:
    import keras

    from training.graph import optimizer
    from training.pipeline import eval_dataset, tf_dataset, window_set

    train_ws = window_set(streams, cfg, "train")
    val_ws = window_set(streams, cfg, "validation")
    steps = cfg.steps_per_epoch or math.ceil(len(train_ws) / cfg.batch_size)
    cfg.artifacts.mkdir(parents=True, exist_ok=True)
    ckpt = cfg.artifacts / "best.weights.h5"
    es, rl = cfg.early_stopping, cfg.reduce_lr
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=es.patience,
            min_delta=es.min_delta,
            restore_best_weights=True,
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", patience=rl.patience, factor=rl.factor, min_lr=rl.min_lr, verbose=0
        ),
        keras.callbacks.ModelCheckpoint(
            str(ckpt), monitor="val_loss", save_best_only=True, save_weights_only=True, verbose=0
        ),
        _progress_callback(cfg.epochs, steps),
    ]
    models.train.compile(optimizer=optimizer(cfg), loss="mse")
    hist = models.train.fit(
        tf_dataset(train_ws, cfg, diff_scale, cfg.seed),
        steps_per_epoch=steps,
        epochs=cfg.epochs,
        validation_data=eval_dataset(val_ws, cfg, diff_scale),
        validation_steps=math.ceil(min(len(val_ws), cfg.eval_max_windows) / 1024),
        callbacks=callbacks,
        shuffle=False,
        verbose=0,
    )
    if ckpt.exists():
        models.train.load_weights(str(ckpt))
    return {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def predict_split(
    serve_fn: Any, streams: list[Any], cfg: TrainingConfig, split: str
) -> dict[str, npt.NDArray[Any]]:
    """Keras predictions on the strided windows of ``split``: x, y, prediction, naive."""
    from tqdm import tqdm

    from training.pipeline import ordered_batches, strided, window_set

    ws = window_set(streams, cfg, split)
    idx = strided(len(ws), cfg.eval_max_windows)
    xs, ys, ps = [], [], []
    ti = cfg.target_index
    for x, y, _ in tqdm(
        ordered_batches(ws, idx, 1024),
        desc=f"score {split}",
        unit="batch",
        total=math.ceil(len(idx) / 1024),
        leave=False,
    ):
        ps.append(serve_fn(x)["prediction"].numpy()[:, 0].astype(np.float64))
        ys.append(y[:, ti])
        xs.append(x)
    x = np.concatenate(xs)
    return {
        "x": x,
        "y": np.concatenate(ys),
        "pred": np.concatenate(ps),
        "naive": x[:, -1, ti].astype(np.float64),
    }


@dataclass(frozen=True)
class Trained:
    """What a training run leaves: the summary (also in artifacts/train.json) and the models."""

    summary: dict[str, Any]
    models: Any


def train(config: str | Path | TrainingConfig) -> dict[str, Any]:
    """Train, score, calibrate and export; return the summary written to artifacts/train.json."""
    return run_training(config).summary


def run_training(config: str | Path | TrainingConfig) -> Trained:
    """:func:`train`, also returning the Keras models (for parity checks and tests)."""
    from streamer.windows import error_scale
    from training import data, scoring

    cfg = config if isinstance(config, TrainingConfig) else config_mod.load(config)
    t0 = time.monotonic()
    streams = data.load(cfg)  # bad config or data fail here, before TensorFlow's slow import
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from training import export, graph, stateful

    keras.utils.set_random_seed(cfg.seed)
    diff_scale = fit_diff_scale(streams, cfg)
    models = graph.build(cfg, diff_scale)
    history = _fit(models, cfg, streams, diff_scale)
    fit_seconds = time.monotonic() - t0
    serve_fn = export.serve_function(models.serve, cfg)

    metrics, parts = {}, {}
    for split in ("train", "validation", "test"):
        p = predict_split(serve_fn, streams, cfg, split)
        parts[split] = p
        metrics[split] = scoring.compare(p["y"], p["pred"], {"naive": p["naive"]})
    val = parts["validation"]
    scale = error_scale(
        val["x"],
        cfg.target_index,
        cfg.normalisation,  # type: ignore[arg-type]
        float(diff_scale[cfg.target_index]),
    )
    fields = {
        "diff_scale": [float(s) for s in diff_scale] if cfg.normalisation == "diff" else None,
        "data_fingerprint": data.fingerprint(streams, cfg),
        "metrics": metrics,
        "beats_naive": bool(metrics["test"]["skill"] > 0),
        "calibration": scoring.calibration((val["y"] - val["pred"]) / scale),
    }
    test_x = parts["test"]["x"]
    exported = export.export(models.serve, cfg, test_x, fields)
    summary: dict[str, Any] = {
        "config": {
            "name": cfg.name,
            "data": str(cfg.data),
            "window": cfg.window,
            "normalisation": cfg.normalisation,
            "seed": cfg.seed,
        },
        "streams": {s.name: len(s.values) for s in streams},
        "epochs_run": len(history.get("loss", [])),
        "fit_seconds": round(fit_seconds, 2),
        "metrics": metrics,
        "beats_naive": fields["beats_naive"],
        "calibration": fields["calibration"],
        "export": exported,
    }
    if cfg.mode == "stateful":
        summary["stateful_export"] = stateful.export(models, cfg, test_x, fields)
    cfg.artifacts.mkdir(parents=True, exist_ok=True)
    (cfg.artifacts / "history.json").write_text(json.dumps(history, indent=2))
    (cfg.artifacts / "train.json").write_text(json.dumps(summary, indent=2))
    return Trained(summary, models)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="config.toml", help="TOML file with [training]")


def run(args: argparse.Namespace) -> int:
    from training.data import DataError
    from training.export import ExportError

    try:
        summary = train(args.config)
    except (config_mod.ConfigError, DataError, ExportError) as exc:
        print(f"lstmad train: {exc}", file=sys.stderr)
        return 2
    t = summary["metrics"]["test"]
    verdict = "beats" if summary["beats_naive"] else "does NOT beat"
    print(
        f"wrote {summary['export']['path']} ({summary['export']['bytes']} bytes, "
        f"ONNX/Keras parity {summary['export']['parity_relative']:.2e})"
    )
    print(
        f"test RMSE model {t['model']['rmse']:.6g} vs naive {t['naive']['rmse']:.6g}: "
        f"skill {t['skill']:.4f}, the model {verdict} naive persistence"
    )
    if "stateful_export" in summary:
        st = summary["stateful_export"]
        print(f"wrote {st['path']} (stateful, parity {st['parity_relative']:.2e})")
    print(f"fit {summary['fit_seconds']} s, {summary['epochs_run']} epochs")
    return 0
