"""Sync, step record: whether the models a revision applied are serving (Flux's `wait`).

A pure function of the ModelSync's inventory and the ModelDeployments the operator
watches. A ModelDeployment counts as Ready only when its Ready condition is True for
its current generation: an old Ready=True says nothing about the spec git just changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from modelsync.api import conditions
from modelsync.api import constants as c
from modelsync.api.manifest import get, mapping

# Condition messages stay short enough for `kubectl get`'s MESSAGE column.
MAX_MESSAGE = 120


@dataclass(frozen=True)
class ModelsHealth:
    """The models of one inventory: how many, and those not Ready with why."""

    total: int = 0
    not_ready: list[tuple[str, str]] = field(default_factory=list)  # (namespace/name, why)

    @property
    def healthy(self) -> bool:
        return not self.not_ready

    def message(self) -> str:
        """One line under MAX_MESSAGE characters: how many, and the first names."""
        if self.healthy:
            return f"all {self.total} models Ready" if self.total else "no models to wait for"
        head = f"{len(self.not_ready)} of {self.total} models not Ready: "
        shown: list[str] = []
        for name, why in self.not_ready:
            item = f"{name} ({why})" if why else name
            rest = len(self.not_ready) - len(shown) - 1
            tail = f", +{rest} more" if rest else ""
            if len(head + ", ".join([*shown, item]) + tail) > MAX_MESSAGE:
                if not shown:
                    shown.append(name[: MAX_MESSAGE - len(head) - len(tail)])
                break
            shown.append(item)
        more = len(self.not_ready) - len(shown)
        return head + ", ".join(shown) + (f", +{more} more" if more else "")

    def details(self) -> list[str]:
        """Every model not Ready and why, whole, for status (`describe` shows them)."""
        return [f"{name}: {why}" for name, why in self.not_ready]


def model_ready(md: Mapping[str, object] | None) -> tuple[bool, str]:
    """Whether one ModelDeployment serves its current spec, and if not, why (its Ready
    condition's reason, or that the operator has not yet seen its spec)."""
    if md is None:
        return False, "not created yet"
    status = mapping(md, "status")
    ready = conditions.find(status.get("conditions"), c.READY)
    if ready is None or status.get("observedGeneration") != get(md, "metadata", "generation"):
        return False, "not reconciled yet"
    if ready.get("status") != "True":
        return False, str(ready.get("reason") or "NotReady")
    return True, ""


def assess(
    inventory: list[dict[str, str]],
    lookup: Callable[[str, str], Mapping[str, object] | None],
    watched: Callable[[str], bool],
) -> ModelsHealth:
    """The health of the ModelDeployments in `inventory`; those in namespaces the
    operator does not watch are left out (nothing here can know)."""
    total, not_ready = 0, []
    for entry in sorted(inventory, key=lambda e: (e.get("namespace", ""), e["name"])):
        if entry["kind"] != c.MODELDEPLOYMENT_KIND or entry["apiVersion"] != c.API_VERSION:
            continue
        namespace = entry.get("namespace", "")
        if not watched(namespace):
            continue
        total += 1
        ok, why = model_ready(lookup(namespace, entry["name"]))
        if not ok:
            not_ready.append((f"{namespace}/{entry['name']}", why))
    return ModelsHealth(total, not_ready)
