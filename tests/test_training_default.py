"""The committed default model is reproducible from the committed config and data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from streamer import manifest as mf
from training import config, data
from training.examples.generate import write_all
from training.train import train

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "streamer/models/default.onnx"


def test_generator_reproduces_the_committed_examples(tmp_path: Path) -> None:
    for p in write_all(tmp_path):
        assert p.read_bytes() == (ROOT / "training/examples" / p.name).read_bytes(), p.name


def test_default_model_is_small_and_was_trained_on_the_committed_data() -> None:
    assert DEFAULT.stat().st_size < 200_000
    m, _ = mf.read(DEFAULT)
    cfg = config.load(ROOT / "config.toml")
    assert m.data_fingerprint == data.fingerprint(data.load(cfg), cfg)
    assert (m.window, m.features, m.normalisation) == (cfg.window, cfg.features, "zscore")
    assert m.beats_naive is True


@pytest.mark.train
@pytest.mark.slow
def test_retraining_from_config_toml_reproduces_the_default_models_metrics(
    tmp_path: Path,
) -> None:
    cfg = config.load(ROOT / "config.toml")
    cfg = dataclasses.replace(cfg, output=tmp_path / "default.onnx", artifacts=tmp_path / "runs")
    summary = train(cfg)
    committed, _ = mf.read(DEFAULT)
    for split in ("train", "validation", "test"):
        got, want = summary["metrics"][split], committed.metrics[split]
        assert got["n"] == want["n"], split
        assert got["naive"]["rmse"] == pytest.approx(want["naive"]["rmse"], rel=1e-9), split
        # Same seed, same data: only float round-off across CPUs/oneDNN builds may differ.
        assert got["model"]["rmse"] == pytest.approx(want["model"]["rmse"], rel=0.02), split
        assert got["skill"] == pytest.approx(want["skill"], abs=0.01), split
    q_got = summary["calibration"]["abs_error_quantiles"]
    for k, v in committed.calibration.abs_error_quantiles.items():
        assert q_got[k] == pytest.approx(v, rel=0.05), k
