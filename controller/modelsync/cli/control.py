"""`modelsync sync`, `suspend` and `resume`: asking the operator, through the
ModelSync, to sync now, or to stop and start again."""

from __future__ import annotations

import datetime
import time

import click

from modelsync.api import constants as c
from modelsync.cli.common import (
    MS,
    Cluster,
    condition,
    err,
    fail,
    namespace_option,
    out,
    pass_cluster,
)


@click.command(epilog="Example:\n\n\b\n  modelsync sync prod --wait --timeout 120")
@click.argument("name")
@click.option(
    "--wait",
    is_flag=True,
    help="wait for the sync and its models to be Ready; exit 0 only if they are",
)
@click.option("--timeout", type=float, default=300.0, show_default=True, help="seconds to wait")
@namespace_option
@pass_cluster
def sync(cluster: Cluster, name: str, wait: bool, timeout: float) -> None:
    """Ask the operator to sync the ModelSync NAME now."""
    cluster.get(MS, name, "ModelSync")
    token = datetime.datetime.now(datetime.UTC).isoformat()
    cluster.patch(
        MS,
        name,
        "ModelSync",
        {"metadata": {"annotations": {c.ANNOTATION_RECONCILE_REQUESTED: token}}},
    )
    if not wait:
        out.print(f"sync of {cluster.namespace}/{name} requested")
        return
    deadline = time.monotonic() + timeout
    with err.status(f"syncing {cluster.namespace}/{name}"):
        while True:
            ms = cluster.get(MS, name, "ModelSync")
            ready = condition(ms, c.READY)
            handled = (ms.get("status") or {}).get("lastHandledReconcileAt") == token
            # Applied, its models still coming up: wait for them too (Flux's `wait`).
            if handled and ready.get("reason") != c.REASON_MODELS_NOT_READY:
                break
            if time.monotonic() > deadline:
                if handled:
                    healthy = condition(ms, c.HEALTHY).get("message", "")
                    fail(
                        f"{cluster.namespace}/{name} applied, but its models were not Ready "
                        f"within {timeout:.0f}s: {healthy}"
                    )
                fail(f"the operator did not handle the sync within {timeout:.0f}s; is it running?")
            time.sleep(0.5)
    message = ready.get("message", "")
    if ready.get("status") == "True":
        out.print(f"[green]synced[/green] {cluster.namespace}/{name}: {message}")
        return
    err.print(
        f"[red]sync failed[/red] {cluster.namespace}/{name} ({ready.get('reason')}): {message}"
    )
    raise SystemExit(1)


def _suspending(command: str, suspend: bool, doc: str) -> click.Command:
    """`suspend` or `resume`: spec.suspend of the ModelSync NAME, set or cleared."""

    @click.command(command, help=doc, epilog=f"Example:\n\n\b\n  modelsync {command} prod")
    @click.argument("name")
    @namespace_option
    @pass_cluster
    def set_suspend(cluster: Cluster, name: str) -> None:
        cluster.get(MS, name, "ModelSync")
        cluster.patch(MS, name, "ModelSync", {"spec": {"suspend": suspend}})
        out.print(f"{cluster.namespace}/{name} {'suspended' if suspend else 'resumed'}")

    return set_suspend


suspend = _suspending(
    "suspend", True, "Stop fetching, applying and pruning for the ModelSync NAME."
)
resume = _suspending("resume", False, "Resume the ModelSync NAME; it takes the newest commit.")
