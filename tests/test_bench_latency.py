"""bench/throughput.py's latency phase and bench/cpu.py's sampler, against real processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import throughput
from bench.cpu import MACHINE, CpuSampler
from streamer.localkafka import LocalKafka

BURN = "import time\nend = time.process_time() + 60\nwhile time.process_time() < end: pass"


def test_the_sampler_tells_a_busy_process_from_a_sleeping_one() -> None:
    burner = subprocess.Popen([sys.executable, "-c", BURN])
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        groups = {"burner": [burner.pid], "sleeper": [sleeper.pid]}
        with CpuSampler(lambda: groups, every_s=0.1) as cpu:
            t0 = time.monotonic()
            time.sleep(1.5)
            t1 = time.monotonic()
        cores = cpu.cores(t0, t1)
    finally:
        burner.kill()
        sleeper.kill()
        burner.wait()
        sleeper.wait()
    # One busy thread is at most one core; on a shared 2-core machine it may get less.
    assert 0.3 < cores["burner"] <= 1.05, cores
    assert cores["sleeper"] < 0.05, cores
    assert cores[MACHINE] >= cores["burner"] - 0.1, cores
    assert cpu.cores(t1 + 10, t1 + 20) == {}  # no sample in that window


def test_a_process_that_exits_stops_counting() -> None:
    quick = subprocess.Popen([sys.executable, "-c", "pass"])
    quick.wait()
    with CpuSampler(lambda: {"gone": [quick.pid]}, every_s=0.05) as cpu:
        time.sleep(0.3)
    assert all("gone" not in c for _, c in cpu.samples)
    assert cpu.samples  # the machine is still sampled


@pytest.mark.kafka
def test_a_latency_run_scores_every_live_point_and_says_where_the_cpu_went(
    kafka_broker: LocalKafka, tmp_path: Path
) -> None:
    """400 live points of one stream: with event times counted forward from the warm-up's,
    the last ones would be 400 s ahead of the clock, past [kafka] max_ahead_s (300 s), and
    dead-lettered; the run must time scored points only (and raises if any is rejected)."""
    r = throughput.run_latency(
        kafka_broker.bootstrap, tmp_path, 1, 100.0, 4.0, False, kafka_broker.pid
    )
    assert r["points"] == 401
    assert sum(r["buckets"].values()) > 0 and r["buckets"]["inf"] == 401, r["buckets"]
    cores = r["cpu_cores"]
    assert set(cores) == {"daemon", "inference", "loadgen", "broker", MACHINE}, cores
    assert all(v > 0 for v in cores.values()), cores
    assert cores[MACHINE] >= cores["daemon"] + cores["inference"] - 0.1, cores
