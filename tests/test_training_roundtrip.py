"""Train a tiny model in seconds, export it, and serve it through streamer's own loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from streamer import manifest as mf
from streamer.model import load
from training import export as export_mod
from training import stateful
from training.config import TrainingConfig, parse
from training.data import load as load_data
from training.evaluate import evaluate
from training.pipeline import ordered_batches, strided, window_set
from training.train import Trained, run_training

pytestmark = [pytest.mark.train, pytest.mark.slow]


def tiny_config(root: Path, **over: Any) -> TrainingConfig:
    t = np.arange(600) * 0.01
    rng = np.random.default_rng(0)
    lines = ["t,value,other"] + [
        f"{a:.2f},{np.sin(2 * np.pi * a):.6f},{c:.6f}"
        for a, c in zip(t, rng.normal(size=len(t)), strict=True)
    ]
    (root / "tiny.csv").write_text("\n".join(lines) + "\n")
    d: dict[str, Any] = {
        "data": "tiny.csv",
        "time_column": "t",
        "features": ["value", "other"],
        "target": "value",
        "window": 12,
        "normalisation": "zscore",
        "output": "tiny.onnx",
        "artifacts": "runs",
        "batch_size": 32,
        "epochs": 2,
        "steps_per_epoch": 8,
        "seed": 5,
        "model": {"lstm": [{"units": 6, "return_sequences": True}, {"units": 4}], "dense": [3]},
    }
    d.update(over)
    return parse(d, root)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainingConfig, Trained]:
    cfg = tiny_config(tmp_path_factory.mktemp("tiny"))
    return cfg, run_training(cfg)


def test_exported_file_serves_the_keras_predictions(tiny: tuple[TrainingConfig, Trained]) -> None:
    cfg, trained = tiny
    model = load(cfg.output)  # the daemon's loader: manifest, checksum, shapes, probe
    ws = window_set(load_data(cfg), cfg, "test")
    ((x, _, _),) = ordered_batches(ws, strided(len(ws), 10_000), 10_000)
    served = model.predict(x)
    keras_pred = trained.models.serve(x, training=False).numpy()[:, 0]
    assert export_mod.relative_difference(served, keras_pred) <= 1e-4
    assert not np.allclose(served, x[:, -1, 0])  # it learned something beyond persistence


def test_manifest_carries_metrics_and_calibration(tiny: tuple[TrainingConfig, Trained]) -> None:
    cfg, trained = tiny
    m, _ = mf.read(cfg.output)
    assert (m.window, m.features, m.target, m.mode) == (12, ("value", "other"), "value", "window")
    for split in ("train", "validation", "test"):
        s = m.metrics[split]
        assert s["skill"] == pytest.approx(1 - s["model"]["rmse"] / s["naive"]["rmse"])
    assert m.beats_naive == (m.metrics["test"]["skill"] > 0)
    q = m.calibration.abs_error_quantiles
    assert 0 <= q["0.5"] <= q["0.9"] <= q["0.99"] <= q["0.999"]
    assert m.data_fingerprint.startswith("sha256:") and m.versions["tf2onnx"]
    assert trained.summary["export"]["parity_relative"] <= 1e-4


def test_export_refuses_a_graph_that_disagrees_with_keras(
    tiny: tuple[TrainingConfig, Trained], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg, trained = tiny
    real = export_mod.run_onnx

    def drifted(model: Any, feeds: dict[str, Any]) -> list[Any]:
        (out,) = real(model, feeds)
        return [out * 1.001]  # 1e-3 relative: ten times the tolerance

    monkeypatch.setattr(export_mod, "run_onnx", drifted)
    x = np.random.default_rng(0).normal(size=(8, 12, 2)).astype(np.float32)
    target = tmp_path / "never.onnx"
    with pytest.raises(export_mod.ExportError, match=r"above the 0\.0001 tolerance"):
        export_mod.export(trained.models.serve, cfg, x, {}, path=target)
    assert not target.exists()


def test_evaluate_reports_baselines_modes_and_plots(tiny: tuple[TrainingConfig, Trained]) -> None:
    cfg, trained = tiny
    report = evaluate(cfg)
    t = report["test"]
    assert set(t) >= {"model", "naive", "moving_average", "skill"}
    assert t["skill"] == pytest.approx(1 - t["model"]["rmse"] / t["naive"]["rmse"])
    # ONNX Runtime (evaluate) and Keras (train) scored the same windows the same way.
    assert t["model"]["rmse"] == pytest.approx(
        trained.summary["metrics"]["test"]["model"]["rmse"], rel=1e-4
    )
    assert report["beats_naive"] == (t["skill"] > 0)
    assert ("BEATS" if report["beats_naive"] else "does NOT beat") in report["verdict"]
    assert set(report["modes"]) == {"point_by_point", "full_sequence", "multi_sequence"}
    assert report["modes"]["point_by_point"]["rmse"] <= report["modes"]["full_sequence"]["rmse"]
    for name in ("point_by_point", "full_sequence", "multi_sequence", "loss"):
        png = cfg.artifacts / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert (cfg.artifacts / "report.json").is_file()


def test_stateful_export_steps_to_the_window_models_prediction(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, mode="stateful", normalisation="diff", epochs=1)
    trained = run_training(cfg)
    path = stateful.stateful_path(cfg)
    m, data = mf.read(path)
    assert m.mode == "stateful" and m.diff_scale and len(m.diff_scale) == 2
    with pytest.raises(mf.ManifestError, match="serves 'window' models"):
        load(path)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names == ["x", "prev", "h0", "c0", "h1", "c1"]
    x = np.random.default_rng(2).normal(size=(5, 12, 2)).astype(np.float32)
    stepped = stateful.run_sequence(session, x, cfg, names)[:, 0]
    want = trained.models.serve(x, training=False).numpy()[:, 0]
    assert export_mod.relative_difference(stepped, want) <= 1e-4
    assert load(cfg.output).manifest.mode == "window"  # the window model is still written


def test_calibration_is_quantiles_of_normalised_validation_residuals(
    tiny: tuple[TrainingConfig, Trained],
) -> None:
    """Oracle: recompute the manifest's calibration from the served model and error_scale."""
    cfg, _ = tiny
    model = load(cfg.output)
    ws = window_set(load_data(cfg), cfg, "validation")
    ((x, y, _),) = ordered_batches(ws, strided(len(ws), cfg.eval_max_windows), 10**6)
    r = (y[:, 0] - model.predict(x)) / model.error_scale(x)
    cal = model.manifest.calibration
    assert cal.n == len(r)
    for k, v in cal.abs_error_quantiles.items():
        assert v == pytest.approx(np.quantile(np.abs(r), float(k)), rel=1e-3, abs=1e-6), k
    assert cal.std == pytest.approx(r.std(), rel=1e-3)


def test_cli_names_the_bad_key_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from training import train as train_cmd

    p = tmp_path / "c.toml"
    p.write_text(
        '[training]\ndata = "x.csv"\nfeatures = ["v"]\ntarget = "v"\n'
        'output = "m.onnx"\nartifacts = "r"\nwindw = 5\n'
    )
    assert train_cmd.run(argparse.Namespace(config=str(p))) == 2
    assert "training.windw: unknown key" in capsys.readouterr().err
