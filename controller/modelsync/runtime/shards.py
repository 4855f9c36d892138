"""Operator shards: which objects one operator reconciles, and ModelSyncs no shard serves.

`modelsync run --shard NAME` reconciles only ModelSyncs labelled `modelsync.io/shard=NAME`
and what they apply (which carries the label); an operator without `--shard` reconciles
only objects without it (Flux's `sharding.fluxcd.io/key`). Each shard holds a Lease of
its own, labelled with its name: a ModelSync whose shard has no live Lease would never be
looked at, so the unsharded operator marks it `Ready=False`, reason `NoShard` (a typo in
the label is the realistic cause). The functions here are pure; the operator calls them."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from modelsync.api import constants as c
from modelsync.api.conditions import find
from modelsync.api.manifest import get, integer, text


def lease_name(base: str, shard: str) -> str:
    """Each shard's own Lease: its replicas elect among themselves, not across shards."""
    return f"{base}-{shard}" if shard else base


def mine(metadata: Mapping[str, object], shard: str) -> bool:
    """Whether the object (by its metadata) is this operator's to reconcile."""
    return text(metadata, "labels", c.LABEL_SHARD) == shard


def label_selector(shard: str) -> str:
    """The same filter as a Kubernetes label selector (for list requests)."""
    return f"{c.LABEL_SHARD}={shard}" if shard else f"!{c.LABEL_SHARD}"


def _time(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def live_shards(leases: Iterable[Mapping[str, object]], now: datetime.datetime) -> set[str]:
    """The shards whose Lease was renewed within its duration."""
    live: set[str] = set()
    for lease in leases:
        shard = text(lease, "metadata", "labels", c.LABEL_SHARD)
        renewed = text(lease, "spec", "renewTime")
        duration = integer(lease, "spec", "leaseDurationSeconds")
        if not shard or not renewed or not duration:
            continue
        try:
            expires = _time(renewed) + datetime.timedelta(seconds=duration)
        except ValueError:
            continue
        if expires >= now:
            live.add(shard)
    return live


@dataclass(frozen=True)
class Unserved:
    namespace: str
    name: str
    shard: str

    def message(self, lease_namespace: str, lease_base: str) -> str:
        return (
            f"no operator runs shard {self.shard!r} (label {c.LABEL_SHARD}): no live Lease "
            f"{lease_namespace}/{lease_name(lease_base, self.shard)}; fix the label or "
            "deploy that shard"
        )


def unserved(
    modelsyncs: Iterable[Mapping[str, object]],
    live: set[str],
    lease_namespace: str,
    lease_base: str,
) -> list[Unserved]:
    """The labelled ModelSyncs whose shard is not live and whose Ready does not say so
    yet (so a steady state writes nothing)."""
    found = []
    for ms in modelsyncs:
        shard = text(ms, "metadata", "labels", c.LABEL_SHARD)
        if not shard or shard in live or get(ms, "metadata", "deletionTimestamp"):
            continue
        item = Unserved(text(ms, "metadata", "namespace"), text(ms, "metadata", "name"), shard)
        ready = find(get(ms, "status", "conditions"), c.READY) or {}
        if (
            ready.get("status") == "False"
            and ready.get("reason") == c.REASON_NO_SHARD
            and ready.get("message") == item.message(lease_namespace, lease_base)
        ):
            continue
        found.append(item)
    return found
