"""Ownership: which live objects a ModelSync may write over, and which it may delete.

Pure. An object belongs to the ModelSync its labels name (every apply sets them).
Server-side apply with forced conflicts would take over anything; so a ModelSync
applies only over objects that are its own, or that carry the adoption
annotation naming it (set by whoever owns the object, on the live object: the
annotation in git counts for nothing). Flux adopts any existing object silently;
we refuse. Prune deletes only what is still labelled as its own.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelsync.api import constants as c
from modelsync.api.manifest import text


def owner(live: Mapping[str, object]) -> tuple[str, str] | None:
    """(namespace, name) of the ModelSync the object's labels name, or None."""
    name = text(live, "metadata", "labels", c.LABEL_SYNC_NAME)
    namespace = text(live, "metadata", "labels", c.LABEL_SYNC_NAMESPACE)
    if not name and not namespace:
        return None
    return namespace, name


def adoption(sync_namespace: str, sync_name: str) -> str:
    """The value of the adoption annotation that lets this ModelSync take an object over."""
    return f"{sync_namespace}/{sync_name}"


def refusal(
    live: Mapping[str, object] | None, sync_namespace: str, sync_name: str, applied: bool = False
) -> str | None:
    """Why this ModelSync may not apply over `live` (None: it may). `applied`: the object
    is in this ModelSync's inventory, so it did not exist before our first apply (labels
    taken off by hand are put back, as any drift)."""
    if live is None:
        return None
    found = owner(live)
    if found == (sync_namespace, sync_name) or (found is None and applied):
        return None
    if found is not None:
        return (
            f"already managed by ModelSync {found[0]}/{found[1]} (labels {c.LABEL_SYNC_NAMESPACE}, "
            f"{c.LABEL_SYNC_NAME}); two ModelSyncs must not list the same object: remove it "
            "from one of the two repositories"
        )
    if text(live, "metadata", "annotations", c.ANNOTATION_ADOPT) == adoption(
        sync_namespace, sync_name
    ):
        return None
    return (
        "exists and was not created by this ModelSync; to let it take the object over, "
        f"annotate the live object: kubectl annotate ... "
        f"{c.ANNOTATION_ADOPT}={adoption(sync_namespace, sync_name)}, or rename it in git"
    )


def prunable(live: Mapping[str, object], sync_namespace: str, sync_name: str) -> bool:
    """Still labelled as this ModelSync's own: only then may its prune delete it."""
    return owner(live) == (sync_namespace, sync_name)
