"""Forecast scores and residual calibration: pure numpy over (actual, predicted) arrays.

Units: RMSE and MAE are in the target's raw units; ``skill = 1 - RMSE_model / RMSE_naive``
(> 0 beats naive persistence, 0 ties it, < 0 loses). Calibration is computed on *normalised*
residuals ``(actual - predicted) / error_scale(window)`` (``streamer.windows.error_scale``),
the unit in which the daemon compares errors with thresholds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

QUANTILES = ("0.5", "0.9", "0.95", "0.99", "0.999")

Array = npt.NDArray[np.floating]


def rmse(actual: Array, predicted: Array) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(actual, np.float64) - predicted))))


def mae(actual: Array, predicted: Array) -> float:
    return float(np.mean(np.abs(np.asarray(actual, np.float64) - predicted)))


def skill(model_rmse: float, naive_rmse: float) -> float:
    """1 - RMSE_model / RMSE_naive; 0 when naive is perfect and the model too, else -inf-safe."""
    if naive_rmse == 0:
        return 0.0 if model_rmse == 0 else -1.0
    return 1.0 - model_rmse / naive_rmse


def compare(actual: Array, model: Array, baselines: dict[str, Array]) -> dict[str, Any]:
    """{"model": {rmse, mae}, <baseline>: {rmse, mae}, ..., "skill": vs "naive", "n": count}."""
    out: dict[str, Any] = {"model": {"rmse": rmse(actual, model), "mae": mae(actual, model)}}
    for name, pred in baselines.items():
        out[name] = {"rmse": rmse(actual, pred), "mae": mae(actual, pred)}
    out["skill"] = skill(out["model"]["rmse"], out["naive"]["rmse"])
    out["n"] = len(actual)
    return out


def calibration(normalised_residuals: Array) -> dict[str, Any]:
    """Manifest calibration: quantiles of |residual|, its std, and the sample size."""
    r = np.asarray(normalised_residuals, np.float64)
    if r.size == 0 or not np.all(np.isfinite(r)):
        raise ValueError("calibration needs a non-empty, finite set of validation residuals")
    q = np.quantile(np.abs(r), [float(k) for k in QUANTILES])
    return {
        "abs_error_quantiles": {k: float(v) for k, v in zip(QUANTILES, q, strict=True)},
        "std": float(r.std()),
        "n": int(r.size),
    }


def moving_average(windows: Array, target_index: int, k: int) -> npt.NDArray[np.float64]:
    """Baseline forecast: mean of the last ``k`` target values of each window [B, W, F] -> [B]."""
    k = min(k, windows.shape[1])
    return np.asarray(windows[:, -k:, target_index], np.float64).mean(axis=1)
