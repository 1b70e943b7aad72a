"""``python -m bench <name> [options]``: run one benchmark, or ``all`` of them in order."""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHES = {
    "inference": "bench.inference",
    "detection": "bench.detection.runner",
    "forecast": "bench.forecast",
    "throughput": "bench.throughput",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="bench", required=True)
    for name, module in BENCHES.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=(mod.__doc__ or "").splitlines()[0])
        p.set_defaults(_module=mod)
        mod.add_arguments(p)
    args = parser.parse_args(argv)
    return int(args._module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
