"""streamer.malloc talks to this machine's glibc (the daemon's only supported libc here)."""

from __future__ import annotations

import subprocess
import sys


def test_limits_and_trim_take_effect_in_a_fresh_process() -> None:
    code = (
        "from streamer import malloc\n"
        "assert malloc.limit_arenas(2)\n"
        "blocks = [bytearray(300_000) for _ in range(50)]\n"  # above the 256 KiB threshold
        "del blocks\n"
        "malloc.trim()\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok", out.stderr
