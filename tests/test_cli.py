"""`lstmad`'s command line: every subcommand is declared, only the one that runs is imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streamer.cli import COMMANDS, build_parser

REPO = Path(__file__).resolve().parent.parent


def test_every_subcommand_declares_its_arguments() -> None:
    parser = build_parser()  # imports every subcommand's module, as a broken one must fail here
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([name, "--help"])
        assert exc.value.code == 0


def test_only_the_subcommand_that_runs_is_imported() -> None:
    probe = (
        "import sys; from streamer.cli import COMMANDS, main; rc = main(['version']); "
        "print(rc, sorted(m for m, _ in COMMANDS.values() if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[-1] == "0 ['streamer.version']"


def test_an_unknown_subcommand_is_refused_by_name() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "streamer", "sreve"], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 2 and "invalid choice: 'sreve'" in out.stderr
