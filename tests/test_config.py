"""config.toml is validated once: unknown keys and contradictions are named; env wins."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from streamer import config
from streamer.config import ConfigError, from_dict, load, redacted

REPO = Path(__file__).resolve().parent.parent


def cfg(raw: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> config.Config:
    return from_dict(raw or {}, Path("/etc/lstmad"), env or {})


def test_the_repository_config_loads_and_keeps_training_out() -> None:
    c = load(REPO / "config.toml", env={})
    assert c.kafka.input_topic == "metrics" and c.kafka.security_protocol == "PLAINTEXT"
    assert c.model.path == REPO / "streamer" / "models" / "default.onnx"
    assert c.model.path.is_file()
    assert c.detect.anomaly.warmup >= 1
    assert not hasattr(c, "training")


def test_the_kubernetes_config_loads_with_its_secrets_from_env() -> None:
    env = {"LSTMAD_SASL_USERNAME": "u", "LSTMAD_SASL_PASSWORD": "p"}
    c = load(REPO / "deploy" / "kubernetes" / "config.toml", env=env)
    assert c.kafka.sasl_mechanism == "SCRAM-SHA-512" and c.kafka.sasl_password == "p"


def test_defaults_are_usable() -> None:
    c = cfg()
    assert c.kafka.alert_topic == "alerts" and c.metrics.port == 9464
    assert c.model.path == config.PACKAGE_MODEL


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"kafka": {"bootstrap": ["x"]}}, r"\[kafka\] has unknown key 'bootstrap'"),
        ({"kafak": {}}, r"unknown section \[kafak\]"),
        ({"detect": {"anomaly": {"warn_treshold": 3}}}, r"\[detect.anomaly\] has unknown key"),
        ({"detect": {"volatility": {"nope": 1}}}, r"\[detect.volatility\] has unknown key 'nope'"),
        ({"detect": {"max_streams": 0}}, r"\[detect\].*max_streams"),
        ({"kafka": {"poll_timeout_ms": 1.5}}, r"poll_timeout_ms must be an integer"),
        ({"kafka": {"ssl_check_hostname": "yes"}}, r"ssl_check_hostname must be true or false"),
        ({"kafka": {"alert_topic": "metrics"}}, r"alert_topic equals input_topic"),
        ({"kafka": {"dlq_topic": "alerts"}}, r"output topics must differ"),
        ({"kafka": {"security_protocol": "TLS"}}, r"security_protocol must be one of"),
        ({"kafka": {"security_protocol": "SASL_SSL"}}, r"needs sasl_mechanism"),
        (
            {"kafka": {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}},
            r"SASL needs sasl_username and sasl_password",
        ),
        ({"kafka": {"sasl_mechanism": "PLAIN"}}, r"sasl_\* is set but security_protocol"),
        ({"kafka": {"ssl_cafile": "/ca.pem"}}, r"ssl_cafile is set but security_protocol"),
        ({"kafka": {"heartbeat_interval_ms": 20000}}, r"heartbeat_interval_ms must be below"),
        ({"kafka": {"shutdown_timeout_s": 0}}, r"shutdown_timeout_s must be > 0"),
        ({"metrics": {"port": 70000}}, r"\[metrics\] port"),
        ({"metrics": {"stream_labels": [f"s{i}" for i in range(101)]}}, r"at most 100"),
        ({"log": {"level": "LOUD"}}, r"\[log\] level"),
        ({"log": {"format": "xml"}}, r"\[log\] format"),
        ({"model": {"intra_op_threads": 0}}, r"intra_op_threads"),
        ({"model": {"inference": "gpu"}}, r"\[model\] inference must be .process. or .thread."),
        ({"model": {"routes": {"name": "x"}}}, r"array of tables"),
        ({"model": {"routes": [{"name": "db", "streams": []}]}}, r"missing|streams|path"),
        (
            {"model": {"routes": [{"name": "default", "streams": ["a*"], "path": "m.onnx"}]}},
            r"unique identifier other than 'default'",
        ),
        (
            {
                "model": {
                    "routes": [
                        {"name": "all", "streams": ["*"], "path": "a.onnx"},
                        {"name": "db", "streams": ["db*"], "path": "b.onnx"},
                    ]
                }
            },
            r"later routes would never match",
        ),
        ({"state": {"evict_interval_s": 0}}, r"\[state\]"),
    ],
)
def test_bad_configs_are_named(raw: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        cfg(raw)


def test_core_fields_are_type_checked_by_their_hints() -> None:
    from typing import get_type_hints

    from streamer.detect import AnomalyConfig

    hints = get_type_hints(AnomalyConfig)
    name = next(f.name for f in dataclasses.fields(AnomalyConfig) if hints[f.name] is float)
    with pytest.raises(ConfigError, match=rf"\[detect.anomaly\] {name} must be a number"):
        cfg({"detect": {"anomaly": {name: "5"}}})
    assert getattr(cfg({"detect": {"anomaly": {name: 7}}}).detect.anomaly, name) == 7.0


def test_env_overrides_deploy_time_values(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    env = {
        "LSTMAD_BOOTSTRAP_SERVERS": "k1:9092, k2:9092",
        "LSTMAD_INPUT_TOPIC": "in",
        "LSTMAD_ALERT_TOPIC": "out",
        "LSTMAD_DLQ_TOPIC": "dead",
        "LSTMAD_GROUP_ID": "g",
        "LSTMAD_METRICS_PORT": "9999",
        "LSTMAD_SECURITY_PROTOCOL": "SASL_SSL",
        "LSTMAD_SASL_MECHANISM": "SCRAM-SHA-512",
        "LSTMAD_SASL_USERNAME": "svc",
        "LSTMAD_SASL_PASSWORD_FILE": str(secret),
        "LSTMAD_SSL_CAFILE": "/etc/ca.pem",
    }
    c = cfg({"kafka": {"input_topic": "file-topic"}}, env)
    k = c.kafka
    assert k.bootstrap_servers == ("k1:9092", "k2:9092") and k.input_topic == "in"
    assert (k.alert_topic, k.dlq_topic, k.group_id) == ("out", "dead", "g")
    assert c.metrics.port == 9999 and k.sasl_password == "s3cret"
    opts = k.security_options()
    assert opts == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "s3cret",
        "ssl_check_hostname": True,
        "ssl_cafile": "/etc/ca.pem",
    }


def test_env_errors_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LSTMAD_METRICS_PORT"):
        cfg(env={"LSTMAD_METRICS_PORT": "http"})
    with pytest.raises(ConfigError, match="only one"):
        cfg(env={"LSTMAD_SASL_PASSWORD": "a", "LSTMAD_SASL_PASSWORD_FILE": "/x"})
    with pytest.raises(ConfigError, match=r"LSTMAD_SASL_PASSWORD_FILE=.*cannot read"):
        cfg(env={"LSTMAD_SASL_PASSWORD_FILE": str(tmp_path / "missing")})


def test_misspelt_env_variables_are_refused() -> None:
    with pytest.raises(
        ConfigError, match="LSTMAD_BOOTSTRAP_SERVER; did you mean LSTMAD_BOOTSTRAP_SERVERS"
    ):
        cfg(env={"LSTMAD_BOOTSTRAP_SERVER": "x:9092"})
    assert (
        cfg(env={"LSTMAD_CONFIG": "/etc/lstmad.toml", "OTHER": "1"}).kafka.input_topic == "metrics"
    )


def test_secrets_never_show(tmp_path: Path) -> None:
    env = {
        "LSTMAD_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "LSTMAD_SASL_MECHANISM": "PLAIN",
        "LSTMAD_SASL_USERNAME": "u",
        "LSTMAD_SASL_PASSWORD": "hunter2",
    }
    c = cfg(env=env)
    assert "hunter2" not in repr(c) and "hunter2" not in str(redacted(c))
    assert redacted(c)["kafka"]["sasl_password"] == "***"


def test_relative_paths_are_resolved_against_the_config_file(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "lstmad.toml"
    p.parent.mkdir()
    p.write_text(
        '[model]\npath = "m/default.onnx"\n'
        '[[model.routes]]\nname = "db"\nstreams = ["db*.*"]\npath = "../db.onnx"\n'
        '[training]\nanything = "the trainer validates it"\n'
    )
    c = load(p, env={})
    assert c.model.path == tmp_path / "sub" / "m" / "default.onnx"
    assert c.model.routes == (config.RouteConfig("db", ("db*.*",), tmp_path / "db.onnx"),)
    assert c.source == p


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[kafka\n")
    with pytest.raises(ConfigError, match=r"bad.toml: not valid TOML"):
        load(p, env={})
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "none.toml", env={})
    p.write_text("[kafka]\nbogus = 1\n")
    with pytest.raises(ConfigError, match=r"bad.toml: \[kafka\] has unknown key 'bogus'"):
        load(p, env={})


def test_sections_are_frozen() -> None:
    c = cfg()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.kafka.input_topic = "x"  # type: ignore[misc]
