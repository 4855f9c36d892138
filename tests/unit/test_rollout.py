from __future__ import annotations

from typing import Any

import pytest

from modelsync import constants as c
from modelsync.rollout import Action, Failure, decide, detect_failure, remember


def pod(name: str, spec_hash: str, restarts: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {c.LABEL_SPEC_HASH: spec_hash}},
        "status": {"containerStatuses": [{"name": "server", "restartCount": restarts}]},
    }


def deployment(reason: str = "ReplicaSetUpdated", observed: int = 2) -> dict[str, Any]:
    return {
        "metadata": {"generation": 2},
        "spec": {"progressDeadlineSeconds": 5},
        "status": {
            "observedGeneration": observed,
            "conditions": [{"type": "Progressing", "reason": reason, "message": "m"}],
        },
    }


def test_restarts_beyond_the_limit_fail_only_the_new_revision() -> None:
    pods = [pod("old", "aaa", 9), pod("new", "bbb", 2)]
    assert detect_failure(None, pods, "bbb", max_restarts=3) is None
    failure = detect_failure(None, [*pods, pod("new-2", "bbb", 4)], "bbb", max_restarts=3)
    assert failure is not None
    assert failure.reason == c.REASON_CRASH_LOOP
    assert "pod new-2 restarted 4 times" in failure.message


def test_the_progress_deadline_fails_a_revision() -> None:
    failure = detect_failure(deployment("ProgressDeadlineExceeded"), [], "bbb", 3)
    assert failure is not None
    assert failure.reason == c.REASON_PROGRESS_DEADLINE_EXCEEDED
    assert "progressDeadlineSeconds=5" in failure.message
    # A deadline reported for an older generation says nothing about the new one.
    assert detect_failure(deployment("ProgressDeadlineExceeded", observed=1), [], "bbb", 3) is None
    assert detect_failure(deployment(), [], "bbb", 3) is None


FAILED = Failure(c.REASON_PROGRESS_DEADLINE_EXCEEDED, "late")


@pytest.mark.parametrize(
    ("kwargs", "action"),
    [
        ({"ready": True}, Action.PROMOTE),
        ({"ready": True, "stable_hash": "new"}, Action.WAIT),
        ({"ready": False}, Action.WAIT),
        ({"failure": FAILED}, Action.ROLL_BACK),
        ({"failure": FAILED, "automatic": False}, Action.FAIL),
        ({"failure": FAILED, "has_stable_spec": False}, Action.FAIL),
        # The stable revision itself failing (a node lost, say) is not rolled back to itself.
        ({"failure": FAILED, "stable_hash": "new"}, Action.WAIT),
    ],
    ids=[
        "promote",
        "already-stable",
        "rolling",
        "roll-back",
        "automatic-off",
        "nothing-to-restore",
        "stable-failing",
    ],
)
def test_decide(kwargs: dict[str, Any], action: Action) -> None:
    arguments: dict[str, Any] = {
        "wanted_hash": "new",
        "stable_hash": "old",
        "has_stable_spec": True,
        "ready": False,
        "failure": None,
        "automatic": True,
    }
    arguments.update(kwargs)
    assert decide(**arguments).action is action


def test_history_is_bounded_newest_first_without_repeats() -> None:
    history: list[dict[str, Any]] = []
    for spec in ("a", "b", "b", "c"):
        history = remember(history, {"specHash": spec, "result": "Succeeded"}, limit=2)
    assert [h["specHash"] for h in history] == ["c", "b"]
    assert remember(history, {"specHash": "c", "result": "RolledBack"}, 2)[0]["result"] == (
        "RolledBack"
    )
