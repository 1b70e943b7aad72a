"""The inference process under a running daemon: a supervisor's SIGTERM to the whole
process group still lands the last batch; a child that dies takes the daemon down with a
clear error and nothing committed past the last landed batch, so a restart scores every
point (real broker, real daemon processes)."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

from tests import daemon_support as ds
from tests.test_daemon_restart import committed_equals_end
from tests.test_telemetry import CI_MARKERS


def inference_child(daemon_pid: int) -> int:
    """The daemon's one child process, forked: named ``lstmad-infer``."""
    kids = [
        int(c)
        for task in Path(f"/proc/{daemon_pid}/task").iterdir()
        for c in (task / "children").read_text().split()
    ]
    found = [k for k in kids if Path(f"/proc/{k}/comm").read_text().strip() == "lstmad-infer"]
    assert len(found) == 1, kids
    return found[0]


def wait_points(d: ds.DaemonProcess, n: int, timeout_s: float = 60) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and d.proc.poll() is None:
        got = d.metric("lstmad_points_total")
        if got >= n:
            return got
        time.sleep(0.2)
    return d.metric("lstmad_points_total") if d.proc.poll() is None else -1


def test_group_sigterm_lands_and_a_dead_child_loses_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    base = f"inf-{uuid.uuid4().hex[:8]}"
    topics = ds.topics_for(base)
    ds.create_topics(
        kafka_bootstrap,
        {topics["input_topic"]: 2, topics["alert_topic"]: 1, topics["dlq_topic"]: 1},
    )
    streams = ds.make_streams(("normal", "spike", "normal"), "i")
    port = ds.new_port()
    config = ds.write_config(tmp_path / "lstmad.toml", kafka_bootstrap, topics, port)
    first, second = ds.interleave(streams, 0, 120), ds.interleave(streams, 120, 240)
    ds.produce(kafka_bootstrap, topics["input_topic"], first)

    # 1. SIGTERM to the daemon and its child at once (systemd's KillMode=control-group);
    # the service user's home stays as it was: no ONNX Runtime telemetry cache (without the
    # CI markers, under which ONNX Runtime keeps it off by itself)
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    with ds.daemon(config, port, tmp_path / "a.log", env, CI_MARKERS) as a:
        a.wait_ready(partitions=2)
        assert wait_points(a, len(first)) == len(first), a.tail()
        child = inference_child(a.proc.pid)
        os.kill(child, signal.SIGTERM)
        code, _ = a.stop()
    assert code == 0, a.tail()
    assert committed_equals_end(kafka_bootstrap, topics["group_id"], topics["input_topic"])
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert written == [], written

    # 2. the child killed under load: the daemon exits non-zero and says why
    with ds.daemon(config, port, tmp_path / "b.log") as b:
        b.wait_ready(partitions=2)
        os.kill(inference_child(b.proc.pid), signal.SIGKILL)
        ds.produce(kafka_bootstrap, topics["input_topic"], second)
        code = b.proc.wait(timeout=60)
    assert code != 0
    assert "inference process exited (status -9)" in b.tail(20_000), b.tail()

    # 3. a restart scores every point of the second part (those the crash did not commit)
    with ds.daemon(config, port, tmp_path / "c.log") as c:
        c.wait_ready(partitions=2)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if committed_equals_end(kafka_bootstrap, topics["group_id"], topics["input_topic"]):
                break
            time.sleep(0.3)
        scored = c.metric("lstmad_points_total")
        code, _ = c.stop()
    assert code == 0, c.tail()
    assert committed_equals_end(kafka_bootstrap, topics["group_id"], topics["input_topic"])
    assert scored == len(second)  # B landed nothing; the first part is not scored again
