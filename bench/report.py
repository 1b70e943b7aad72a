"""Figures, targets and the results file shared by every benchmark.

A :class:`Figure` is one measured number with its unit, the target it answers (if any) and
the command that reproduces it. :func:`print_table` renders figures for a terminal and
:func:`write_results` merges a benchmark's figures and details into the JSON results file,
so ``python -m bench inference`` alone refreshes only its own section.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


@dataclass(frozen=True)
class Figure:
    """One measured number. ``target`` is text such as ``">= 300"``; ``met`` is None if none."""

    bench: str
    name: str
    value: float
    unit: str
    target: str | None = None
    met: bool | None = None
    command: str = ""


def at_least(value: float, bound: float) -> tuple[str, bool]:
    return f">= {bound:g}", bool(value >= bound)


def at_most(value: float, bound: float) -> tuple[str, bool]:
    return f"<= {bound:g}", bool(value <= bound)


def figure(
    bench: str,
    name: str,
    value: float,
    unit: str,
    command: str,
    target: tuple[str, bool] | None = None,
) -> Figure:
    text, met = target if target else (None, None)
    return Figure(bench, name, float(value), unit, text, met, command)


def _fmt(v: float) -> str:
    if v != v:  # NaN
        return "n/a"
    a = abs(v)
    if a >= 1e5:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.3g}" if a < 10 else f"{v:.2f}"
    return f"{v:.3g}"


def print_table(figures: Sequence[Figure], out: Any = None) -> None:
    """Print ``figures`` as an aligned table: bench, figure, value, unit, target, verdict."""
    out = out or sys.stdout
    rows = [("bench", "figure", "value", "unit", "target", "")]
    for f in figures:
        verdict = "" if f.met is None else ("MET" if f.met else "MISSED")
        rows.append((f.bench, f.name, _fmt(f.value), f.unit, f.target or "", verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for k, r in enumerate(rows):
        cells = [
            c.rjust(w) if i == 2 else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        print("  ".join(cells).rstrip(), file=out)
        if k == 0:
            print("  ".join("-" * w for w in widths), file=out)


def markdown_table(figures: Sequence[Figure]) -> str:
    """``figures`` as a Markdown table (for the README): figure, value, target, verdict."""
    lines = ["| bench | figure | value | target | |", "|---|---|---:|---|---|"]
    for f in figures:
        verdict = "" if f.met is None else ("met" if f.met else "**missed**")
        value = f"{_fmt(f.value)} {f.unit}".strip()
        lines.append(f"| {f.bench} | {f.name} | {value} | {f.target or ''} | {verdict} |")
    return "\n".join(lines)


def load_figures(path: Path = RESULTS, benches: Iterable[str] | None = None) -> list[Figure]:
    """Every figure of the results file, benchmark by benchmark."""
    data = json.loads(path.read_text())["benches"]
    names = list(benches) if benches is not None else list(data)
    return [Figure(**f) for name in names if name in data for f in data[name]["figures"]]


# Instruction sets that move ONNX Runtime's and numpy's figures, reported when present.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any] | None:
    """The first CPU's model name and which of :data:`ISA_FLAGS` it has, as the kernel
    reports them: the development machines are not all of one type, and the figures move
    with it (a virtual machine's model name may be as vague as "Intel(R) Xeon(R) Processor",
    so the flags say more). None where there is no such file."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    first = text.split("\n\n", 1)[0]
    fields = {}
    for line in first.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name"), "flags": [f for f in ISA_FLAGS if f in flags]}


def git_commit(repo: Path = RESULTS.parent.parent.parent) -> str | None:
    """``HEAD`` of the checkout the benchmark ran from, with ``-dirty`` if tracked files
    differ from it (bench/results/ aside: each run rewrites it); None outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
             ":(exclude)bench/results"],
            cwd=repo, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if changed else "")


def environment() -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort

    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": cpu(),
        "cpus": os.cpu_count(),
        "commit": git_commit(),
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
    }


def write_results(
    bench: str,
    figures: Iterable[Figure],
    details: Mapping[str, Any],
    path: Path = RESULTS,
) -> Path:
    """Replace ``bench``'s section of the results file, keeping the other benchmarks' sections."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            data = {}
    data.setdefault("benches", {})
    # Each section says where it ran: a run of one benchmark replaces only its own section.
    data.pop("environment", None)
    data["benches"][bench] = {
        "environment": environment(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "figures": [asdict(f) for f in figures],
        "details": dict(details),
    }
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path
