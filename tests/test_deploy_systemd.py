"""deploy/systemd: the unit passes systemd's own checks and agrees with the daemon's config.

``systemd-analyze verify`` needs ExecStart's binary to exist; the unit names the installed
path (/opt/lstmad/bin/lstmad, README "Deployment"), so the test verifies a copy in which
only that path is replaced by this checkout's console script. Nothing else is changed.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.config import ENV, KafkaConfig, MetricsConfig

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "systemd" / "lstmad.service"
ENV_EXAMPLE = ROOT / "deploy" / "systemd" / "lstmad.env.example"
INSTALLED = "/opt/lstmad/bin/lstmad"
MAX_EXPOSURE = 2.0  # systemd-analyze security: 0 is fully locked down, 10 is wide open


def unit_settings(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines of the unit, all sections, keys may repeat (SystemCallFilter=)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value)
    return out


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|min)?", value)
    assert m, f"unsupported time span {value!r}"
    return float(m[1]) * {"ms": 0.001, "s": 1.0, "min": 60.0, None: 1.0}[m[2]]


def systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze is missing: apt-get install systemd"
    return exe


def verifiable_copy(tmp_path: Path, extra: str = "") -> Path:
    text = UNIT.read_text()
    assert text.count(INSTALLED) == 1, f"ExecStart must name {INSTALLED} exactly once"
    lstmad = Path(sys.executable).with_name("lstmad")
    assert lstmad.exists(), f"{lstmad} missing: pip install -e . first"
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALLED, str(lstmad)) + extra)
    return copy


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze(), "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_unit_verifies_with_no_warning(tmp_path: Path) -> None:
    res = verify(verifiable_copy(tmp_path))
    output = res.stdout + res.stderr
    assert res.returncode == 0, output
    assert "Unknown key" not in output and "Unknown section" not in output, output
    assert output.strip() == "", f"systemd-analyze verify printed warnings:\n{output}"


def test_verify_would_catch_an_unknown_key(tmp_path: Path) -> None:
    # systemd-analyze exits 0 on unknown keys: the check above must read the output.
    res = verify(verifiable_copy(tmp_path, "\n[Service]\nWatchDogSec=30s\n"))
    assert "Unknown key 'WatchDogSec'" in res.stdout + res.stderr


def exposure(unit: Path) -> float:
    res = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout)
    assert m, f"no exposure score in:\n{res.stdout}\n{res.stderr}"
    return float(m[1])


def test_security_score_is_low_and_recorded_in_readme(tmp_path: Path) -> None:
    score = exposure(verifiable_copy(tmp_path))
    print(f"systemd-analyze security --offline=true: exposure {score}")
    assert score <= MAX_EXPOSURE
    readme = (ROOT / "README.md").read_text()
    assert f"exposure level {score}" in readme, "README's recorded score is stale"


def test_unit_is_a_watched_notify_service_matching_the_daemon_config() -> None:
    s = unit_settings(UNIT.read_text())
    one = {k: v[-1] for k, v in s.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert one["Restart"] == "on-failure"
    assert one["ExecStart"].startswith(f"{INSTALLED} serve --config ")
    assert one["EnvironmentFile"] == "/etc/lstmad/lstmad.env"
    kafka = KafkaConfig()
    # The loop pings at half of WatchdogSec; one poll must fit well inside that.
    assert seconds(one["WatchdogSec"]) / 2 > 10 * kafka.poll_timeout_ms / 1000
    # systemd's SIGKILL must come after the daemon's own shutdown bound.
    assert seconds(one["TimeoutStopSec"]) > kafka.shutdown_timeout_s + 5
    for hardening in ("NoNewPrivileges", "ProtectSystem", "PrivateTmp", "DynamicUser"):
        assert one[hardening] in ("yes", "strict"), hardening
    assert one["RestrictAddressFamilies"] == "AF_INET AF_INET6 AF_UNIX"  # AF_UNIX: NOTIFY_SOCKET
    assert "@system-service" in s["SystemCallFilter"]


ASSIGNMENTS = re.findall(r"^#?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M)


def test_env_example_sets_the_credentials() -> None:
    assert {"LSTMAD_SASL_USERNAME", "LSTMAD_SASL_PASSWORD"} <= set(ASSIGNMENTS)


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_env_example_names_only_variables_the_daemon_reads(name: str) -> None:
    assert name in ENV, f"{ENV_EXAMPLE.name}: {name} is not read by streamer.config (ENV)"


def test_env_example_port_is_the_config_default() -> None:
    assert f"LSTMAD_METRICS_PORT={MetricsConfig().port}" in ENV_EXAMPLE.read_text()


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: preexec_fn must not import
_SECCOMP = ctypes.CDLL("libseccomp.so.2", use_errno=True)  # libseccomp2, a dependency of systemd
_SECCOMP.seccomp_init.restype = ctypes.c_void_p
_SECCOMP.seccomp_load.argtypes = [ctypes.c_void_p]
_SECCOMP.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
SCMP_ACT_ALLOW = 0x7FFF0000


def syscall_groups() -> dict[str, list[str]]:
    """``systemd-analyze syscall-filter``: every @group and its members (names or @groups)."""
    out = subprocess.run(
        [systemd_analyze(), "syscall-filter", "--no-pager"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    groups: dict[str, list[str]] = {}
    current: list[str] = []
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())
    return groups


def allowed_syscalls() -> set[str]:
    """The unit's SystemCallFilter= lines applied as systemd does: allow-list, then ~deny."""
    groups = syscall_groups()

    def expand(item: str) -> set[str]:
        return set().union(*(expand(m) for m in groups[item])) if item in groups else {item}

    allowed: set[str] = set()
    for value in unit_settings(UNIT.read_text())["SystemCallFilter"]:
        deny = value.startswith("~")
        items = set().union(*(expand(i) for i in value.lstrip("~").split()))
        allowed = allowed - items if deny else allowed | items
    return allowed


class Sandbox:
    """The unit's MemoryDenyWriteExecute= and SystemCallFilter= (EPERM), for a child process.

    The seccomp filter is built in the parent; the child (``preexec_fn``) only loads it and
    sets PR_SET_MDWE, calling into libraries already loaded.
    """

    def __init__(self) -> None:
        eperm = 0x00050000 | 1  # SCMP_ACT_ERRNO(EPERM): SystemCallErrorNumber=EPERM
        self.ctx = _SECCOMP.seccomp_init(eperm)
        assert self.ctx, "seccomp_init failed"
        self.names = sorted(allowed_syscalls())
        for name in self.names:
            nr = _SECCOMP.seccomp_syscall_resolve_name(name.encode())
            if nr >= 0:  # names of other architectures do not resolve here
                assert _SECCOMP.seccomp_rule_add(self.ctx, SCMP_ACT_ALLOW, nr, 0) == 0, name

    def __call__(self) -> None:
        if _LIBC.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE) failed: kernel older than 6.3?")
        if _SECCOMP.seccomp_load(self.ctx) != 0:
            raise OSError(ctypes.get_errno(), "seccomp_load failed")


def test_daemon_start_up_works_in_the_units_sandbox(tmp_path: Path) -> None:
    # MemoryDenyWriteExecute=yes and the syscall filter: ONNX Runtime, numpy and the config
    # loader must live with both. `serve --check` runs every model's probe batch, no Kafka.
    settings = unit_settings(UNIT.read_text())
    assert settings["MemoryDenyWriteExecute"] == ["yes"]
    assert settings["SystemCallErrorNumber"] == ["EPERM"]
    sandbox = Sandbox()
    assert "sched_setaffinity" not in sandbox.names and "openat" in sandbox.names
    cfg = tmp_path / "config.toml"
    cfg.write_text('[kafka]\nbootstrap_servers = ["127.0.0.1:9"]\n')
    lstmad = Path(sys.executable).with_name("lstmad")
    res = subprocess.run(
        [str(lstmad), "serve", "--check", "--config", str(cfg)],
        capture_output=True, text=True, timeout=60, preexec_fn=sandbox, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "configuration and models OK" in res.stdout


def test_sandbox_controls_really_deny(tmp_path: Path) -> None:
    sandbox = Sandbox()
    for code in (
        "import mmap; mmap.mmap(-1, 4096, prot=7)",  # W+X mapping: MemoryDenyWriteExecute
        "import os; os.sched_setaffinity(0, {0})",  # @resources is filtered out
    ):
        ctl = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
            preexec_fn=sandbox, check=False,
        )  # fmt: skip
        assert ctl.returncode != 0 and "PermissionError" in ctl.stderr, (code, ctl.stderr)
