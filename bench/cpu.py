"""Where a benchmark's CPU goes: cores used by named groups of processes, and by the machine.

The latency phase shares 2 cores between the daemon, its inference process, the broker and
the load generator, so a latency figure means little without how busy each of them and the
machine was while it was measured. :class:`CpuSampler` reads ``/proc/PID/stat`` (user +
system time of every thread of a process) and ``/proc/stat`` every ``every_s`` in a thread;
:meth:`CpuSampler.cores` averages the samples that fall in a time window.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
MACHINE = "machine"  # the group of every CPU's busy time (all processes, the kernel's too)


def process_ticks(pid: int) -> int | None:
    """User + system clock ticks of ``pid`` so far (all its threads); None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat(5)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs so far; idle and iowait are not busy."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(values) - values[3] - values[4], sum(values)


def pids_running(fragment: str) -> list[int]:
    """Processes whose command line contains ``fragment``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if fragment.encode() in cmd:
                out.append(int(entry.name))
    return out


class CpuSampler:
    """Samples the CPU time of ``groups()`` (name -> pids, asked at every sample: processes
    come and go) every ``every_s`` until closed. A process's time before the first sample
    that sees it is not counted, nor its last ``every_s`` before it exits."""

    def __init__(self, groups: Callable[[], Mapping[str, list[int]]], every_s: float = 0.25):
        self.groups, self.every_s = groups, every_s
        self.samples: list[tuple[float, dict[str, float]]] = []  # (monotonic end, cores)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5 * self.every_s + 1)

    def _read(self) -> tuple[float, dict[int, tuple[str, int]], tuple[int, int]]:
        ticks = {}
        try:
            groups = self.groups()
        except OSError:  # a process exited while its children were listed: none this time
            groups = {}
        for name, pids in groups.items():
            for pid in pids:
                t = process_ticks(pid)
                if t is not None:
                    ticks[pid] = (name, t)
        return time.monotonic(), ticks, machine_ticks()

    def _run(self) -> None:
        prev = self._read()
        while not self._stop.wait(self.every_s):
            cur = self._read()
            dt = cur[0] - prev[0]
            cores: dict[str, float] = {}
            for pid, (name, t) in cur[1].items():
                if pid in prev[1]:
                    cores[name] = cores.get(name, 0.0) + (t - prev[1][pid][1]) * TICK_S / dt
            busy, total = cur[2][0] - prev[2][0], cur[2][1] - prev[2][1]
            if total > 0:
                cores[MACHINE] = (os.cpu_count() or 1) * busy / total
            self.samples.append((cur[0], cores))
            prev = cur

    def cores(self, start: float, end: float) -> dict[str, float]:
        """Mean cores each group used over the samples ending in [start, end] (monotonic s),
        a sample without the group's processes counting 0; groups no sample saw are absent.
        Empty if no sample ended in the window."""
        inside = [c for t, c in self.samples if start <= t <= end]
        if not inside:
            return {}
        names = {n for c in inside for n in c}
        return {n: sum(c.get(n, 0.0) for c in inside) / len(inside) for n in sorted(names)}
