"""``lstmad serve`` as a child process for the benchmarks: config, start, scrape, RSS, stop.

The daemon runs exactly as deployed (``python -m streamer serve --config FILE``) so its
memory is its own: :meth:`Daemon.rss_bytes` adds up ``VmRSS`` of that process and of its
inference process from ``/proc``; :meth:`Daemon.resident_bytes` counts the pages they share
once (the service's resident set) and :meth:`Daemon.pss_bytes` gives their ``Pss``.
Its Prometheus endpoint is scraped for progress (``lstmad_points_total`` and
``lstmad_invalid_messages_total``) and for the end-to-end latency histogram.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from streamer.localkafka import free_port

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / "streamer" / "models" / "default.onnx"


def write_config(
    path: Path,
    bootstrap: str,
    topic: str,
    group: str,
    port: int,
    predictions_topic: str = "",
    model: Path = DEFAULT_MODEL,
    state: bool = True,
    inference: str = "process",
    state_topic: str = "",
) -> Path:
    """A daemon config: this broker and topics, everything else (thresholds too) default;
    ``state=False`` turns the per-stream state checkpoint (``[state] enabled``) off,
    ``inference`` is ``[model] inference`` (the default, "process", or "thread"),
    ``state_topic`` ``[state] topic`` ("": the default, derived from the input topic)."""
    path.write_text(
        f"""[kafka]
bootstrap_servers = ["{bootstrap}"]
input_topic = "{topic}"
alert_topic = "{topic}.alerts"
dlq_topic = "{topic}.dlq"
predictions_topic = "{predictions_topic}"
group_id = "{group}"
auto_offset_reset = "earliest"

[model]
path = "{model}"
inference = "{inference}"

[metrics]
host = "127.0.0.1"
port = {port}

[log]
level = "WARNING"
format = "text"

[state]
enabled = {"true" if state else "false"}
topic = "{state_topic}"
"""
    )
    return path


def _term_with_parent() -> None:
    """In the child: SIGTERM when the benchmark dies, however it dies (PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {'name{labels}': value} (labels as printed)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            continue
    return out


def invalid_messages(samples: Mapping[str, float]) -> dict[str, float]:
    """Dead-lettered messages so far, by the series' labels (the reason)."""
    prefix = "lstmad_invalid_messages_total"
    return {k[len(prefix) :]: v for k, v in samples.items() if k.startswith(prefix)}


def histogram_buckets(samples: Mapping[str, float], name: str) -> dict[float, float]:
    """Cumulative bucket counts {upper bound: count} of histogram ``name``."""
    prefix = f'{name}_bucket{{le="'
    out = {}
    for key, v in samples.items():
        if key.startswith(prefix):
            le = key[len(prefix) :].split('"', 1)[0]
            out[float("inf") if le == "+Inf" else float(le)] = v
    return dict(sorted(out.items()))


def resident_union_bytes(pids: list[int]) -> int | None:
    """Bytes of the distinct page frames present in any of ``pids`` (see
    :meth:`Daemon.resident_bytes`); None if the kernel hides the frame numbers."""
    import numpy as np

    page = os.sysconf("SC_PAGE_SIZE")
    frames = []
    for pid in pids:
        with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
            for line in maps:
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                if "[vsyscall]" in line:  # outside the user address range pagemap covers
                    continue
                pagemap.seek(lo // page * 8)
                entries = np.frombuffer(pagemap.read((hi - lo) // page * 8), dtype="<u8")
                present = entries[(entries >> np.uint64(63)) == 1]
                frames.append(present & np.uint64((1 << 55) - 1))  # bits 0-54: the frame
    pfn = np.unique(np.concatenate(frames)) if frames else np.empty(0, np.uint64)
    if pfn.size and not pfn.any():
        return None  # every frame reads as 0: not privileged
    return int(pfn.size) * page


def _proc_kib(pid: int, name: str, key: str) -> int:
    for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not found in /proc/{pid}/{name}")


class Daemon:
    """A running ``lstmad serve`` child; use as a context manager (always stopped)."""

    def __init__(self, config: Path, port: int, log: Path, profile: Path | None = None):
        self.config, self.port, self.log, self.profile = config, port, log, profile
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def port_for() -> int:
        """A free loopback port for the daemon's HTTP endpoint."""
        return free_port()

    @staticmethod
    def profile_summary(path: Path, top: int = 12) -> list[str]:
        """The ``top`` functions of a cProfile dump by own time, then by cumulative time."""
        import io
        import pstats

        lines: list[str] = []
        for order in ("tottime", "cumulative"):
            buf = io.StringIO()
            pstats.Stats(str(path), stream=buf).sort_stats(order).print_stats(top)
            got = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
            start = next(i for i, ln in enumerate(got) if ln.lstrip().startswith("ncalls"))
            lines += [f"-- by {order}", *got[start : start + top + 1]]
        return lines

    def __enter__(self) -> Daemon:
        logf = self.log.open("ab")
        cmd = [sys.executable, "-m", "streamer", "serve", "--config", str(self.config)]
        if self.profile is not None:  # cProfile writes the dump when serve exits on SIGTERM
            cmd[1:1] = ["-m", "cProfile", "-o", str(self.profile)]
        self.proc = subprocess.Popen(
            cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=REPO, preexec_fn=_term_with_parent
        )
        logf.close()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"lstmad serve exited early; its log ends with:\n{tail}")

    def scrape(self, timeout_s: float = 2.0) -> dict[str, float]:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return parse_metrics(resp.read().decode())

    def consumed(self, samples: Mapping[str, float]) -> float:
        """Messages the daemon has taken off the topic: valid points plus dead letters."""
        return samples.get("lstmad_points_total", 0.0) + sum(invalid_messages(samples).values())

    def wait_metrics(self, deadline_s: float) -> dict[str, float]:
        """Scrape until the endpoint answers (the daemon has started) or raise at the deadline."""
        end = time.monotonic() + deadline_s
        while True:
            self.check_alive()
            try:
                return self.scrape()
            except OSError:
                if time.monotonic() > end:
                    raise RuntimeError(
                        f"no /metrics on port {self.port} after {deadline_s}s"
                    ) from None
                time.sleep(0.1)

    def pids(self) -> list[int]:
        """The daemon and its descendants (the inference process), from ``/proc``."""
        out, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        return out

    def rss_bytes(self) -> int:
        """Resident set size of the daemon and its descendants now (sum of ``VmRSS``): pages
        the processes share (the interpreter, numpy) count once per process."""
        return sum(_proc_kib(pid, "status", "VmRSS:") for pid in self.pids()) * 1024

    def resident_bytes(self) -> int | None:
        """Distinct physical pages resident in the daemon or its descendants, in bytes: the
        service's resident set, each page once however many of its processes map it
        (``/proc/PID/pagemap``). None without CAP_SYS_ADMIN, which the kernel needs to show
        page frame numbers."""
        return resident_union_bytes(self.pids())

    def pss_bytes(self) -> int:
        """The same processes' proportional set size (``Pss`` of ``smaps_rollup``): a page
        shared by n of them counts 1/n in each, so the sum counts it once, as the memory
        cgroup a systemd unit or a Kubernetes limit charges does."""
        return sum(_proc_kib(pid, "smaps_rollup", "Pss:") for pid in self.pids()) * 1024

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)
