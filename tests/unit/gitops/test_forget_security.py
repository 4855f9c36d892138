"""What the operator keeps per ModelSync (retry counts, locks, remote clients and their
health, what was told and what failed) goes when the ModelSync is deleted: a tenant
creating and deleting ModelSyncs must not grow the operator's memory."""

from __future__ import annotations

from typing import Any

from modelsync.gitops.commitstatus import StatusWriter
from modelsync.gitops.notify import Notifier
from modelsync.gitops.reconciler import SyncReconciler
from modelsync.runtime.settings import OperatorSettings


def nothing(*_: object) -> None:
    return None


def kept(reconciler: SyncReconciler) -> dict[str, list[Any]]:
    """Every per-ModelSync entry the reconciler and its senders hold, by map."""
    assert reconciler.statuses is not None
    assert reconciler.notifier is not None
    maps: dict[str, dict[Any, Any]] = {
        "failures": reconciler._failures,
        "locks": reconciler._locks,
        "remote health": reconciler._remote_seen,
        "remote clients": reconciler.clusters._clients,
        "statuses said": reconciler.statuses._last,
        "statuses failing": reconciler.statuses._failing,
        "notices said": reconciler.notifier._said,
        "notices failing": reconciler.notifier._failing,
    }
    return {what: sorted(found) for what, found in maps.items()}


def test_security_a_deleted_modelsync_leaves_nothing_in_the_operators_maps() -> None:
    statuses, notifier = StatusWriter(nothing, nothing), Notifier(nothing, nothing)
    # Nothing here reaches the cluster or git: no client, no fetcher, no cache.
    unused: Any = None
    reconciler = SyncReconciler(
        unused,
        unused,
        unused,
        statuses=statuses,
        notifier=notifier,
        settings=OperatorSettings().sync_settings(),
    )
    try:
        for name in ("prod", "other"):
            reconciler._retry_in("team", name, 60.0)
            reconciler._lock("team", name)
            reconciler._remote_seen[("team", name)] = object()  # type: ignore[assignment]
            reconciler.clusters._clients[("team", name)] = object()  # type: ignore[assignment]
            statuses._last[("team", name, "status")] = ("r", "pending", "d")
            statuses._failing[("team", name, "status")] = "answered 500"
            notifier._said[("ModelSync", "team", name)] = None
            notifier._failing[("team", name, "hook")] = "answered 500"
        reconciler.forget("team", "prod")
        left = kept(reconciler)
    finally:
        statuses.shutdown()
        notifier.shutdown()
    assert not any("prod" in str(key) for keys in left.values() for key in keys), left
    assert all(keys for keys in left.values()), f"the other ModelSync lost its own: {left}"
