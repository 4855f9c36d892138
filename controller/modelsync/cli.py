"""The `modelsync` command line, also installed as the kubectl plugin `kubectl-modelsync`.

Later issues add the subcommands (validate, diff, status, history, sync, suspend,
resume, rollback, run); for now the program only knows who it is.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from modelsync import __version__

DESCRIPTION = "GitOps for machine-learning model serving on Kubernetes."
EPILOG = """\
examples:
  modelsync --version
  kubectl modelsync --help
"""


def program_name(argv0: str) -> str:
    """Name the program as the user called it: `kubectl modelsync` when run as a plugin."""
    base = os.path.basename(argv0)
    if base.startswith("kubectl-"):
        return "kubectl " + base.removeprefix("kubectl-")
    if base in {"__main__.py", ""}:
        return "modelsync"
    return base


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"modelsync {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(program_name(sys.argv[0]))
    parser.parse_args(argv)
    parser.print_help()
    return 0
