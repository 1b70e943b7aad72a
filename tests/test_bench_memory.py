"""The benchmark's service memory: each physical page counted once across the daemon and its
inference process (bench.daemon_proc.resident_union_bytes)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.daemon_proc import _proc_kib, resident_union_bytes

CAP_SYS_ADMIN = 21


def privileged() -> bool:
    with open("/proc/self/status") as f:
        caps = next(ln for ln in f if ln.startswith("CapEff:"))
    return bool(int(caps.split()[1], 16) >> CAP_SYS_ADMIN & 1)


def test_a_page_mapped_twice_counts_once() -> None:
    me = os.getpid()
    once = resident_union_bytes([me])
    if once is None:  # the kernel hides frame numbers from an unprivileged reader
        assert not privileged()
        return
    twice = resident_union_bytes([me, me])
    # the same pages, not twice as many (the reading itself allocates a little meanwhile)
    assert twice is not None and abs(twice - once) < 0.1 * once
    rss = _proc_kib(me, "status", "VmRSS:") * 1024
    assert abs(once - rss) < 0.1 * rss


def test_two_processes_sharing_libraries_count_less_than_their_rss_sum() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import numpy, sys; print(1, flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"1"
        pids = [os.getpid(), child.pid]
        union = resident_union_bytes(pids)
        if union is None:
            assert not privileged()
            return
        rss = sum(_proc_kib(p, "status", "VmRSS:") for p in pids) * 1024
        # libpython, libc and numpy's libraries are resident once, mapped by both
        assert union < rss - (4 << 20)
        assert union > max(_proc_kib(p, "status", "VmRSS:") for p in pids) * 1024 * 0.9
    finally:
        assert child.stdin is not None
        child.stdin.close()
        deadline = time.monotonic() + 10
        while child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if child.poll() is None:
            child.kill()
        child.wait()
