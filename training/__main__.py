"""``python -m training {train,evaluate}``: the trainer's subcommands without the daemon's.

Same arguments as ``lstmad train`` / ``lstmad evaluate``; only the training modules are
imported, so this works wherever the ``[train]`` extra is installed.
"""

import argparse
import sys

from training import evaluate, train

parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
for name, module in (("train", train), ("evaluate", evaluate)):
    p = sub.add_parser(name, help=(module.__doc__ or "").splitlines()[0])
    module.add_arguments(p)
    p.set_defaults(_run=module.run)
args = parser.parse_args()
sys.exit(int(args._run(args) or 0))
