"""systemd's notify protocol, spoken directly: one datagram per state change on NOTIFY_SOCKET.

``Type=notify`` units learn READY=1 when the daemon is assigned and serving, STOPPING=1 when
it begins to shut down, and WATCHDOG=1 from the loop at half of ``WATCHDOG_USEC`` so a wedged
loop is restarted by systemd. Without NOTIFY_SOCKET (not under systemd) every call is a no-op.
``tick`` takes ``now`` (monotonic seconds) so the watchdog cadence is testable without sleeps.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class SdNotify:
    address: str | None
    watchdog_interval: float | None = None  # seconds between WATCHDOG=1, half of WATCHDOG_USEC
    _last_ping: float | None = field(default=None, init=False)
    _sock: socket.socket | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SdNotify:
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET") or None
        interval = None
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        if usec and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            interval = int(usec) / 1e6 / 2
        return cls(addr, interval)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, message: str) -> bool:
        if self.address is None:
            return False
        addr = self.address
        if addr.startswith("@"):  # abstract namespace socket
            addr = "\0" + addr[1:]
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode(), addr)
            return True
        except OSError:
            return False  # systemd gone or socket unwritable: never fatal for the daemon

    def ready(self, status: str = "serving") -> bool:
        return self.send(f"READY=1\nSTATUS={status}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def tick(self, now: float) -> bool:
        """Call from every loop iteration; sends WATCHDOG=1 when half the watchdog has passed."""
        if self.watchdog_interval is None:
            return False
        if self._last_ping is not None and now - self._last_ping < self.watchdog_interval:
            return False
        self._last_ping = now
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
