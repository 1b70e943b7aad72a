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
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamer.metrics import MAX_LABELLED_STREAMS

PACKAGE_MODEL = Path(__file__).resolve().parent / "models" / "default.onnx"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key and says how to fix it."""


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: tuple[str, ...] = ("127.0.0.1:9092",)
    input_topic: str = "metrics"
    alert_topic: str = "alerts"
    dlq_topic: str = "metrics.dlq"
    predictions_topic: str = ""  # empty: no predictions topic
    group_id: str = "lstmad"
    client_id: str = "lstmad"
    auto_offset_reset: str = "earliest"  # where a group with no committed offset starts
    poll_timeout_ms: int = 200  # one loop iteration waits at most this long for messages
    max_poll_records: int = 5000  # upper bound of one batch (one inference call per route)
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    request_timeout_ms: int = 30_000
    flush_timeout_s: float = 30.0  # waiting for the broker's acks of one batch's outputs
    shutdown_timeout_s: float = 20.0  # SIGTERM to exit, hard bound
    max_message_bytes: int = 65_536  # larger input messages are dead-lettered as too_large
    max_age_s: float = 30 * 86_400.0  # points older than now - max_age_s are refused; 0: off
    max_ahead_s: float = 300.0  # points newer than now + max_ahead_s are refused
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_password: str = field(default="", repr=False)
    ssl_check_hostname: bool = True

    def security_options(self) -> dict[str, Any]:
        """kafka-python keyword arguments for authentication and TLS (only those set)."""
        opts: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL_"):
            opts |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password,
            }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            opts["ssl_check_hostname"] = self.ssl_check_hostname
            for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password"):
                if getattr(self, key):
                    opts[key] = getattr(self, key)
        return opts


@dataclass(frozen=True)
class RouteConfig:
    """Streams whose id matches one of ``streams`` (shell globs) are scored by ``path``."""

    name: str
    streams: tuple[str, ...]
    path: Path


@dataclass(frozen=True)
class ModelConfig:
    path: Path = PACKAGE_MODEL  # the default route: every stream no route claims
    intra_op_threads: int = 1
    inter_op_threads: int = 1
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


@dataclass(frozen=True)
class Config:
    kafka: KafkaConfig
    model: ModelConfig
    detect: Any  # streamer.pipeline.DetectConfig (the core's dataclass)
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


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a field's type hint; lists become tuples, ints widen to float."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(hint)):
            return None
        return _coerce(value, options[0], where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {type(value).__name__}")
        inner = typing.get_args(hint)[0]
        return tuple(_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{where} must be one of {typing.get_args(hint)}, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, str | Path):
            raise ConfigError(f"{where} must be a path string, got {value!r}")
        return Path(value)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {type(value).__name__}")
        return build(hint, value, where)  # type: ignore[arg-type]
    return value


def build(cls: type, table: Mapping[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from a TOML table: unknown keys are refused, types are checked.

    Nested dataclass fields (``[detect.anomaly]``) are built recursively. The dataclass's own
    ``__post_init__`` validation errors are re-raised as :class:`ConfigError` with the section.
    """
    hints = _hints(cls)
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(
            f"[{where}] has unknown key {unknown[0]!r}; known keys: {', '.join(known)}"
        )
    kwargs = {
        k: build(hints[k], v, f"{where}.{k}")
        if dataclasses.is_dataclass(hints[k]) and isinstance(v, dict)
        else _coerce(v, hints[k], f"[{where}] {k}")
        for k, v in table.items()
    }
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"[{where}] {exc}") from exc


def _detect_classes() -> type:
    from streamer import pipeline

    return pipeline.DetectConfig


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


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> None:
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


def _check_kafka(k: KafkaConfig) -> None:
    if not k.bootstrap_servers:
        raise ConfigError("[kafka] bootstrap_servers is empty; set it or LSTMAD_BOOTSTRAP_SERVERS")
    for key in ("input_topic", "alert_topic", "dlq_topic", "group_id"):
        if not getattr(k, key):
            raise ConfigError(f"[kafka] {key} must not be empty")
    outs = {"alert_topic": k.alert_topic, "dlq_topic": k.dlq_topic}
    if k.predictions_topic:
        outs["predictions_topic"] = k.predictions_topic
    for key, topic in outs.items():
        if topic == k.input_topic:
            raise ConfigError(f"[kafka] {key} equals input_topic {topic!r}: outputs would loop")
    if len(set(outs.values())) != len(outs):
        raise ConfigError(f"[kafka] output topics must differ, got {outs}")
    if k.auto_offset_reset not in ("earliest", "latest"):
        raise ConfigError("[kafka] auto_offset_reset must be 'earliest' or 'latest'")
    if k.security_protocol not in SECURITY_PROTOCOLS:
        raise ConfigError(f"[kafka] security_protocol must be one of {SECURITY_PROTOCOLS}")
    sasl = k.security_protocol.startswith("SASL_")
    if sasl and k.sasl_mechanism not in SASL_MECHANISMS:
        raise ConfigError(
            f"[kafka] security_protocol {k.security_protocol} needs sasl_mechanism, "
            f"one of {SASL_MECHANISMS}"
        )
    if sasl and not (k.sasl_username and k.sasl_password):
        raise ConfigError(
            "[kafka] SASL needs sasl_username and sasl_password "
            "(or LSTMAD_SASL_USERNAME and LSTMAD_SASL_PASSWORD[_FILE])"
        )
    if not sasl and (k.sasl_mechanism or k.sasl_username or k.sasl_password):
        raise ConfigError(
            "[kafka] sasl_* is set but security_protocol is "
            f"{k.security_protocol}; use SASL_PLAINTEXT or SASL_SSL"
        )
    tls_keys = [x for x in ("ssl_cafile", "ssl_certfile", "ssl_keyfile") if getattr(k, x)]
    if tls_keys and k.security_protocol not in ("SSL", "SASL_SSL"):
        raise ConfigError(
            f"[kafka] {tls_keys[0]} is set but security_protocol is "
            f"{k.security_protocol}; use SSL or SASL_SSL"
        )
    positive = ("poll_timeout_ms", "max_poll_records", "max_message_bytes", "flush_timeout_s")
    for key in (*positive, "shutdown_timeout_s"):
        if getattr(k, key) <= 0:
            raise ConfigError(f"[kafka] {key} must be > 0, got {getattr(k, key)}")
    if k.max_age_s < 0 or k.max_ahead_s < 0:
        raise ConfigError("[kafka] max_age_s and max_ahead_s must be >= 0")
    if k.heartbeat_interval_ms >= k.session_timeout_ms:
        raise ConfigError("[kafka] heartbeat_interval_ms must be below session_timeout_ms")


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
    if md.reload_poll_s < 0:
        raise ConfigError("[model] reload_poll_s must be >= 0 (0: reload on SIGHUP only)")
    if cfg.state.idle_evict_s < 0 or cfg.state.evict_interval_s <= 0:
        raise ConfigError("[state] idle_evict_s must be >= 0 and evict_interval_s > 0")
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
        detect=build(_detect_classes(), doc.get("detect", {}), "detect"),
        metrics=build(MetricsConfig, doc.get("metrics", {}), "metrics"),
        log=build(LogConfig, doc.get("log", {}), "log"),
        state=build(StateConfig, doc.get("state", {}), "state"),
    )
    _check_kafka(cfg.kafka)
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
