"""deploy/Dockerfile: the runtime image's install set works without TensorFlow.

There is no container engine here, so the test replays what the Dockerfile does: the build
stage's COPY sources are copied to a temporary context and built into a wheel, and the
runtime stage's install (the wheel, no extra) goes into a fresh venv with no access to the
system's or .venv's packages. There ``lstmad`` must start, load models and validate a
config, and TensorFlow, Keras and tf2onnx must not be importable.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_manifest import write_model

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def stages() -> dict[str, list[str]]:
    """Instructions of each named stage (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+\S+\s+AS\s+(\w+)", line, re.I)
        if m:
            current = m[1]
            out[current] = []
        elif current:
            out[current].append(line)
    return out


def test_runtime_stage_is_non_root_and_installs_no_training_extra() -> None:
    s = stages()
    assert {"build", "runtime", "train", "model"} <= set(s)
    # What the runtime stage installs: the wheel alone, no extra (the train stage adds one).
    installs = [m[1].strip() for i in s["runtime"] for m in re.finditer(r"pip install ([^&]+)", i)]
    assert installs == ["/wheels/lstmad-*.whl"]
    users = [i.split()[1] for i in s["runtime"] if i.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert 'ENTRYPOINT ["lstmad"]' in s["runtime"]
    assert any("[train]" in i for i in s["train"])
    assert [i.split()[1] for i in s["model"] if i.startswith("USER ")] == ["10001:10001"]


def build_context(dest: Path) -> Path:
    """Copy the build stage's COPY sources as the Dockerfile does (relative to the repo)."""
    for instr in stages()["build"]:
        if not instr.startswith("COPY "):
            continue
        *sources, target = instr.split()[1:]
        for src in sources:
            path = ROOT / src.rstrip("/")
            to = dest / target.rstrip("/") if src.endswith("/") else dest / target / path.name
            if path.is_dir():
                shutil.copytree(path, to, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                to.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, to)
    return dest


def run(cmd: list[str], timeout: float, **kw: object) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    assert res.returncode == 0, f"{cmd} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res  # type: ignore[no-any-return]


CHECK = """
import importlib.util, sys
import numpy as np
from streamer import config, model
for mod in ("tensorflow", "keras", "tf2onnx"):
    assert importlib.util.find_spec(mod) is None, f"{mod} importable in the runtime venv"
m = model.load(sys.argv[1])
print("predict", m.predict(np.arange(12, dtype=np.float32).reshape(3, 4, 1)).tolist())
d = model.load(config.PACKAGE_MODEL)
print("default", d.name, d.window)
print("prefix", sys.prefix)
"""


@pytest.mark.slow
def test_runtime_install_set_works_in_a_fresh_venv_without_tensorflow(tmp_path: Path) -> None:
    src = build_context(tmp_path / "context")
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run([*pip, "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)], 180)
    (wheel,) = wheels.glob("lstmad-*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], 60)
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    py = venv / "bin" / "python"
    run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)], 240)

    lstmad = str(venv / "bin" / "lstmad")
    assert "serve" in run([lstmad, "--help"], 60).stdout
    assert "--config" in run([lstmad, "serve", "--help"], 60).stdout
    out = run([str(py), "-c", CHECK, str(write_model(tmp_path / "m.onnx"))], 60, cwd=tmp_path)
    assert "predict [3.0, 7.0, 11.0]" in out.stdout
    assert "default ops-default 50" in out.stdout
    assert f"prefix {venv}" in out.stdout
    # The whole start-up check of `serve` (config + every model) without a broker.
    cfg = tmp_path / "config.toml"
    cfg.write_text('[kafka]\nbootstrap_servers = ["127.0.0.1:9"]\n')
    assert (
        "configuration and models OK"
        in run([lstmad, "serve", "--check", "--config", str(cfg)], 60).stdout
    )
