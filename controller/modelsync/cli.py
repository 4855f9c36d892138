"""The `modelsync` command line, also installed as the kubectl plugin `kubectl-modelsync`.

Later issues add the subcommands (validate, diff, status, history, sync, suspend,
resume, rollback, run); for now the program only knows who it is.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from modelsync import __version__
from modelsync.settings import OperatorSettings

DESCRIPTION = "GitOps for machine-learning model serving on Kubernetes."
EPILOG = """\
examples:
  modelsync --version
  modelsync run --namespace models
  kubectl modelsync --help
"""

RUN_EPILOG = """\
examples:
  modelsync run                                  # every namespace, kubeconfig or in-cluster
  modelsync run -n team-a -n team-b --workers 8  # only these namespaces
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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run the operator",
        description="Run the operator: serve every ModelDeployment it can see.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = OperatorSettings()
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        dest="namespaces",
        help="a namespace to watch (repeat for more; default: all namespaces)",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=defaults.workers,
        help=f"ModelDeployments reconciled at once (default {defaults.workers})",
    )
    run.add_argument(
        "--resync-seconds",
        type=float,
        default=defaults.resync_seconds,
        help=f"full resync period (default {defaults.resync_seconds:.0f})",
    )
    run.add_argument(
        "--http-port",
        type=int,
        default=defaults.http_port,
        help=f"port of /metrics, /healthz, /readyz; 0 turns it off (default {defaults.http_port})",
    )
    run.add_argument(
        "--git-cache-dir",
        default=None,
        help="where repositories and snapshots are kept (default: under the temp directory)",
    )
    run.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, else $KUBECONFIG)"
    )
    run.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default INFO",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(program_name(sys.argv[0]))
    args = parser.parse_args(argv)
    if args.command == "run":
        return run_operator(args)
    parser.print_help()
    return 0


def run_operator(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.log_level != "DEBUG":
        # kopf logs every handled watch event at INFO; ours say what matters.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    settings = OperatorSettings(
        namespaces=tuple(args.namespaces),
        workers=args.workers,
        resync_seconds=args.resync_seconds,
        http_port=args.http_port,
        kubeconfig=args.kubeconfig,
        git_cache_dir=args.git_cache_dir,
    )
    from modelsync import operator  # kopf and the clients load only for `run`

    try:
        operator.run(settings)
    except KeyboardInterrupt:
        return 130
    return 0
