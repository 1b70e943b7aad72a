"""``python -m bench <name> [options]``: run one benchmark, or ``all`` of them in order.

``all`` runs every benchmark with its defaults (what ``make bench`` does), then prints every
figure of the results file in one table beside its target.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from bench import report

BENCHES = {
    "inference": "bench.inference",
    "detection": "bench.detection.runner",
    "forecast": "bench.forecast",
    "throughput": "bench.throughput",
}


def run_all() -> int:
    t0 = time.monotonic()
    for name, module in BENCHES.items():
        print(f"\n=== bench {name} ===", flush=True)
        mod = importlib.import_module(module)
        parser = argparse.ArgumentParser()
        mod.add_arguments(parser)
        code = int(mod.run(parser.parse_args([])) or 0)
        if code:
            return code
    figures = report.load_figures(benches=BENCHES)
    print(f"\n=== all benchmarks ({time.monotonic() - t0:.0f} s) ===")
    report.print_table(figures)
    missed = [f"{f.bench} {f.name}" for f in figures if f.met is False]
    print(f"targets missed: {', '.join(missed) if missed else 'none'}")
    print(f"results -> {report.RESULTS}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="bench", required=True)
    sub.add_parser("all", help="every benchmark with its defaults, then one table")
    summary = sub.add_parser("summary", help="print the figures of bench/results/latest.json")
    summary.add_argument("--markdown", action="store_true", help="as a Markdown table")
    for name, module in BENCHES.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=(mod.__doc__ or "").splitlines()[0])
        p.set_defaults(_module=mod)
        mod.add_arguments(p)
    args = parser.parse_args(argv)
    if args.bench == "all":
        return run_all()
    if args.bench == "summary":
        figures = report.load_figures(benches=BENCHES)
        if args.markdown:
            print(report.markdown_table(figures))
        else:
            report.print_table(figures)
        return 0
    return int(args._module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
