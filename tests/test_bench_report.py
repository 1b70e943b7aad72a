"""The results file: each benchmark's section says where and from what code it ran."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bench import report

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni amx_tile

processor\t: 1
model name\t: Another CPU
flags\t\t: fpu
"""


def test_cpu_is_the_first_processors_model_and_isa_flags(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO)
    assert report.cpu(info) == {
        "model": "Intel(R) Xeon(R) Processor",
        "flags": ["avx2", "fma", "avx512f", "avx512_vnni", "amx_tile"],
    }
    assert report.cpu(tmp_path / "missing") is None


def test_git_commit_is_head_of_this_checkout() -> None:
    commit = report.git_commit()
    assert commit is not None and re.fullmatch(r"[0-9a-f]{40}(-dirty)?", commit), commit


def test_git_commit_outside_a_checkout_is_none(tmp_path: Path) -> None:
    assert report.git_commit(tmp_path) is None


def test_each_section_carries_its_own_environment(tmp_path: Path) -> None:
    path = tmp_path / "latest.json"
    path.write_text(json.dumps({"environment": {"python": "old"}, "benches": {}}))
    fig = report.Figure(bench="a", name="x", value=1.0, unit="")
    report.write_results("a", [fig], {"k": 1}, path)
    report.write_results("b", [fig], {}, path)
    data = json.loads(path.read_text())
    assert "environment" not in data  # a file-wide one would describe only the last run
    for name in ("a", "b"):
        env = data["benches"][name]["environment"]
        assert env["cpus"] >= 1 and env["commit"] == report.git_commit()
        assert set(env) >= {"python", "cpu", "numpy", "onnxruntime"}
    assert data["benches"]["a"]["details"] == {"k": 1}
