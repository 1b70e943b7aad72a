"""``lstmad evaluate``: score the exported model on the test split, honestly, against baselines.

The model is loaded through ``streamer.model.load``, so what is scored is exactly what the
daemon serves (ONNX Runtime, no TensorFlow needed). On the test split of every stream:
RMSE/MAE of the model, of naive persistence (next = last) and of a moving average of the
last ``moving_average`` points; ``skill = 1 - RMSE_model / RMSE_naive``; the same per stream,
and ``test.mean_stream_skill``, the scale-free mean of the per-stream skills. On the first stream,
the three prediction modes of the reference material, plotted against the true series:

- point-by-point: every prediction from a true window;
- full sequence: one true window, then the model runs on its own predictions;
- multi-sequence: restart from true data every ``window`` points, predict ``window`` ahead.

In the autoregressive modes, non-target features are carried forward at their last observed
value (the model only forecasts the target). Writes ``report.json`` and PNGs to
``training.artifacts`` and says plainly whether the model beats naive persistence.

Python API: :func:`evaluate` (config path or TrainingConfig) -> report dict.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training import config as config_mod
from training.config import TrainingConfig

PLOT_POINTS = 1000  # cap on the test points drawn and run autoregressively


def autoregressive(
    predict: Any, starts: npt.NDArray[np.float32], steps: int, target_index: int
) -> npt.NDArray[np.float64]:
    """From true windows ``starts`` [B, W, F], predict ``steps`` points each on own predictions.

    Returns [B, steps]. Non-target features repeat their last value.
    """
    buf = np.array(starts, dtype=np.float32, copy=True)
    out = np.empty((len(buf), steps))
    for k in range(steps):
        p = predict(buf)
        out[:, k] = p
        nxt = buf[:, -1:, :].copy()
        nxt[:, 0, target_index] = p
        buf = np.concatenate([buf[:, 1:], nxt], axis=1)
    return out


def _verdict(skill: float) -> str:
    if skill > 0:
        return (
            f"the model BEATS naive persistence on the test split (skill {skill:.4f}: "
            f"RMSE {100 * skill:.1f}% lower)"
        )
    return (
        f"the model does NOT beat naive persistence on the test split (skill {skill:.4f}); "
        "naive persistence is at least as good here"
    )


def evaluate(config: str | Path | TrainingConfig, plots: bool = True) -> dict[str, Any]:
    """Score ``training.output`` on the test split; write report.json (+ PNGs); return it."""
    from tqdm import tqdm

    from streamer.model import load
    from training import data, scoring
    from training.pipeline import ordered_batches, strided, window_set

    cfg = config if isinstance(config, TrainingConfig) else config_mod.load(config)
    streams = data.load(cfg)
    model = load(cfg.output)
    m = model.manifest
    if m.window != cfg.window or m.features != cfg.features or m.target != cfg.target:
        raise config_mod.ConfigError(
            f"{cfg.output}: the model was trained for window {m.window}, features "
            f"{list(m.features)} -> {m.target!r}, not this [training] section; retrain it"
        )
    ti = cfg.target_index
    ws = window_set(streams, cfg, "test")
    idx = strided(len(ws), cfg.eval_max_windows)
    ys, ps, naive, mov, ks = [], [], [], [], []
    for x, y, k in tqdm(
        ordered_batches(ws, idx, 1024),
        desc="evaluate",
        unit="batch",
        total=math.ceil(len(idx) / 1024),
        leave=False,
    ):
        ps.append(model.predict(x).astype(np.float64))
        ys.append(y[:, ti])
        naive.append(x[:, -1, ti].astype(np.float64))
        mov.append(scoring.moving_average(x, ti, cfg.moving_average))
        ks.append(k)
    y, p, nv, mv, k = (np.concatenate(a) for a in (ys, ps, naive, mov, ks))
    test = scoring.compare(y, p, {"naive": nv, "moving_average": mv})
    per_stream = {
        s.name: scoring.compare(y[k == i], p[k == i], {"naive": nv[k == i]})
        for i, s in enumerate(streams)
        if np.any(k == i)
    }
    # Pooled raw RMSE weighs streams by their units (1000 req/s outweighs 50 % CPU); the mean
    # of per-stream skills weighs every stream alike.
    test["mean_stream_skill"] = float(np.mean([v["skill"] for v in per_stream.values()]))
    report: dict[str, Any] = {
        "model": {
            "path": str(cfg.output),
            "name": m.name,
            "version": m.version,
            "sha256": model.sha256,
        },
        "test": test,
        "per_stream": per_stream,
        "beats_naive": bool(test["skill"] > 0),
        "verdict": _verdict(test["skill"]),
    }
    report["modes"] = _modes(model, streams[0].values, ws.ranges[0], cfg, report, plots)
    cfg.artifacts.mkdir(parents=True, exist_ok=True)
    report["report_path"] = str(cfg.artifacts / "report.json")
    (cfg.artifacts / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _modes(
    model: Any,
    values: npt.NDArray[np.float64],
    test_range: tuple[int, int],
    cfg: TrainingConfig,
    report: dict[str, Any],
    plots: bool,
) -> dict[str, Any]:
    """The three prediction modes on one stream's first PLOT_POINTS test points."""
    from training import plots as plot
    from training import scoring

    lo, hi = test_range
    w, ti = cfg.window, cfg.target_index
    n = min(hi - lo, PLOT_POINTS)
    truth = values[lo : lo + n, ti]
    rows = np.arange(lo, lo + n)
    windows = np.stack([values[r - w : r] for r in rows]).astype(np.float32)
    point = model.predict(windows).astype(np.float64)
    full = autoregressive(model.predict, windows[:1], n, ti)[0]
    starts = windows[::w]
    multi = autoregressive(model.predict, starts, w, ti).reshape(-1)[:n]
    out = {
        name: {"rmse": scoring.rmse(truth, pred), "points": n}
        for name, pred in (
            ("point_by_point", point),
            ("full_sequence", full),
            ("multi_sequence", multi),
        )
    }
    if plots:
        a = cfg.artifacts
        files = [
            plot.prediction(a / "point_by_point.png", "point-by-point", truth, point),
            plot.prediction(
                a / "full_sequence.png", "full sequence (on its own predictions)", truth, full
            ),
            plot.prediction(
                a / "multi_sequence.png",
                f"multi-sequence (restart from true data every {w} points)",
                truth,
                multi,
                segment=w,
            ),
        ]
        hist = a / "history.json"
        if hist.exists():
            files.append(plot.loss_curve(a / "loss.png", json.loads(hist.read_text())))
        report["plots"] = [str(f) for f in files]
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="config.toml", help="TOML file with [training]")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def run(args: argparse.Namespace) -> int:
    import sys

    from streamer.manifest import ManifestError
    from training.data import DataError

    try:
        report = evaluate(args.config, plots=not args.no_plots)
    except (config_mod.ConfigError, DataError, ManifestError) as exc:
        print(f"lstmad evaluate: {exc}", file=sys.stderr)
        return 2
    t = report["test"]
    print(f"test split, {t['n']} windows:")
    for name in ("model", "naive", "moving_average"):
        print(f"  {name:15} RMSE {t[name]['rmse']:.6g}  MAE {t[name]['mae']:.6g}")
    print(f"  skill {t['skill']:.4f}: {report['verdict']}")
    for name, mode in report["modes"].items():
        print(f"  {name:15} RMSE {mode['rmse']:.6g} over {mode['points']} points")
    print(f"report: {report['report_path']}")
    for plot in report.get("plots", []):
        print(f"plot:   {plot}")
    return 0
