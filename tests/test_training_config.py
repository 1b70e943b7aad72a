"""training.config: every bad key is named; the committed configs load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from training.config import ConfigError, load, parse

ROOT = Path(__file__).resolve().parents[1]


def good(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "data": "x.csv",
        "features": ["close", "volume"],
        "target": "close",
        "output": "m.onnx",
        "artifacts": "runs",
    }
    d.update(over)
    return d


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    cfg = parse(good(), tmp_path)
    assert cfg.data == tmp_path / "x.csv" and cfg.output == tmp_path / "m.onnx"
    assert cfg.target_index == 0 and cfg.window == 50 and cfg.normalisation == "zscore"
    assert cfg.model.lstm[0].units == 32 and not cfg.model.lstm[0].return_sequences


@pytest.mark.parametrize(
    ("over", "key"),
    [
        ({"epochz": 3}, "training.epochz: unknown key"),
        ({"model": {"lstm": [{"units": 4, "dropuot": 0.1}]}}, "training.model.lstm[0].dropuot"),
        ({"early_stopping": {"patiense": 1}}, "training.early_stopping.patiense"),
        ({"target": "open"}, "training.target: 'open' is not among features"),
        ({"window": 1}, "training.window: must be >= 2"),
        ({"window": "50"}, "training.window: expected int"),
        ({"normalisation": "minmax"}, "training.normalisation"),
        ({"split": [0.8, 0.3, 0.1]}, "training.split"),
        ({"features": ["a", "a"], "target": "a"}, "training.features: names must be distinct"),
        ({"mode": "stateful"}, "training.mode: 'stateful' needs normalisation 'diff' or 'none'"),
        ({"learning_rate": 0}, "training.learning_rate"),
        (
            {"model": {"lstm": [{"units": 4, "return_sequences": True}]}},
            "training.model.lstm[0].return_sequences: must be false on the last layer",
        ),
        (
            {"model": {"lstm": [{"units": 4}, {"units": 4}]}},
            "training.model.lstm[0].return_sequences: must be true",
        ),
        ({"model": {"lstm": [{"dropout": 0.1}]}}, "training.model.lstm[0].units: is required"),
        ({"reduce_lr": {"factor": 2.0}}, "training.reduce_lr.factor"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, over: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(good(**over), tmp_path)
    assert key in str(err.value)


def test_missing_required_key_is_named(tmp_path: Path) -> None:
    d = good()
    del d["target"]
    with pytest.raises(ConfigError, match=r"training\.target: is required"):
        parse(d, tmp_path)


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = parse(good(), tmp_path)
    with pytest.raises(AttributeError):
        cfg.window = 3  # type: ignore[misc]


def test_load_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[kafka]\nbootstrap = 'x'\n")
    with pytest.raises(ConfigError, match=r"c\.toml: no \[training\] section"):
        load(p)


@pytest.mark.parametrize(
    "path",
    [
        "config.toml",
        "training/examples/sine.toml",
        "training/examples/stock.toml",
        "training/examples/ops.toml",
    ],
)
def test_committed_configs_load(path: str) -> None:
    cfg = load(ROOT / path)
    assert cfg.data.is_file(), cfg.data


def test_ops_example_matches_the_default_models_config() -> None:
    """The ops example is the default config with its own output paths: they cannot drift."""
    default, ops = load(ROOT / "config.toml"), load(ROOT / "training/examples/ops.toml")
    assert default.data == ops.data
    for name in (
        "features",
        "target",
        "window",
        "split",
        "normalisation",
        "batch_size",
        "epochs",
        "steps_per_epoch",
        "learning_rate",
        "seed",
        "model",
        "early_stopping",
        "reduce_lr",
    ):
        assert getattr(default, name) == getattr(ops, name), name
    assert default.output == ROOT / "streamer/models/default.onnx"
