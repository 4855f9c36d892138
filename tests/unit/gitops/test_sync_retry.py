"""A sync the environment breaks off, or a fault of ours, is recorded in status and
tried again after 1 s doubling to 5 min (jittered); never a hot loop, never a stale
Ready=True. The fakes below stand in only for the order of the reconciler's steps."""

from __future__ import annotations

import contextlib
import datetime
import threading
from collections.abc import Mapping
from typing import Any

import kubernetes
import pytest

from modelsync.api import constants as c
from modelsync.api.conditions import find
from modelsync.gitops.disk import DiskFullError
from modelsync.gitops.load import SnapshotChangedError
from modelsync.gitops.reconciler import RETRY_MAX_SECONDS, SyncReconciler, retry_delay
from modelsync.gitops.status import Outcome
from modelsync.runtime.settings import OperatorSettings

NOW = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
MS = {
    "apiVersion": c.API_VERSION,
    "kind": c.MODELSYNC_KIND,
    "metadata": {"namespace": "team", "name": "prod", "generation": 1},
    "spec": {"repo": {"url": "https://git.example.com/m.git"}, "interval": "10m"},
    "status": {
        "lastAppliedRevision": "main@sha1:" + "a" * 40,
        "conditions": [
            {
                "type": c.READY,
                "status": "True",
                "reason": c.REASON_SUCCEEDED,
                "message": "applied revision main@sha1:" + "a" * 40,
                "observedGeneration": 1,
                "lastTransitionTime": "2026-12-01T00:00:00Z",
            }
        ],
    },
}


class Cache:
    def __init__(self) -> None:
        self.ms: dict[str, Any] = dict(MS)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return self.ms

    def put(self, kind: str, obj: dict[str, Any]) -> None:
        self.ms = obj


class Kube:
    def __init__(self) -> None:
        self.events: list[str] = []

    def patch_status(self, *args: Any) -> dict[str, Any]:
        status = args[4]
        return {**MS, "status": status}

    def event(self, obj: Any, kind: str, reason: str, message: str, **_: Any) -> None:
        self.events.append(reason)


class Broken(SyncReconciler):
    def __init__(self, errors: list[Exception | None]) -> None:
        settings = OperatorSettings().sync_settings()
        super().__init__(Kube(), None, Cache(), clock=lambda: NOW, settings=settings)  # type: ignore[arg-type]
        self.errors = errors
        self.jitter = lambda: 0.0

    def _sync(self, ms: dict[str, Any], held: contextlib.ExitStack[bool | None]) -> Outcome:
        error = self.errors.pop(0)
        if error is not None:
            raise error
        return Outcome(ready=True, applied=False, reason=c.REASON_SUCCEEDED, message="ok")


def ready(reconciler: SyncReconciler) -> Mapping[str, Any]:
    condition = find(reconciler.cache.ms["status"]["conditions"], c.READY)
    assert condition is not None
    return condition


def test_retry_delays_double_from_one_second_to_five_minutes_with_jitter() -> None:
    assert [retry_delay(n, 3600, 0.0) for n in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert retry_delay(20, 3600, 0.0) == RETRY_MAX_SECONDS
    assert retry_delay(20, 60, 0.0) == 60  # never past the interval
    assert retry_delay(3, 3600, 0.2) == pytest.approx(9.6)
    assert retry_delay(3, 3600, -0.2) == pytest.approx(6.4)


def test_an_unexpected_exception_is_recorded_as_internal_error_and_backs_off() -> None:
    reconciler = Broken([RuntimeError("boom"), RuntimeError("boom"), RuntimeError("boom"), None])
    delays = [reconciler.reconcile("team", "prod") for _ in range(3)]
    assert delays == [1.0, 2.0, 4.0]
    condition = ready(reconciler)
    assert (condition["status"], condition["reason"]) == ("False", c.REASON_INTERNAL_ERROR)
    assert condition["message"] == "retrying in 4s: RuntimeError: boom"
    # Recovered: the interval again, and the next failure starts from 1 s.
    assert reconciler.reconcile("team", "prod") == 600
    reconciler.errors = [RuntimeError("again")]
    assert reconciler.reconcile("team", "prod") == 1.0


def test_an_api_server_that_is_away_is_retried_with_its_reason() -> None:
    away = kubernetes.client.ApiException(status=503, reason="Service Unavailable")
    away.body = '{"message": "the server is currently unable to handle the request"}'
    reconciler = Broken([away])
    assert reconciler.reconcile("team", "prod") == 1.0
    condition = ready(reconciler)
    assert (condition["status"], condition["reason"]) == ("False", c.REASON_RETRYING)
    assert condition["message"] == (
        "retrying in 1s: the server is currently unable to handle the request"
    )


@pytest.mark.parametrize(
    "error",
    [
        SnapshotChangedError("models/beta: No such file or directory while reading"),
        DiskFullError("the operator's git cache has no room for a fetch"),
    ],
    ids=["snapshot-changed", "cache-full"],
)
def test_security_a_snapshot_changed_or_a_full_cache_is_retried_never_judged(
    error: Exception,
) -> None:
    """Neither says anything of the revision: no verdict on it (Stalled, errors) and no
    traceback in the log as for a fault of ours; retried after 1 s like the API server's."""
    reconciler = Broken([error])
    assert reconciler.reconcile("team", "prod") == 1.0
    condition = ready(reconciler)
    assert (condition["status"], condition["reason"]) == ("False", c.REASON_RETRYING)
    assert str(error) in condition["message"]


def test_a_content_answer_escaping_the_steps_is_an_internal_error() -> None:
    invalid = kubernetes.client.ApiException(status=422, reason="Invalid")
    invalid.body = '{"message": "ConfigMap \\"x\\" is invalid"}'
    reconciler = Broken([invalid])
    assert reconciler.reconcile("team", "prod") == 1.0
    assert ready(reconciler)["reason"] == c.REASON_INTERNAL_ERROR


class Slow(Broken):
    """A sync that runs until the test lets it finish."""

    def __init__(self) -> None:
        super().__init__([None])
        self.started, self.finish = threading.Event(), threading.Event()

    def _sync(self, ms: dict[str, Any], held: contextlib.ExitStack[bool | None]) -> Outcome:
        self.started.set()
        assert self.finish.wait(30)
        return super()._sync(ms, held)


def test_a_health_refresh_during_a_sync_of_its_modelsync_does_not_wait_for_it() -> None:
    # Waiting would hold one of the operator's few workers for as long as a sync of
    # 10,000 models takes; the worker asks again later instead.
    reconciler = Slow()
    sync = threading.Thread(target=reconciler.reconcile, args=("team", "prod"))
    sync.start()
    try:
        assert reconciler.started.wait(30)
        assert reconciler.refresh_health("team", "prod") is False
        assert reconciler.refresh_health("team", "other") is True  # another ModelSync's
    finally:
        reconciler.finish.set()
        sync.join(30)
    assert reconciler.refresh_health("team", "prod") is True
