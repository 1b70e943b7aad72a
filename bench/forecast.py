"""Forecast skill: each bundled example's model vs naive persistence vs a moving average.

For every bundled training config (the default model's ``config.toml`` and
``training/examples/*.toml``) this scores the exported model on its test split through the
trainer's own evaluation (``training.evaluate.evaluate``: the model runs in ONNX Runtime via
``streamer.model.load``, exactly as served) and reports RMSE and MAE of the model, of naive
persistence (next = last) and of the moving average of the last ``moving_average`` points,
with ``skill = 1 - RMSE_model / RMSE_naive`` (> 0 beats naive). A missing model file is
trained first with the config as it is (``--no-train`` refuses instead). No target: the
figure is reported win or lose.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench import report

REPO = Path(__file__).resolve().parent.parent
CONFIGS = (
    REPO / "config.toml",
    REPO / "training" / "examples" / "sine.toml",
    REPO / "training" / "examples" / "stock.toml",
)
COMMAND = "python -m bench forecast"


def score_example(path: Path, train_missing: bool) -> dict[str, Any]:
    """The trainer's evaluation report of one config's model (trained first if missing)."""
    from training import config as tc
    from training.evaluate import evaluate

    cfg = tc.load(path)
    trained = False
    if not cfg.output.exists():
        if not train_missing:
            raise FileNotFoundError(f"{cfg.output}: no model; run `lstmad train --config {path}`")
        from training.train import train

        print(f"{cfg.output} missing: training it from {path} ...")
        train(cfg)
        trained = True
    rep = evaluate(cfg, plots=False)
    return {"config": str(path.relative_to(REPO)), "trained_now": trained, **rep}


def run_bench(configs: tuple[Path, ...], train_missing: bool) -> list[report.Figure]:
    figures: list[report.Figure] = []
    details: dict[str, Any] = {}
    for path in configs:
        rep = score_example(path, train_missing)
        t = rep["test"]
        name = rep["model"]["name"]
        details[name] = {k: rep[k] for k in ("config", "trained_now", "model", "test", "modes")}
        for who in ("model", "naive", "moving_average"):
            figures.append(
                report.figure("forecast", f"{name} RMSE {who}", t[who]["rmse"], "raw", COMMAND)
            )
        figures.append(
            report.figure("forecast", f"{name} MAE model", t["model"]["mae"], "raw", COMMAND)
        )
        figures.append(
            report.figure("forecast", f"{name} MAE naive", t["naive"]["mae"], "raw", COMMAND)
        )
        figures.append(report.figure("forecast", f"{name} skill vs naive", t["skill"], "", COMMAND))
        ma_skill = 1.0 - t["model"]["rmse"] / t["moving_average"]["rmse"]
        figures.append(
            report.figure("forecast", f"{name} skill vs moving avg", ma_skill, "", COMMAND)
        )
    report.print_table(figures)
    print(f"results -> {report.write_results('forecast', figures, details)}")
    return figures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, action="append", help="training config(s) (default: the bundled)"
    )
    parser.add_argument("--no-train", action="store_true", help="fail if a model file is missing")


def run(args: argparse.Namespace) -> int:
    configs = tuple(p.resolve() for p in args.config) if args.config else CONFIGS
    run_bench(configs, not args.no_train)
    return 0
