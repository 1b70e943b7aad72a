"""ONNX Runtime's telemetry stays off in every process lstmad loads it in, unless the operator
turns it back on (ORT_DISABLE_TELEMETRY=0): no uploader thread, no device id or event cache
under the service user's home."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests import daemon_support as ds

REPO = Path(__file__).resolve().parent.parent

# ONNX Runtime keeps its telemetry off by itself where one of these is set (a CI service's
# marker, listed in its library), as under `CI=true bash .ci/run`. The tests drop them, so
# they see what a production host sees, and the control below stays a control.
CI_MARKERS = ("CI", "TF_BUILD", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TRAVIS",
              "JENKINS_URL", "CODEBUILD_BUILD_ID", "BUILDKITE", "TEAMCITY_VERSION", "APPVEYOR",
              "BITBUCKET_BUILD_NUMBER")  # fmt: skip

# The three ways a process of lstmad loads ONNX Runtime: in the daemon itself ([model]
# inference = "thread", the trainer, replay), and in the inference child, forked or a new
# interpreter.
LOADERS = {
    "in_process": "model.load(MODEL)",
    "forked_child": "r = InferenceProcess(fork=True); model.load(MODEL, remote=r); r.close()",
    "new_interpreter": "r = InferenceProcess(fork=False); model.load(MODEL, remote=r); r.close()",
}


def load_model(home: Path, how: str, setting: str | None) -> None:
    script = f"""
        import numpy as np
        from streamer import model
        from streamer.inference import InferenceProcess
        MODEL = {str(ds.MODEL)!r}
        {LOADERS[how]}
    """
    drop = ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME", *CI_MARKERS)
    env = {k: v for k, v in os.environ.items() if k not in drop} | {"HOME": str(home)}
    if setting is not None:
        env["ORT_DISABLE_TELEMETRY"] = setting
    argv = [sys.executable, "-c", textwrap.dedent(script)]
    out = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def written_under(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*"))


@pytest.mark.parametrize("how", sorted(LOADERS))
def test_onnx_runtime_writes_nothing_under_home(tmp_path: Path, how: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    load_model(home, how, None)
    assert written_under(home) == []


def test_an_operator_can_turn_it_back_on(tmp_path: Path) -> None:
    """The control: with ONNX Runtime's own default the same load leaves its device id, so
    the test above would see telemetry that was not turned off."""
    home = tmp_path / "home"
    home.mkdir()
    load_model(home, "in_process", "0")
    assert ".cache/Microsoft/DeveloperTools/.onnxruntime/deviceid" in written_under(home)
