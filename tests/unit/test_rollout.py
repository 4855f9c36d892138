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


def test_canary_split_keeps_both_tracks_until_the_end() -> None:
    from modelsync.canary import split

    assert split(4, 25) == (1, 3)
    assert split(4, 50) == (2, 2)
    assert split(1, 10) == (1, 1)  # one canary pod, and the stable one stays
    assert split(3, 100) == (3, 0)


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (
            {
                "status": "success",
                "data": {"resultType": "vector", "result": [{"value": [1, "0.25"]}]},
            },
            0.25,
        ),
        ({"status": "success", "data": {"resultType": "scalar", "result": [1, "3"]}}, 3.0),
        ({"status": "success", "data": {"resultType": "vector", "result": []}}, None),
        ({"status": "error"}, None),
    ],
)
def test_prometheus_answers_are_read(body: dict[str, Any], value: float | None) -> None:
    from modelsync.canary import parse_prometheus

    assert parse_prometheus(body) == value


def test_analysis_verdicts() -> None:
    from modelsync.canary import Result, judge

    assert judge(0.01, 0.05, "LessThan", "q").result is Result.PASS
    assert judge(0.5, 0.05, "LessThan", "q").result is Result.FAIL
    assert judge(0.9, 0.5, "GreaterThan", "q").result is Result.PASS
    assert judge(None, 0.05, "LessThan", "q").result is Result.INCONCLUSIVE
    assert judge(float("nan"), 0.05, "LessThan", "q").result is Result.INCONCLUSIVE
