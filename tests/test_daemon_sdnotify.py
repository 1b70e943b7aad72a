"""Under systemd (Type=notify) the daemon says READY=1 once assigned, pings the watchdog from
its loop, and says STOPPING=1 on SIGTERM: checked on a real AF_UNIX datagram socket."""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tests import daemon_support as ds


def test_ready_watchdog_and_stopping_reach_notify_socket(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    base = f"sd-{uuid.uuid4().hex[:8]}"
    topics = ds.topics_for(base)
    ds.create_topics(kafka_bootstrap, {topics["input_topic"]: 2})
    port = ds.new_port()
    config = ds.write_config(tmp_path / "lstmad.toml", kafka_bootstrap, topics, port)
    path = tmp_path / "notify.sock"
    got: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(0.2)

        def drain_until(pred: Callable[[list[str]], bool], timeout_s: float) -> None:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and not pred(got):
                with contextlib.suppress(TimeoutError):
                    got.append(sock.recv(4096).decode())

        env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"}
        with ds.daemon(config, port, tmp_path / "d.log", env) as d:
            drain_until(lambda xs: any(x.startswith("READY=1") for x in xs), 60)
            assert d.ready() is not None  # READY=1 only once /readyz is green
            drain_until(lambda xs: sum(x == "WATCHDOG=1" for x in xs) >= 3, 10)
            d.proc.send_signal(15)
            drain_until(lambda xs: "STOPPING=1" in xs, 15)
            assert d.proc.wait(timeout=15) == 0, d.tail()
    ready = next(x for x in got if x.startswith("READY=1"))
    assert "STATUS=serving 2 partitions" in ready
    assert sum(x == "WATCHDOG=1" for x in got) >= 3
    assert got.index(ready) < got.index("STOPPING=1") and got[-1] == "STOPPING=1"
