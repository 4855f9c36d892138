"""Status conditions in the Kubernetes convention (metav1.Condition), as plain dicts.

`lastTransitionTime` moves only when a condition's status changes; reason,
message and observedGeneration follow the latest observation.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass

from modelsync.api.manifest import JsonValue, Manifest, items, mapping, text

Condition = Manifest


@dataclass(frozen=True)
class Observed:
    """One condition as the reconciler sees it now."""

    type: str
    status: bool
    reason: str
    message: str = ""


def timestamp(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(
    current: object,
    observed: list[Observed],
    generation: int,
    now: datetime.datetime,
) -> list[Condition]:
    """The conditions to write: `observed` ones replace theirs, others stay as they were
    (`current` is status.conditions: what is not a list of objects holds none)."""
    by_type = {text(condition, "type"): dict(condition) for condition in items(current)}
    for seen in observed:
        status = "True" if seen.status else "False"
        previous = by_type.get(seen.type)
        changed = previous is None or previous.get("status") != status
        by_type[seen.type] = {
            "type": seen.type,
            "status": status,
            "reason": seen.reason,
            "message": seen.message,
            "observedGeneration": generation,
            "lastTransitionTime": (
                timestamp(now) if changed or previous is None else previous["lastTransitionTime"]
            ),
        }
    return sorted(by_type.values(), key=lambda condition: text(condition, "type"))


def without(current: object, kinds: list[str]) -> list[Condition]:
    """The conditions, less those of the given types."""
    return [dict(condition) for condition in items(current) if condition.get("type") not in kinds]


def find(conditions: object, kind: str) -> Mapping[str, JsonValue] | None:
    """The condition `kind` of a list of conditions (anything else has none)."""
    for condition in items(conditions):
        if condition.get("type") == kind:
            return condition
    return None


def of(obj: object, kind: str) -> Condition:
    """The condition `kind` of an object (from its status), or {} when it has none."""
    return dict(find(mapping(obj, "status").get("conditions"), kind) or {})


def is_true(conditions: object, kind: str) -> bool:
    found = find(conditions, kind)
    return found is not None and found.get("status") == "True"
