from __future__ import annotations

from typing import Any

import pytest

from modelsync.api import constants as c
from modelsync.serving.rollout import (
    Action,
    Failure,
    decide,
    detect_failure,
    initializer_failure,
    remember,
)


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
    from modelsync.serving.canary import split

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
    from modelsync.serving.canary import parse_prometheus

    assert parse_prometheus(body) == value


def test_analysis_verdicts() -> None:
    from modelsync.serving.canary import Result, judge

    assert judge(0.01, 0.05, "LessThan", "q").result is Result.PASS
    assert judge(0.5, 0.05, "LessThan", "q").result is Result.FAIL
    assert judge(0.9, 0.5, "GreaterThan", "q").result is Result.PASS
    assert judge(None, 0.05, "LessThan", "q").result is Result.INCONCLUSIVE
    assert judge(float("nan"), 0.05, "LessThan", "q").result is Result.INCONCLUSIVE


def init_pod(
    spec_hash: str,
    *,
    restarts: int,
    message: str,
    exit_code: int = 1,
    current: bool = False,
) -> dict[str, Any]:
    """A pod whose storage initializer ended with `message`: just now (`current`, not
    restarted yet) or before its current wait (lastState)."""
    ended = {"exitCode": exit_code, "reason": "Error", "message": message}
    status: dict[str, Any] = {"name": "storage-initializer", "restartCount": restarts}
    if current:
        status["state"] = {"terminated": ended}
    else:
        status["state"] = {"waiting": {"reason": "CrashLoopBackOff"}}
        status["lastState"] = {"terminated": ended}
    return {
        "metadata": {"name": "new", "labels": {c.LABEL_SPEC_HASH: spec_hash}},
        "status": {"initContainerStatuses": [status], "containerStatuses": []},
    }


@pytest.mark.parametrize(
    "message",
    [
        "storage-initializer: s3://models/iris/1: RuntimeError: S3 authentication failed. "
        "Set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or use awsAnonymousCredential=true.",
        "storage-initializer: s3://nope/iris/1: RuntimeError: S3 resource 'nope' not found.",
        "storage-initializer: s3://models/gone: RuntimeError: Failed to fetch model. "
        "No model found in models/gone.",
        "storage-initializer: s3://m/i/1: RuntimeError: Invalid AWS credentials. "
        "Verify AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
        "storage-initializer: s3://m/i/1: RuntimeError: S3 bucket 'm' does not exist.",
        "An error occurred (InvalidAccessKeyId) when calling the ListObjectsV2 operation",
        "An error occurred (NoSuchBucket) when calling the ListObjectsV2 operation",
        "An error occurred (403) when calling the HeadObject operation: Forbidden",
    ],
)
def test_a_permanent_download_error_fails_the_rollout_at_its_first_exit(message: str) -> None:
    failure = detect_failure(
        None, [init_pod("bbb", restarts=0, message=message, current=True)], "bbb", 3
    )
    assert failure is not None
    assert failure.reason == c.REASON_MODEL_DOWNLOAD_FAILED
    assert " ".join(message.split()) in failure.message
    assert "storage-initializer" in failure.message
    assert "pod new" in failure.message


def test_a_transient_download_error_fails_only_after_max_restarts_exits() -> None:
    said = "storage-initializer: s3://m/i: EndpointConnectionError: Could not connect"
    # Two exits so far (restarted once, the second just ended): under the limit of 3.
    assert initializer_failure(init_pod("bbb", restarts=1, message=said, current=True), 3) is None
    assert initializer_failure(init_pod("bbb", restarts=2, message=said), 3) is None
    failure = initializer_failure(init_pod("bbb", restarts=2, message=said, current=True), 3)
    assert failure is not None
    assert "3 times" in failure.message
    assert said in failure.message
    assert initializer_failure(init_pod("bbb", restarts=3, message=said), 3) is not None


def test_initializer_exits_of_other_revisions_or_with_success_fail_nothing() -> None:
    said = "S3 resource 'nope' not found."
    assert detect_failure(None, [init_pod("aaa", restarts=5, message=said)], "bbb", 3) is None
    done = init_pod("bbb", restarts=0, message="", exit_code=0, current=True)
    assert detect_failure(None, [done], "bbb", 3) is None
    running = {"metadata": {"name": "p", "labels": {c.LABEL_SPEC_HASH: "bbb"}}, "status": {}}
    assert detect_failure(None, [running], "bbb", 3) is None


def test_a_failed_download_is_a_pod_event_worth_judging() -> None:
    """The operator judges a revision again when a pod's restart_count changes: the first
    non-zero exit of its initializer must change it, before any restart."""
    from modelsync.runtime.operator import restart_count

    said = "storage-initializer: s3://m/i: RuntimeError: S3 error [403]: Forbidden"
    waiting = init_pod("bbb", restarts=0, message=said)
    waiting["status"]["initContainerStatuses"][0].pop("lastState")
    ended = init_pod("bbb", restarts=0, message=said, current=True)
    restarted = init_pod("bbb", restarts=1, message=said)
    assert restart_count(waiting) < restart_count(ended) <= restart_count(restarted)
    done = init_pod("bbb", restarts=0, message="", exit_code=0, current=True)
    assert restart_count(done) == restart_count(waiting)
