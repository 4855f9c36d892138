"""The `modelsync` command line, also installed as the kubectl plugin `kubectl-modelsync`.

Exit codes: 0 success; 1 the thing asked about is not well (a failed sync, a
rollback refused); 2 the command could not run (bad usage, no kubeconfig, an
unreachable cluster, a missing object or path).
"""

from __future__ import annotations

import os
import sys

import click

from modelsync import __version__
from modelsync.cli import commits, control, status, validate
from modelsync.cli.common import Cluster
from modelsync.cli.run import run

__all__ = ["main", "main_group", "program_name", "run"]


def program_name(argv0: str) -> str:
    """Name the program as the user called it: `kubectl modelsync` when run as a plugin."""
    base = os.path.basename(argv0)
    if base.startswith("kubectl-"):
        return "kubectl " + base.removeprefix("kubectl-")
    if base in {"__main__.py", ""}:
        return "modelsync"
    return base


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Examples:\n\n\b\n  modelsync status -A\n  kubectl modelsync history iris -n models",
)
@click.version_option(__version__, prog_name="modelsync", message="%(prog)s %(version)s")
@click.option(
    "--kubeconfig",
    envvar="KUBECONFIG",
    default=None,
    help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)",
)
@click.option("-n", "--namespace", default=None, help="namespace (default: the context's)")
@click.pass_context
def main_group(ctx: click.Context, kubeconfig: str | None, namespace: str | None) -> None:
    """GitOps for machine-learning model serving on Kubernetes."""
    if kubeconfig and os.pathsep in kubeconfig:
        kubeconfig = kubeconfig.split(os.pathsep)[0]
    ctx.obj = Cluster(kubeconfig, namespace)


for command in (
    validate.validate,
    validate.diff,
    status.status,
    status.history,
    status.model_test,
    control.sync,
    control.suspend,
    control.resume,
    commits.rollback,
    commits.promote,
    run,
):
    main_group.add_command(command)


def main(argv: list[str] | None = None) -> int:
    try:
        main_group.main(args=argv, prog_name=program_name(sys.argv[0]), standalone_mode=False)
    except click.exceptions.Exit as done:
        return int(done.exit_code or 0)
    except click.ClickException as error:
        error.show()
        return 2
    except click.exceptions.Abort:
        return 130
    except SystemExit as done:
        return int(done.code or 0) if isinstance(done.code, int) else 1
    return 0
