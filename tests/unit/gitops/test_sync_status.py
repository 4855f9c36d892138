"""A ModelSync's next status after a sync (gitops/status.py), without a cluster: the
no-op resync rule, history, and which Event a sync sends."""

from __future__ import annotations

import datetime
from typing import Any

from modelsync.api import conditions
from modelsync.api import constants as c
from modelsync.api.manifest import items, text
from modelsync.gitops.load import RevisionError, Source
from modelsync.gitops.modelhealth import ModelsHealth
from modelsync.gitops.plan import ChangeSet
from modelsync.gitops.status import HISTORY_LIMIT, Outcome, record

REVISION = "main@sha1:" + "a" * 40
NEXT = "main@sha1:" + "b" * 40
T0 = datetime.datetime(2026, 12, 1, 8, 0, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=1)
INVENTORY = [{"apiVersion": c.API_VERSION, "kind": c.MODELDEPLOYMENT_KIND, "name": "iris"}]


def modelsync(status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"namespace": "team-a", "name": "prod", "generation": 1}, "status": status}


def ready(health: ModelsHealth | None = None) -> Any:
    return lambda inventory: health or ModelsHealth(total=len(inventory))


def applied(revision: str = REVISION, created: int = 1) -> Outcome:
    changes = ChangeSet(created=[f"ModelDeployment iris-{i}" for i in range(created)])
    return Outcome(
        revision=revision,
        applied=True,
        ready=True,
        reason=c.REASON_SUCCEEDED,
        message=f"applied revision {revision}: {changes.summary()}",
        changes=changes,
        inventory=INVENTORY,
    )


def test_a_sync_that_applied_records_history_and_a_synced_event() -> None:
    recorded = record(modelsync(), applied(), T0, T1, ready())
    assert recorded.event is not None
    assert (recorded.event.reason, recorded.event.warning) == (c.EVENT_SYNCED, False)
    assert recorded.status["lastAppliedRevision"] == REVISION
    assert recorded.status["inventory"] == INVENTORY
    assert [text(entry, "revision") for entry in items(recorded.status, "history")] == [REVISION]
    assert items(recorded.status, "history")[0]["created"] == 1
    assert conditions.is_true(recorded.status["conditions"], c.READY)
    assert conditions.is_true(recorded.status["conditions"], c.HEALTHY)


def test_a_no_op_resync_writes_nothing_and_sends_no_event() -> None:
    first = record(modelsync(), applied(), T0, T1, ready()).status
    again = record(modelsync(first), applied(created=0), T1, T1 + T1.resolution, ready())
    assert again.event is None
    assert again.status == first


def test_a_new_revision_is_news_even_with_nothing_written() -> None:
    first = record(modelsync(), applied(), T0, T1, ready()).status
    recorded = record(modelsync(first), applied(NEXT, created=0), T1, T1, ready())
    assert recorded.event is not None
    assert [text(entry, "revision") for entry in items(recorded.status, "history")] == [
        NEXT,
        REVISION,
    ]


def test_history_keeps_the_last_syncs_only() -> None:
    status: dict[str, Any] | None = None
    for number in range(HISTORY_LIMIT + 3):
        revision = f"main@sha1:{number:040d}"
        status = record(modelsync(status), applied(revision), T0, T1, ready()).status
    assert status is not None
    assert len(status["history"]) == HISTORY_LIMIT
    assert status["history"][0]["revision"] == f"main@sha1:{HISTORY_LIMIT + 2:040d}"


def test_a_rejected_revision_is_a_warning_and_keeps_the_last_applied_one() -> None:
    first = record(modelsync(), applied(), T0, T1, ready()).status
    error = RevisionError(Source("models/iris.yaml", 3), "spec.replicas: must be >= 0", "iris")
    rejected = Outcome(
        revision=NEXT,
        reason=c.REASON_VALIDATION_FAILED,
        message="rejected",
        stalled=True,
        errors=[error],
    )
    recorded = record(modelsync(first), rejected, T1, T1, ready())
    assert recorded.event is not None
    assert (recorded.event.reason, recorded.event.warning) == (c.EVENT_SYNC_FAILED, True)
    assert recorded.status["lastAppliedRevision"] == REVISION
    assert recorded.status["lastAttemptedRevision"] == NEXT
    assert recorded.status["errors"] == [str(error)]
    assert conditions.is_true(recorded.status["conditions"], c.STALLED)


def test_models_still_coming_up_are_progress_not_a_failure() -> None:
    waiting = applied()
    waiting.ready, waiting.reason = False, c.REASON_MODELS_NOT_READY
    health = ModelsHealth(total=1, not_ready=[("team-a/iris", "rolling out")])
    recorded = record(modelsync(), waiting, T0, T1, ready(health))
    assert recorded.event is not None
    assert (recorded.event.reason, recorded.event.warning) == (c.EVENT_MODELS_NOT_READY, False)
    assert recorded.status["modelsNotReady"] == ["team-a/iris: rolling out"]


def test_health_is_not_asked_before_anything_was_applied() -> None:
    def no_health(inventory: list[dict[str, str]]) -> ModelsHealth:
        raise AssertionError("asked for the models' health with nothing applied")

    failed = Outcome(reason=c.REASON_FETCH_FAILED, message="git host unreachable")
    recorded = record(modelsync(), failed, T0, T1, no_health)
    assert not conditions.is_true(recorded.status["conditions"], c.READY)
