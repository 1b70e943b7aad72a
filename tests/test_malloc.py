"""streamer.malloc talks to this machine's glibc (the daemon's only supported libc here)."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
from pathlib import Path

from streamer import malloc


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


def resident_kib(path: Path) -> int:
    """Rss of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, current = 0, ""
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if len(head) >= 5 and "-" in head[0] and ":" not in head[0]:
            current = head[5] if len(head) == 6 else ""
        elif line.startswith("Rss:") and current == str(path):
            total += int(line.split()[1])
    return total


def mapped_file(tmp_path: Path, access: int) -> tuple[Path, bytes, mmap.mmap]:
    path = tmp_path / "lib.so"
    data = os.urandom(4 << 20)
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())  # clean pages: a page-out then needs no writeback
    with path.open("rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=access)
    assert sum(m[i] for i in range(0, len(m), mmap.PAGESIZE)) >= 0  # every page resident
    return path, data, m


def test_release_file_pages_reclaims_a_read_only_mapping(tmp_path: Path) -> None:
    path, data, m = mapped_file(tmp_path, mmap.ACCESS_READ)
    before = resident_kib(path)
    assert before >= 4096 * 0.9, before
    assert malloc.release_file_pages(str(path)) == len(data)
    after = resident_kib(path)
    assert after < before / 8, (before, after)
    assert m[:] == data  # the pages fault back in from the file
    m.close()


def test_release_file_pages_leaves_writable_mappings(tmp_path: Path) -> None:
    """A private writable mapping (a library's data) would need swap: not advised."""
    path, _, m = mapped_file(tmp_path, mmap.ACCESS_COPY)
    before = resident_kib(path)
    assert malloc.release_file_pages(str(path)) == 0
    assert resident_kib(path) == before
    assert malloc.release_file_pages(str(tmp_path / "nothing-maps-this")) == 0
    m.close()
