from __future__ import annotations

from typing import Any

import pytest

from modelsync.api import constants as c
from modelsync.serving.health import assess, routine


def deployment(
    desired: int = 2,
    generation: int = 3,
    observed: int = 3,
    replicas: int = 2,
    updated: int = 2,
    available: int = 2,
    progress_reason: str = "NewReplicaSetAvailable",
) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": desired},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "readyReplicas": available,
            "conditions": [{"type": "Progressing", "status": "True", "reason": progress_reason}],
        },
    }


def states(live: dict[str, Any] | None) -> dict[str, tuple[bool, str]]:
    return {o.type: (o.status, o.reason) for o in assess(live).observed}


@pytest.mark.parametrize(
    ("live", "ready", "progressing", "degraded"),
    [
        (deployment(), (True, c.REASON_AVAILABLE), (False, c.REASON_ROLLED_OUT), False),
        (None, (False, c.REASON_ROLLING_OUT), (True, c.REASON_ROLLING_OUT), False),
        (
            deployment(observed=2),
            (False, c.REASON_ROLLING_OUT),
            (True, c.REASON_ROLLING_OUT),
            False,
        ),
        # A new version half-way: old pods still serve, the new one is not Ready yet.
        (
            deployment(replicas=3, updated=1, available=2, progress_reason="ReplicaSetUpdated"),
            (False, c.REASON_ROLLING_OUT),
            (True, c.REASON_ROLLING_OUT),
            False,
        ),
        (
            deployment(
                updated=1, replicas=3, available=2, progress_reason="ProgressDeadlineExceeded"
            ),
            (False, c.REASON_PROGRESS_DEADLINE_EXCEEDED),
            (False, c.REASON_PROGRESS_DEADLINE_EXCEEDED),
            True,
        ),
        # Rolled out, then a pod was lost.
        (
            deployment(available=1),
            (False, c.REASON_PODS_NOT_READY),
            (False, c.REASON_ROLLED_OUT),
            True,
        ),
        (
            deployment(desired=0, replicas=0, updated=0, available=0),
            (True, c.REASON_SCALED_TO_ZERO),
            (False, c.REASON_ROLLED_OUT),
            False,
        ),
    ],
    ids=["available", "missing", "unobserved", "rolling", "deadline", "lost-pod", "zero"],
)
def test_assess(
    live: dict[str, Any] | None,
    ready: tuple[bool, str],
    progressing: tuple[bool, str],
    degraded: bool,
) -> None:
    found = states(live)
    assert found[c.READY] == ready
    assert found[c.PROGRESSING] == progressing
    assert found[c.DEGRADED][0] is degraded


def test_counts_come_from_the_deployment_status() -> None:
    state = assess(deployment(replicas=3, updated=1, available=2))
    assert (state.replicas, state.ready_replicas, state.updated_replicas) == (3, 2, 1)


def shown(reason: str, status: str = "False") -> list[dict[str, Any]]:
    return [{"type": c.READY, "status": status, "reason": reason}]


@pytest.mark.parametrize(
    ("live", "current", "quiet"),
    [
        # A rollout going as planned, first seen, or after a version that served.
        (None, None, True),
        (deployment(observed=2), None, True),
        (deployment(updated=1, available=1), shown(c.REASON_ROLLING_OUT), True),
        (deployment(updated=1, available=1), shown(c.REASON_AVAILABLE, "True"), True),
        # Its end is written at once: Ready, or a deadline passed.
        (deployment(), shown(c.REASON_ROLLING_OUT), False),
        (deployment(updated=1, progress_reason="ProgressDeadlineExceeded"), None, False),
        # Replicas lost after a rollout: Degraded, written at once.
        (deployment(available=1), shown(c.REASON_AVAILABLE, "True"), False),
        # The status says something the rollout corrects (a failure, an invalid spec).
        (deployment(updated=1, available=1), shown(c.REASON_INVALID_SPEC), False),
        (deployment(updated=1, available=1), shown(c.REASON_APPLY_FAILED), False),
    ],
)
def test_routine_rollout_status_may_wait_until_its_end(
    live: dict[str, Any] | None, current: list[dict[str, Any]] | None, quiet: bool
) -> None:
    assert routine(assess(live), current) is quiet
