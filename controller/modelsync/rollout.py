"""Rollout decisions: has a new revision of a model failed, and what happens then. Pure.

A revision has failed when its Deployment passed its progress deadline (pods that
never become ready end there) or when a container of one of its pods restarted
more than `rollback.maxRestarts` times. A failed revision is rolled back to the
model's last healthy spec (kept in status, so it survives a restart of the
operator) and quarantined by its spec hash: it is not applied again until git
changes the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from modelsync import constants as c
from modelsync.conditions import find

DEFAULT_MAX_RESTARTS = 3


@dataclass(frozen=True)
class Failure:
    reason: str
    message: str


class Action(Enum):
    WAIT = "wait"  # nothing to decide yet (rolling out, or serving as it should)
    PROMOTE = "promote"  # the wanted revision is healthy: it becomes the stable one
    ROLL_BACK = "roll back"  # it failed and a healthy spec is known: restore that
    FAIL = "fail"  # it failed with nothing to go back to, or rollback is off


@dataclass(frozen=True)
class Decision:
    action: Action
    failure: Failure | None = None


def detect_failure(
    deployment: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    spec_hash: str,
    max_restarts: int,
) -> Failure | None:
    """Why the revision with `spec_hash` has failed, or None while it has not."""
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        if (pod["metadata"].get("labels") or {}).get(c.LABEL_SPEC_HASH) != spec_hash:
            continue
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            restarts = int(container.get("restartCount") or 0)
            if restarts > max_restarts:
                return Failure(
                    c.REASON_CRASH_LOOP,
                    f"container {container.get('name')} of pod {pod['metadata']['name']} "
                    f"restarted {restarts} times (rollback.maxRestarts is {max_restarts})",
                )
    if deployment is None:
        return None
    status = deployment.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(
        deployment["metadata"].get("generation") or 0
    ):
        return None  # the deadline of an older generation says nothing about this one
    progress = find(status.get("conditions"), "Progressing") or {}
    if progress.get("reason") == "ProgressDeadlineExceeded":
        deadline = (deployment.get("spec") or {}).get("progressDeadlineSeconds")
        return Failure(
            c.REASON_PROGRESS_DEADLINE_EXCEEDED,
            f"not available within progressDeadlineSeconds={deadline}: "
            f"{progress.get('message', '')}".rstrip(": "),
        )
    return None


def decide(
    *,
    wanted_hash: str,
    stable_hash: str | None,
    has_stable_spec: bool,
    ready: bool,
    failure: Failure | None,
    automatic: bool,
) -> Decision:
    """What to do about the wanted revision (not quarantined) given how it is doing."""
    if failure is not None and wanted_hash != stable_hash:
        if automatic and has_stable_spec:
            return Decision(Action.ROLL_BACK, failure)
        return Decision(Action.FAIL, failure)
    if ready and wanted_hash != stable_hash:
        return Decision(Action.PROMOTE)
    return Decision(Action.WAIT)


def remember(
    history: list[dict[str, Any]] | None, entry: dict[str, Any], limit: int
) -> list[dict[str, Any]]:
    """Newest first, at most `limit` entries; the same outcome of the same spec once."""
    history = list(history or [])
    if history and {k: history[0].get(k) for k in ("specHash", "result")} == {
        k: entry.get(k) for k in ("specHash", "result")
    }:
        return history
    return [entry, *history][: max(1, limit)]
