"""``lstmad version``: the package version and the versions of the libraries it serves with."""

from __future__ import annotations

import argparse
from importlib import metadata

RUNTIME = ("onnxruntime", "onnx", "kafka-python", "prometheus-client", "numpy")
TRAIN = ("tensorflow-cpu", "keras", "tf2onnx")


def versions(names: tuple[str, ...] = RUNTIME + TRAIN) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    info = {"lstmad": metadata.version("lstmad"), **versions()}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k:18} {v or '(not installed)'}")
    return 0
