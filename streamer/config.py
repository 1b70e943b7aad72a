"""The daemon's configuration: config.toml read once, validated once, frozen.

One dataclass per section; each module receives only its own section. ``[training]`` belongs
to the trainer and is skipped here. ``[detect]``, ``[detect.anomaly]`` and
``[detect.volatility]`` are built into the scoring core's own dataclasses by their fields, so
a knob the core adds is configurable without touching this module. Unknown keys, wrong types
and contradictions raise :class:`ConfigError` at start-up, naming the key and the fix.

Deploy-time values come from the environment and win over the file (:data:`ENV`); a secret
may also come from a file (``LSTMAD_SASL_PASSWORD_FILE``), so it never needs to sit in the
TOML. Secrets are ``repr=False``: printing a config never shows them. Relative paths are
resolved against the config file's directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamer.kafka_config import KafkaConfig
from streamer.metrics import MAX_LABELLED_STREAMS
from streamer.pipeline import DetectConfig
from streamer.tables import ConfigError, build

__all__ = ["Config", "ConfigError", "KafkaConfig", "build", "from_dict", "load", "redacted"]

PACKAGE_MODEL = Path(__file__).resolve().parent / "models" / "default.onnx"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True)
class RouteConfig:
    """Streams whose id matches one of ``streams`` (shell globs) are scored by ``path``."""

    name: str
    streams: tuple[str, ...]
    path: Path


@dataclass(frozen=True)
class ModelConfig:
    path: Path = PACKAGE_MODEL  # the default route: every stream no route claims
    # One: the forecasts already run beside the loop's thread; a second intra-op thread
    # must be woken for each of the LSTM's 50 steps and, on a busy 2-core machine, made
    # live p50 latency at 24k points/s 0.75 s against 0.06 s with one.
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    # "process": ONNX Runtime runs in a child process (streamer.inference), out of the
    # loop thread's interpreter lock; "thread": in this process, on the forecast thread.
    inference: str = "process"
    reload_poll_s: float = 10.0  # check model files for changes this often; 0: SIGHUP only
    routes: tuple[RouteConfig, ...] = ()  # first match wins, then the default route


@dataclass(frozen=True)
class MetricsConfig:
    host: str = "0.0.0.0"
    port: int = 9464  # /metrics, /healthz, /readyz; 0 picks a free port (logged)
    stream_labels: tuple[str, ...] = ()  # streams given a per-stream error histogram
    stale_after_s: float = 30.0  # /healthz fails when the loop has not turned for this long


@dataclass(frozen=True)
class LogConfig:
    level: str = "INFO"
    format: str = "json"  # "json" (one object per line) or "text"


@dataclass(frozen=True)
class StateConfig:
    idle_evict_s: float = 86_400.0  # a stream silent this long (event time) is evicted; 0: never
    evict_interval_s: float = 60.0  # how often the loop looks for idle streams
    enabled: bool = True  # per-stream state checkpointed to a compacted topic, restored on assign
    topic: str = ""  # the state topic; empty: "<[kafka] input_topic>-lstmad-state"
    restore_timeout_s: float = 60.0  # reading a partition's states back; beyond it: exit 1
    checkpoint_chunk: int = 128  # state records sent per loop iteration (the rest: later)
    retry_backoff_s: float = 0.5  # first wait after a broker failure, doubled up to the max
    retry_backoff_max_s: float = 10.0

    def topic_for(self, input_topic: str) -> str:
        return self.topic or f"{input_topic}-lstmad-state"


@dataclass(frozen=True)
class Config:
    kafka: KafkaConfig
    model: ModelConfig
    detect: DetectConfig  # the scoring core's own dataclass
    metrics: MetricsConfig
    log: LogConfig
    state: StateConfig
    source: Path | None = None


# Environment variable -> ([section], key). *_FILE variants read the value from a file.
ENV: dict[str, tuple[str, str]] = {
    "LSTMAD_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "LSTMAD_INPUT_TOPIC": ("kafka", "input_topic"),
    "LSTMAD_ALERT_TOPIC": ("kafka", "alert_topic"),
    "LSTMAD_DLQ_TOPIC": ("kafka", "dlq_topic"),
    "LSTMAD_PREDICTIONS_TOPIC": ("kafka", "predictions_topic"),
    "LSTMAD_GROUP_ID": ("kafka", "group_id"),
    "LSTMAD_CLIENT_ID": ("kafka", "client_id"),
    "LSTMAD_SECURITY_PROTOCOL": ("kafka", "security_protocol"),
    "LSTMAD_SASL_MECHANISM": ("kafka", "sasl_mechanism"),
    "LSTMAD_SASL_USERNAME": ("kafka", "sasl_username"),
    "LSTMAD_SASL_PASSWORD": ("kafka", "sasl_password"),
    "LSTMAD_SSL_CAFILE": ("kafka", "ssl_cafile"),
    "LSTMAD_SSL_CERTFILE": ("kafka", "ssl_certfile"),
    "LSTMAD_SSL_KEYFILE": ("kafka", "ssl_keyfile"),
    "LSTMAD_SSL_PASSWORD": ("kafka", "ssl_password"),
    "LSTMAD_METRICS_PORT": ("metrics", "port"),
    "LSTMAD_MODEL_PATH": ("model", "path"),
    "LSTMAD_LOG_LEVEL": ("log", "level"),
}
SECRETS = frozenset({"sasl_password", "ssl_password"})


def _env_value(env: Mapping[str, str], name: str, section: str, key: str) -> str | None:
    direct, path = env.get(name), env.get(f"{name}_FILE")
    if direct is not None and path is not None:
        raise ConfigError(f"both {name} and {name}_FILE are set; set only one of them")
    if path is not None:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={path}: cannot read it ({exc.strerror})") from exc
    return direct


OTHER_ENV = frozenset({"LSTMAD_CONFIG"})  # read by the CLI, not part of a section


def _check_env_names(env: Mapping[str, str]) -> None:
    """A misspelt LSTMAD_* variable would silently not apply: refuse it, suggest the name."""
    known = set(ENV) | {f"{n}_FILE" for n in ENV} | OTHER_ENV
    for name in sorted(env):
        if name.startswith("LSTMAD_") and name not in known:
            near = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {near[0]}?" if near else ""
            raise ConfigError(f"unknown environment variable {name}{hint}")


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    _check_env_names(env)
    for name, (section, key) in ENV.items():
        value: Any = _env_value(env, name, section, key)
        if value is None:
            continue
        if key == "bootstrap_servers":
            value = [s.strip() for s in value.split(",") if s.strip()]
        elif key == "port":
            if not value.strip().isdigit():
                raise ConfigError(f"{name}={value!r} must be a port number")
            value = int(value)
        raw.setdefault(section, {})[key] = value


def _resolve(p: Path, base: Path) -> Path:
    p = p.expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _routes(raw: Any, base: Path) -> tuple[RouteConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError("[model] routes must be an array of tables ([[model.routes]])")
    routes, names = [], set()
    for i, t in enumerate(raw):
        where = f"model.routes[{i}]"
        if not isinstance(t, dict):
            raise ConfigError(f"[{where}] must be a table with name, streams and path")
        r = build(RouteConfig, t, where)
        if not _NAME.match(r.name) or r.name == "default" or r.name in names:
            raise ConfigError(
                f"[{where}] name {r.name!r} must be a unique identifier other than 'default'"
            )
        if not r.streams or not all(r.streams):
            raise ConfigError(f"[{where}] streams must list at least one glob, e.g. ['db.*']")
        names.add(r.name)
        routes.append(dataclasses.replace(r, path=_resolve(r.path, base)))
    return tuple(routes)


def _check_rest(cfg: Config) -> None:
    m = cfg.metrics
    if not 0 <= m.port <= 65535:
        raise ConfigError(f"[metrics] port must be 0..65535, got {m.port}")
    if len(m.stream_labels) > MAX_LABELLED_STREAMS:
        raise ConfigError(
            f"[metrics] stream_labels lists {len(m.stream_labels)} streams; "
            f"at most {MAX_LABELLED_STREAMS} may carry a per-stream label"
        )
    if m.stale_after_s <= 0:
        raise ConfigError("[metrics] stale_after_s must be > 0")
    if cfg.log.level.upper() not in LOG_LEVELS:
        raise ConfigError(f"[log] level must be one of {LOG_LEVELS}, got {cfg.log.level!r}")
    if cfg.log.format not in ("json", "text"):
        raise ConfigError(f"[log] format must be 'json' or 'text', got {cfg.log.format!r}")
    md = cfg.model
    if md.intra_op_threads < 1 or md.inter_op_threads < 1:
        raise ConfigError("[model] intra_op_threads and inter_op_threads must be >= 1")
    if md.inference not in ("process", "thread"):
        raise ConfigError(f"[model] inference must be 'process' or 'thread', got {md.inference!r}")
    if md.reload_poll_s < 0:
        raise ConfigError("[model] reload_poll_s must be >= 0 (0: reload on SIGHUP only)")
    if cfg.state.idle_evict_s < 0 or cfg.state.evict_interval_s <= 0:
        raise ConfigError("[state] idle_evict_s must be >= 0 and evict_interval_s > 0")
    if cfg.state.restore_timeout_s <= 0:
        raise ConfigError("[state] restore_timeout_s must be > 0")
    if cfg.state.checkpoint_chunk < 1:
        raise ConfigError("[state] checkpoint_chunk must be >= 1")
    if not 0 < cfg.state.retry_backoff_s <= cfg.state.retry_backoff_max_s:
        raise ConfigError("[state] needs 0 < retry_backoff_s <= retry_backoff_max_s")
    if cfg.state.topic_for(cfg.kafka.input_topic) in (
        cfg.kafka.input_topic,
        cfg.kafka.alert_topic,
        cfg.kafka.dlq_topic,
        cfg.kafka.predictions_topic,
    ):
        raise ConfigError("[state] topic must differ from every [kafka] topic")
    for r in md.routes[:-1]:
        for g in r.streams:
            if g.strip("*") == "":
                raise ConfigError(
                    f"[model.routes] {r.name!r} matches every stream with {g!r}; "
                    "later routes would never match: move it last or narrow it"
                )


def from_dict(raw: Mapping[str, Any], base: Path, env: Mapping[str, str] | None = None) -> Config:
    """Validate a parsed TOML document (sections as dicts); ``env`` overrides deploy values."""
    doc: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    sections = ("kafka", "model", "detect", "metrics", "log", "state")
    for name in doc:
        if name == "training":
            continue
        if name not in sections:
            raise ConfigError(
                f"unknown section [{name}]; known: {', '.join(sections)} (and [training])"
            )
        if not isinstance(doc[name], dict):
            raise ConfigError(f"[{name}] must be a table")
    _apply_env(doc, os.environ if env is None else env)
    model_raw = dict(doc.get("model", {}))
    routes = _routes(model_raw.pop("routes", []), base)
    model = build(ModelConfig, model_raw, "model")
    model = dataclasses.replace(model, path=_resolve(model.path, base), routes=routes)
    cfg = Config(
        kafka=build(KafkaConfig, doc.get("kafka", {}), "kafka"),
        model=model,
        detect=build(DetectConfig, doc.get("detect", {}), "detect"),
        metrics=build(MetricsConfig, doc.get("metrics", {}), "metrics"),
        log=build(LogConfig, doc.get("log", {}), "log"),
        state=build(StateConfig, doc.get("state", {}), "state"),
    )
    _check_rest(cfg)
    return cfg


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate ``path``; raise :class:`ConfigError` naming the file and the key."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config file ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from exc
    try:
        cfg = from_dict(raw, p.resolve().parent, env)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    return dataclasses.replace(cfg, source=p.resolve())


def redacted(cfg: Config) -> dict[str, Any]:
    """The config as plain data for a start-up log line, secrets replaced by '***'."""

    def plain(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {
                f.name: (
                    "***"
                    if f.name in SECRETS and getattr(obj, f.name)
                    else plain(getattr(obj, f.name))
                )
                for f in dataclasses.fields(obj)
            }
        if isinstance(obj, tuple | list):
            return [plain(v) for v in obj]
        if isinstance(obj, Path):
            return str(obj)
        return obj

    return plain(cfg)
