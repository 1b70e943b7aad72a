"""`lstmad serve` start-up: bad config or model files exit 2 with the key or file named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests import daemon_support as ds


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamer", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ds.REPO,
        env=env,
    )


def test_check_validates_config_and_models(tmp_path: Path) -> None:
    cfg = ds.write_config(tmp_path / "ok.toml", "127.0.0.1:1", ds.topics_for("x"), 0)
    proc = serve("--config", str(cfg), "--check")
    assert proc.returncode == 0, proc.stderr
    assert "configuration and models OK" in proc.stdout


def test_unknown_key_exits_2_naming_it(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[kafka]\nbootstrap = 'x'\n")
    proc = serve("--config", str(cfg))
    assert proc.returncode == 2
    assert "[kafka] has unknown key 'bootstrap'" in proc.stderr


def test_refused_model_exits_2_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "m.onnx"
    bad.write_bytes(b"not a model")
    cfg = ds.write_config(tmp_path / "c.toml", "127.0.0.1:1", ds.topics_for("x"), 0)
    cfg.write_text(cfg.read_text().replace(str(ds.MODEL), str(bad)))
    proc = serve("--config", str(cfg))
    assert proc.returncode == 2
    assert "model refused at start-up" in proc.stderr and "m.onnx" in proc.stderr


def test_secrets_from_env_never_reach_the_logs(tmp_path: Path) -> None:
    bad = tmp_path / "m.onnx"
    bad.write_bytes(b"x")  # stop right after the start-up line that logs the config
    cfg = ds.write_config(tmp_path / "c.toml", "127.0.0.1:1", ds.topics_for("x"), 0)
    cfg.write_text(cfg.read_text().replace(str(ds.MODEL), str(bad)))
    env = {
        "PATH": "/usr/bin:/bin",
        "LSTMAD_SECURITY_PROTOCOL": "SASL_SSL",
        "LSTMAD_SASL_MECHANISM": "SCRAM-SHA-512",
        "LSTMAD_SASL_USERNAME": "svc",
        "LSTMAD_SASL_PASSWORD": "pa55-w0rd-xyz",
    }
    proc = serve("--config", str(cfg), env=env)
    assert proc.returncode == 2
    assert '"sasl_password": "***"' in proc.stderr and "pa55-w0rd-xyz" not in proc.stderr
