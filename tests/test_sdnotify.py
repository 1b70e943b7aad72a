"""The notify protocol against a real AF_UNIX datagram socket, with time passed in."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from streamer.sdnotify import SdNotify


def receive_all(sock: socket.socket) -> list[str]:
    out = []
    sock.setblocking(False)
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_ready_watchdog_stopping_arrive_and_watchdog_keeps_cadence(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        env = {
            "NOTIFY_SOCKET": str(path),
            "WATCHDOG_USEC": "2000000",
            "WATCHDOG_PID": str(os.getpid()),
        }
        n = SdNotify.from_env(env)
        assert n.watchdog_interval == 1.0
        assert n.ready()
        # timeline (s): 0 ping, 0.5 no, 1.0 ping, 1.2 no, 2.5 ping
        sent = [n.tick(t) for t in (0.0, 0.5, 1.0, 1.2, 2.5)]
        assert sent == [True, False, True, False, True]
        assert n.stopping()
        n.close()
        msgs = receive_all(sock)
    assert msgs[0].startswith("READY=1")
    assert msgs[1:4] == ["WATCHDOG=1"] * 3
    assert msgs[4] == "STOPPING=1"


def test_without_notify_socket_everything_is_a_no_op() -> None:
    n = SdNotify.from_env({})
    assert not n.enabled and not n.ready() and not n.tick(0.0) and not n.stopping()


def test_watchdog_for_another_pid_is_ignored() -> None:
    n = SdNotify.from_env({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert n.watchdog_interval is None
