"""The ``lstmad`` console script: one entry point, a subcommand per job.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their subcommand runs, so
``lstmad serve`` never imports TensorFlow and ``lstmad --help`` starts instantly.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, one-line help). Training commands need the [train] extra.
COMMANDS: dict[str, tuple[str, str]] = {
    "version": ("streamer.version", "print lstmad's version and its runtime libraries"),
    "train": ("training.train", "train the LSTM forecaster from [training] and export ONNX"),
    "evaluate": ("training.evaluate", "score the exported model on the test split, with plots"),
    "serve": ("streamer.serve", "run the Kafka daemon: score every stream, publish alerts"),
    "replay": ("streamer.replay", "run the daemon's pipeline over a JSON-lines or CSV file"),
    "demo": ("streamer.demo", "local Kafka + bundled ops streams with anomalies + the daemon"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; only ``command``'s module is imported to declare its
    arguments (every module's when ``command`` is None)."""
    parser = argparse.ArgumentParser(
        prog="lstmad", description="Streaming anomaly detection with LSTM forecasts over Kafka."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if command is None or name == command:
            # the module declares its arguments; it keeps heavy imports inside its run()
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Import only the subcommand that runs: the others' modules cost ``lstmad serve`` 1.2 MiB
    # of resident memory for the life of the daemon, and ``lstmad --help`` needs none of them.
    args = build_parser(argv[0] if argv else "").parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
