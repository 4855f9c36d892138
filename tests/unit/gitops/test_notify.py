"""Notifications, the pure parts: which outcome is told once, the receivers' requests,
the allow-list, the retry rule."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelsync.api import constants as c
from modelsync.api.modelsync import Receiver, parse_receivers
from modelsync.gitops import notices, notify, webhooks
from modelsync.gitops.notices import State
from modelsync.telemetry import metrics

REV = "main@sha1:" + "a" * 40
REV2 = "main@sha1:" + "b" * 40


def ready(status: str, reason: str, message: str = "m") -> dict[str, Any]:
    return {"type": c.READY, "status": status, "reason": reason, "message": message}


def sync_status(*conds: dict[str, Any], applied: str = "", attempted: str = REV) -> dict[str, Any]:
    return {
        "lastAttemptedRevision": attempted,
        "lastAppliedRevision": applied,
        "conditions": list(conds),
    }


def test_notify_sync_state_rejected_write_back_failed_ok_and_in_between() -> None:
    rejected = notices.sync_state(
        sync_status(ready("False", c.REASON_VALIDATION_FAILED, "models/a.yaml:3: bad"))
    )
    assert rejected == State(
        c.NOTICE_REVISION_REJECTED, REV, c.REASON_VALIDATION_FAILED, "models/a.yaml:3: bad"
    )
    write_back = {"type": c.WRITE_BACK, "status": "False", "reason": c.REASON_WRITE_BACK_FAILED}
    failed = notices.sync_state(
        sync_status(ready("False", c.REASON_ROLLED_BACK), write_back, applied=REV)
    )
    assert failed is not None
    assert failed.kind == c.NOTICE_WRITE_BACK_FAILED
    ok = notices.sync_state(sync_status(ready("True", c.REASON_SUCCEEDED), applied=REV))
    assert ok is not None
    assert ok.kind == notices.OK
    # Fetch failures, models coming up, a rollback (the model's news): nothing to say.
    assert notices.sync_state(sync_status(ready("False", c.REASON_FETCH_FAILED))) is None
    waiting = sync_status(ready("False", c.REASON_MODELS_NOT_READY), applied=REV)
    assert notices.sync_state(waiting) is None
    assert notices.sync_state({}) is None


def test_notify_model_state_rolled_back_analysis_failed_rollout_failed_ready() -> None:
    def rolled(reason: str) -> dict[str, Any]:
        return {
            "failedGitRevision": REV,
            "conditions": [
                {"type": c.ROLLED_BACK, "status": "True", "reason": reason, "message": "x"}
            ],
        }

    crash = notices.model_state(rolled(c.REASON_CRASH_LOOP))
    assert crash == State(c.NOTICE_ROLLED_BACK, REV, c.REASON_CRASH_LOOP, "x")
    analysis = notices.model_state(rolled(c.REASON_ANALYSIS_FAILED))
    assert analysis is not None
    assert analysis.kind == c.NOTICE_ANALYSIS_FAILED
    failed = notices.model_state(
        {"history": [{"result": c.HISTORY_FAILED, "revision": REV, "message": "deadline"}]}
    )
    assert failed == State(c.NOTICE_ROLLOUT_FAILED, REV, c.REASON_FAILED, "deadline")
    up = notices.model_state({"currentRevision": REV2, "conditions": [ready("True", "Available")]})
    assert up is not None
    assert up.kind == notices.OK
    assert up.revision == REV2
    assert notices.model_state({"conditions": [ready("False", "RollingOut")]}) is None


def test_notify_follow_tells_each_failure_once_and_recovered_after_it() -> None:
    ok = State(notices.OK, REV)
    bad = State(c.NOTICE_ROLLED_BACK, REV2, c.REASON_CRASH_LOOP, "crash")
    said, told = notices.follow(ok, bad)
    assert told == bad
    assert said == bad
    assert notices.follow(bad, bad) == (bad, None)  # the same failure again: once
    assert notices.follow(bad, None) == (bad, None)  # in between: what was said stays
    later = State(notices.OK, "main@sha1:" + "c" * 40, message="Ready")
    said, told = notices.follow(bad, later)
    assert said == later
    assert told == State(c.NOTICE_RECOVERED, later.revision, c.NOTICE_ROLLED_BACK, "Ready")
    assert notices.follow(later, later) == (later, None)
    assert notices.follow(None, ok) == (ok, None)  # first OK: nothing recovered
    worse = State(c.NOTICE_ROLLED_BACK, "main@sha1:" + "d" * 40)
    assert notices.follow(bad, worse) == (worse, worse)  # a second failure is news


def notice(kind: str = c.NOTICE_ROLLED_BACK) -> notices.Notice:
    state = State(kind, REV, c.REASON_CRASH_LOOP, "version 2  failed:\n crash")
    return notices.notice("id-1", state, "team", "prod", "iris", "2026-12-01T00:00:00Z")


def test_notify_webhook_request_is_json_signed_as_our_generic_receiver_checks() -> None:
    headers, body = notices.webhook_request(notice(), b"key")
    assert webhooks.authentic("generic", headers, body, b"key")
    assert not webhooks.authentic("generic", headers, body, b"other")
    assert headers["X-Modelsync-Delivery"] == "id-1"
    data = json.loads(body)
    assert data["id"] == "id-1"
    assert data["kind"] == c.NOTICE_ROLLED_BACK
    assert data["model"] == "iris"
    assert data["revision"] == REV
    assert data["message"] == "version 2 failed: crash"
    assert data["severity"] == "error"


def test_notify_slack_request_is_one_line_of_text() -> None:
    headers, body = notices.slack_request(notice(c.NOTICE_RECOVERED))
    text = json.loads(body)["text"]
    assert set(json.loads(body)) == {"text"}
    assert "Recovered" in text
    assert "model iris" in text
    assert "team/prod" in text
    assert REV in text
    assert headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    "address",
    [
        "http://127.0.0.2:80/hook",
        "https://127.0.0.1:9000/hook",
        "http://user:pw@127.0.0.1:9000/hook",
        "http://127.0.0.1:9000/hook?x=1",
        "ftp://127.0.0.1:9000/hook",
        "not a url",
    ],
)
def test_notify_receiver_address_outside_the_allow_list_is_refused(address: str) -> None:
    with pytest.raises(notices.RefusedError) as refused:
        notices.check_address(address, ("http://127.0.0.1:9000",))
    assert "pw" not in str(refused.value)
    assert "hook" not in str(refused.value)


def test_notify_receiver_address_in_the_allow_list() -> None:
    allowed = (notices.parse_endpoint("http://127.0.0.1:9000"),)
    assert notices.check_address("http://127.0.0.1:9000/T0/B0/secret", allowed)
    with pytest.raises(ValueError, match="notification endpoint"):
        notices.parse_endpoint("http://127.0.0.1:9000/path")


def test_notify_retry_rule() -> None:
    assert notices.retry_after(1, 200) is None
    assert notices.retry_after(1, 503) == notices.RETRY_SECONDS[0]
    assert notices.retry_after(2, None) == notices.RETRY_SECONDS[1]
    assert notices.retry_after(notices.ATTEMPTS, 503) is None
    assert notices.retry_after(1, 401) is None
    assert notices.retry_after(1, 429) is not None


def test_notify_receivers_parsed_from_spec_notify() -> None:
    parsed = parse_receivers(
        {
            "receivers": [
                {"type": "webhook", "secretRef": {"name": "hook"}},
                {"type": "slack", "secretRef": {"name": "s"}, "events": ["RolledBack"]},
            ]
        }
    )
    assert parsed == (Receiver("webhook", "hook"), Receiver("slack", "s", ("RolledBack",)))
    assert notices.wanted((), c.NOTICE_RECOVERED)
    assert not notices.wanted(("RolledBack",), c.NOTICE_RECOVERED)


A, B, C = ("team", "a"), ("team", "b"), ("team", "c")


def test_notify_queue_drops_past_its_bound_and_takes_again_once_sent() -> None:
    assert notices.admit(0, 2) == notices.QUEUED
    assert notices.admit(2, 2) == notices.DROPPED
    outbox: notices.Outbox[str] = notices.Outbox(max_queued=2)
    assert outbox.offer(A, "a1") == notices.QUEUED
    assert outbox.offer(B, "b1") == notices.QUEUED
    # Full (all ModelSyncs together): the newcomer is dropped, what waits keeps its place.
    assert outbox.offer(A, "a2") == notices.DROPPED
    assert outbox.offer(C, "c1") == notices.DROPPED
    assert outbox.queued == 2
    assert outbox.take(0) == (A, "a1")
    assert outbox.offer(A, "a3") == notices.QUEUED
    assert outbox.take(0) == (B, "b1")
    assert outbox.take(0) is None  # a3 waits for a1: one item of a ModelSync at a time
    outbox.done(A)
    assert outbox.take(0) == (A, "a3")
    outbox.done(A)
    outbox.done(B)
    assert outbox.queued == 0
    assert outbox.take(0) is None


def test_notify_queue_keeps_order_and_an_older_notice_of_the_same_kind() -> None:
    first = notice(c.NOTICE_ROLLED_BACK)
    recovered = notice(c.NOTICE_RECOVERED)
    again = State(c.NOTICE_ROLLED_BACK, REV2, c.REASON_CRASH_LOOP, "crash again")
    second = notices.notice("id-2", again, "team", "prod", "iris", "2026-12-01T00:01:00Z")
    outbox: notices.Outbox[notices.Notice] = notices.Outbox(max_queued=10)
    for item in (first, recovered, second):
        outbox.offer(("team", "prod"), item)
    # The older RolledBack still waits and goes first: the newer one is other news.
    taken = []
    while (picked := outbox.take(0)) is not None:
        taken.append(picked[1])
        outbox.done(picked[0])
    assert taken == [first, recovered, second]


def test_notify_queue_shares_threads_by_namespace_and_a_retry_keeps_its_turn() -> None:
    """The next free thread goes to the namespace with the fewest at work; alone, a
    namespace takes them all (work-conserving)."""
    outbox: notices.Outbox[str] = notices.Outbox(max_queued=100)
    for name in ("a", "b", "c", "d"):
        for n in (1, 2):
            outbox.offer(("noisy", name), f"{name}{n}")
    taken = [outbox.take(0) for _ in range(3)]
    assert [item for _, item in filter(None, taken)] == ["a1", "b1", "c1"]  # three threads
    outbox.offer(("quiet", "q"), "q1")
    outbox.done(("noisy", "a"))  # a thread comes free: the waiting namespace's turn
    assert outbox.take(0) == (("quiet", "q"), "q1")
    assert outbox.take(0) == (("noisy", "a"), "a2")  # then the noisy one's, oldest first
    # A retry frees its thread and keeps its place before the ModelSync's next item.
    outbox.later(("noisy", "b"), "b1 again", due=10.0)
    assert outbox.next_due() == 10.0
    assert outbox.take(5.0) == (("noisy", "d"), "d1")
    assert outbox.take(5.0) is None  # b waits for its retry; a, c and d are at work
    assert outbox.take(10.0) == (("noisy", "b"), "b1 again")
    assert outbox.next_due() is None


def test_notify_a_full_queue_drops_and_counts_by_receiver_type() -> None:
    calls: list[object] = []
    notifier = notify.Notifier(
        lambda *args: calls.append(args),
        lambda *args: calls.append(args),
        max_queued=0,
    )
    ms = {
        "metadata": {"namespace": "team", "name": "prod"},
        "spec": {
            "notify": {
                "receivers": [
                    {"type": "webhook", "secretRef": {"name": "hook"}},
                    {"type": "slack", "secretRef": {"name": "s"}},
                ]
            }
        },
    }

    def dropped(type_: str) -> float:
        value = metrics.REGISTRY.get_sample_value(
            "modelsync_notifications_total", {"type": type_, "result": "dropped"}
        )
        return value or 0.0

    before = dropped("webhook"), dropped("slack")
    try:
        notifier.observe_sync(
            ms,
            sync_status(ready("True", c.REASON_SUCCEEDED), applied=REV),
            sync_status(ready("False", c.REASON_VALIDATION_FAILED), applied=REV, attempted=REV2),
        )
    finally:
        notifier.shutdown()
    assert (dropped("webhook"), dropped("slack")) == (before[0] + 1, before[1] + 1)
    assert calls == []  # dropped before any Secret is read or Event posted


def test_notify_a_model_in_a_target_namespace_is_named_with_its_own_namespace() -> None:
    """`namespace` stays the ModelSync's; `modelNamespace` is where the model serves (its
    ModelDeployment's, spec.targetNamespace), "" for the ModelSync's own outcomes."""
    state = State(c.NOTICE_ROLLED_BACK, REV, c.REASON_CRASH_LOOP, "crash")
    elsewhere = notices.notice("id-1", state, "team", "prod", "iris", "t", "serving")
    data = json.loads(notices.webhook_request(elsewhere, b"key")[1])
    assert (data["namespace"], data["modelsync"]) == ("team", "prod")
    assert (data["modelNamespace"], data["model"]) == ("serving", "iris")
    assert "model_namespace" not in data
    assert (
        "model serving/iris of ModelSync team/prod" in notices.slack_request(elsewhere)[1].decode()
    )

    here = notices.notice("id-2", state, "team", "prod", "iris", "t", "team")
    assert json.loads(notices.webhook_request(here, b"key")[1])["modelNamespace"] == "team"
    assert "model iris of ModelSync team/prod" in notices.slack_request(here)[1].decode()

    rejected = State(c.NOTICE_REVISION_REJECTED, REV, c.REASON_VALIDATION_FAILED, "bad")
    own = notices.notice("id-3", rejected, "team", "prod", "", "t", "team")
    assert json.loads(notices.webhook_request(own, b"key")[1])["modelNamespace"] == ""
