"""The ``[training]`` section: loaded once, validated once, frozen.

Relative paths (``data``, ``output``, ``artifacts``) are resolved against the directory of the
TOML file, so a config can sit next to its data. Every key is checked: an unknown key, a wrong
type or a contradictory value raises :class:`ConfigError` naming ``training.<key>`` and the fix.

Keys (all under ``[training]``; sub-tables ``model``, ``early_stopping``, ``reduce_lr``)::

    name, version            model identity written into the manifest
    data                     CSV (time column + named columns) or JSON lines (daemon input format)
    time_column              CSV only: column of RFC 3339 / epoch-ms timestamps ("" = none)
    streams                  JSONL only: stream ids to use ([] = every stream in the file)
    features, target         input columns in order; the target must be one of them
    window                   input length in points (>= 2)
    split                    [train, validation, test] fractions by time, summing to 1
    normalisation            ratio | zscore | diff | none (see streamer/windows.py)
    mode                     window | stateful (stateful also writes <output>.stateful.onnx)
    output, artifacts        model file path; directory for history, checkpoint, report, plots
    batch_size, epochs       SGD batches of windows drawn on the fly
    steps_per_epoch          batches per epoch (0 = one pass over the training windows)
    eval_max_windows         cap on windows scored per split (evenly strided), bounds memory/time
    optimizer, learning_rate adam | rmsprop | sgd
    seed                     seeds numpy, Python and TensorFlow
    moving_average           window (points) of the moving-average baseline in evaluate
    model.lstm               list of {units, dropout, return_sequences}
    model.dense              hidden units of the dense head before the 1-unit output
    early_stopping.patience / min_delta;  reduce_lr.patience / factor / min_lr
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from streamer.windows import MODES


class ConfigError(ValueError):
    """A bad ``[training]`` section. The message names the key."""


@dataclass(frozen=True)
class LSTMLayer:
    units: int = 32
    dropout: float = 0.0
    return_sequences: bool = False


@dataclass(frozen=True)
class ModelConfig:
    lstm: tuple[LSTMLayer, ...] = (LSTMLayer(32),)
    dense: tuple[int, ...] = ()


@dataclass(frozen=True)
class EarlyStopping:
    patience: int = 3
    min_delta: float = 0.0


@dataclass(frozen=True)
class ReduceLR:
    patience: int = 2
    factor: float = 0.5
    min_lr: float = 1e-5


@dataclass(frozen=True)
class TrainingConfig:
    data: Path
    features: tuple[str, ...]
    target: str
    output: Path
    artifacts: Path
    name: str = "lstmad"
    version: str = "1"
    time_column: str = ""
    streams: tuple[str, ...] = ()
    window: int = 50
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    normalisation: str = "zscore"
    mode: str = "window"
    batch_size: int = 64
    epochs: int = 10
    steps_per_epoch: int = 0
    eval_max_windows: int = 20000
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    seed: int = 42
    moving_average: int = 10
    model: ModelConfig = ModelConfig()
    early_stopping: EarlyStopping = EarlyStopping()
    reduce_lr: ReduceLR = ReduceLR()

    @property
    def target_index(self) -> int:
        return self.features.index(self.target)


_REQUIRED = ("data", "features", "target", "output", "artifacts")
_OPTIMIZERS = ("adam", "rmsprop", "sgd")


def _err(key: str, msg: str) -> ConfigError:
    return ConfigError(f"training.{key}: {msg}")


def _typed(d: dict[str, Any], key: str, kind: type, where: str, default: Any) -> Any:
    if key not in d:
        return default
    v = d[key]
    ok = isinstance(v, kind) and not (isinstance(v, bool) and kind is not bool)
    if kind is float and isinstance(v, int) and not isinstance(v, bool):
        v, ok = float(v), True
    if not ok:
        raise _err(f"{where}{key}", f"expected {kind.__name__}, got {type(v).__name__} {v!r}")
    return v


def _check_keys(d: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in d:
        if key not in allowed:
            raise _err(f"{where}{key}", f"unknown key; allowed keys are {sorted(allowed)}")


def _positive(value: float, key: str) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise _err(key, f"must be > 0, got {value}")


def _sub(d: dict[str, Any], cls: type, where: str) -> Any:
    allowed = {f.name for f in fields(cls)}
    _check_keys(d, allowed, where)
    defaults = cls()
    kw = {
        f.name: _typed(d, f.name, type(getattr(defaults, f.name)), where, getattr(defaults, f.name))
        for f in fields(cls)
    }
    return cls(**kw)


def _model(d: dict[str, Any]) -> ModelConfig:
    _check_keys(d, {"lstm", "dense"}, "model.")
    raw = d.get("lstm", [{"units": 32}])
    if not isinstance(raw, list) or not raw:
        raise _err("model.lstm", "must be a non-empty list of {units, dropout, return_sequences}")
    layers = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise _err(f"model.lstm[{i}]", "must be a table {units = .., dropout = ..}")
        if "units" not in item:
            raise _err(f"model.lstm[{i}].units", "is required")
        layer = _sub(item, LSTMLayer, f"model.lstm[{i}].")
        if layer.units < 1:
            raise _err(f"model.lstm[{i}].units", f"must be >= 1, got {layer.units}")
        if not 0 <= layer.dropout < 1:
            raise _err(f"model.lstm[{i}].dropout", f"must be in [0, 1), got {layer.dropout}")
        last = i == len(raw) - 1
        if layer.return_sequences == last:
            want = "false on the last layer" if last else "true on every layer but the last"
            raise _err(f"model.lstm[{i}].return_sequences", f"must be {want}")
        layers.append(layer)
    dense = d.get("dense", [])
    if not isinstance(dense, list) or not all(isinstance(u, int) and u > 0 for u in dense):
        raise _err("model.dense", f"must be a list of positive unit counts, got {dense!r}")
    return ModelConfig(tuple(layers), tuple(dense))


def parse(section: dict[str, Any], base: Path) -> TrainingConfig:
    """Validate a ``[training]`` table; relative paths are resolved against ``base``."""
    allowed = {f.name for f in fields(TrainingConfig)}
    _check_keys(section, allowed, "")
    for key in _REQUIRED:
        if key not in section:
            raise _err(key, "is required")
    d = TrainingConfig.__dataclass_fields__
    kw: dict[str, Any] = {}
    for key in ("name", "version", "time_column", "normalisation", "mode", "optimizer", "target"):
        kw[key] = _typed(section, key, str, "", d[key].default if key != "target" else None)
    for key in (
        "window",
        "batch_size",
        "epochs",
        "steps_per_epoch",
        "eval_max_windows",
        "seed",
        "moving_average",
    ):
        kw[key] = _typed(section, key, int, "", d[key].default)
    kw["learning_rate"] = _typed(section, "learning_rate", float, "", d["learning_rate"].default)
    for key in ("data", "output", "artifacts"):
        p = Path(_typed(section, key, str, "", None)).expanduser()
        kw[key] = (p if p.is_absolute() else base / p).resolve()
    for key in ("features", "streams"):
        v = section.get(key, [])
        if not isinstance(v, list) or not all(isinstance(s, str) and s for s in v):
            raise _err(key, f"must be a list of non-empty names, got {v!r}")
        kw[key] = tuple(v)
    feats = kw["features"]
    if not feats:
        raise _err("features", "must name at least one column")
    if len(set(feats)) != len(feats):
        raise _err("features", f"names must be distinct, got {list(feats)}")
    if kw["target"] not in feats:
        raise _err("target", f"{kw['target']!r} is not among features {list(feats)}; add it")
    if kw["normalisation"] not in MODES:
        raise _err("normalisation", f"{kw['normalisation']!r} is not one of {list(MODES)}")
    if kw["mode"] not in ("window", "stateful"):
        raise _err("mode", f"{kw['mode']!r} is not one of ['window', 'stateful']")
    if kw["mode"] == "stateful" and kw["normalisation"] in ("ratio", "zscore"):
        raise _err(
            "mode",
            "'stateful' needs normalisation 'diff' or 'none' (per-window "
            "'ratio'/'zscore' rescale the whole window at every step)",
        )
    if kw["optimizer"] not in _OPTIMIZERS:
        raise _err("optimizer", f"{kw['optimizer']!r} is not one of {list(_OPTIMIZERS)}")
    if kw["window"] < 2:
        raise _err("window", f"must be >= 2, got {kw['window']}")
    for key in ("batch_size", "epochs", "eval_max_windows", "moving_average"):
        if kw[key] < 1:
            raise _err(key, f"must be >= 1, got {kw[key]}")
    if kw["steps_per_epoch"] < 0:
        raise _err(
            "steps_per_epoch", f"must be >= 0 (0 = one full pass), got {kw['steps_per_epoch']}"
        )
    _positive(kw["learning_rate"], "learning_rate")
    split = section.get("split", [0.7, 0.15, 0.15])
    if (
        not isinstance(split, list)
        or len(split) != 3
        or not all(isinstance(s, int | float) and not isinstance(s, bool) for s in split)
    ):
        raise _err("split", f"must be [train, validation, test] fractions, got {split!r}")
    if any(s <= 0 for s in split) or abs(sum(split) - 1.0) > 1e-6:
        raise _err("split", f"fractions must be > 0 and sum to 1, got {split}")
    kw["split"] = tuple(float(s) for s in split)
    for key in ("model", "early_stopping", "reduce_lr"):
        if key in section and not isinstance(section[key], dict):
            raise _err(key, "must be a table")
    kw["model"] = _model(section.get("model", {}))
    kw["early_stopping"] = _sub(section.get("early_stopping", {}), EarlyStopping, "early_stopping.")
    kw["reduce_lr"] = _sub(section.get("reduce_lr", {}), ReduceLR, "reduce_lr.")
    if kw["early_stopping"].patience < 1:
        raise _err("early_stopping.patience", "must be >= 1")
    if kw["reduce_lr"].patience < 1:
        raise _err("reduce_lr.patience", "must be >= 1")
    if not 0 < kw["reduce_lr"].factor < 1:
        raise _err("reduce_lr.factor", f"must be in (0, 1), got {kw['reduce_lr'].factor}")
    return TrainingConfig(**kw)


def load(path: str | Path) -> TrainingConfig:
    """Read ``path`` and return its validated ``[training]`` section."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from exc
    if "training" not in doc or not isinstance(doc["training"], dict):
        raise ConfigError(f"{p}: no [training] section")
    try:
        return parse(doc["training"], p.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from exc
