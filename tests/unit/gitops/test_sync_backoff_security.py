"""A revision refused for its content is not judged whole again at every interval: a
tenant's broken revision (a render that takes its whole timeout, a file over the
budget) would keep a worker busy for every tenant. The ref is still resolved each
interval, so a new commit, a new spec or a requested sync is judged at once. The
fakes stand in only for git and the API server around the reconciler's steps."""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterator
from typing import Any

from modelsync.api import constants as c
from modelsync.api.conditions import find
from modelsync.gitops.fetch import Credentials, Ref, Revision, RevisionTooLargeError
from modelsync.gitops.load import RevisionError, Source
from modelsync.gitops.reconciler import RETRIED_REASONS, SyncReconciler
from modelsync.gitops.status import Outcome, after_sync
from modelsync.runtime.settings import OperatorSettings

T0 = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
INTERVAL = datetime.timedelta(minutes=10)


def modelsync(generation: int = 1, requested: str = "") -> dict[str, Any]:
    annotations = {c.ANNOTATION_RECONCILE_REQUESTED: requested} if requested else {}
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.MODELSYNC_KIND,
        "metadata": {
            "namespace": "team",
            "name": "prod",
            "generation": generation,
            "annotations": annotations,
        },
        "spec": {"repo": {"url": "https://git.example.com/m.git"}, "interval": "10m"},
    }


class Cache:
    def __init__(self) -> None:
        self.ms = modelsync()

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return self.ms

    def put(self, kind: str, obj: dict[str, Any]) -> None:
        self.ms = obj


class Kube:
    def __init__(self) -> None:
        self.status_writes = 0

    def patch_status(self, *args: Any) -> dict[str, Any]:
        self.status_writes += 1
        return {**modelsync(), "status": args[4]}

    def event(self, *args: Any, **kwargs: Any) -> None:
        pass


class Git:
    """A repository whose revision is always over the byte budget (refused as content,
    Stalled), counting the checkouts that a full judgement starts with."""

    def __init__(self) -> None:
        self.sha = "b" * 40
        self.resolved = 0
        self.checkouts = 0

    def resolve(self, url: str, ref: Ref, credentials: Credentials | None = None) -> Revision:
        self.resolved += 1
        return Revision(f"main@sha1:{self.sha}", self.sha, "refs/heads/main")

    @contextlib.contextmanager
    def leased(
        self, url: str, revision: Revision, credentials: Credentials | None = None
    ) -> Iterator[None]:
        self.checkouts += 1
        raise RevisionTooLargeError("its files hold 200 MiB; the limit is 100 MiB")
        yield  # pragma: no cover


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime.datetime:
        return self.now


def reconciler() -> tuple[SyncReconciler, Git, Kube, Cache, Clock]:
    git, kube, cache, clock = Git(), Kube(), Cache(), Clock()
    settings = OperatorSettings(apply_as_operator=True).sync_settings()
    syncer = SyncReconciler(kube, git, cache, clock=clock, settings=settings)  # type: ignore[arg-type]
    return syncer, git, kube, cache, clock


def test_security_a_refused_revision_is_judged_again_only_as_it_backs_off() -> None:
    syncer, git, kube, cache, clock = reconciler()
    judged = []
    for minutes in range(0, 70, 10):  # every interval for an hour
        clock.now = T0 + datetime.timedelta(minutes=minutes)
        assert syncer.reconcile("team", "prod") == INTERVAL.total_seconds()
        judged.append(git.checkouts)
    # Judged at 0, then after 2 intervals (20 min), then 4 more (60 min); each interval
    # still resolved the ref.
    assert judged == [1, 1, 2, 2, 2, 2, 3]
    assert git.resolved == 7
    ready = find(cache.ms["status"]["conditions"], c.READY)
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", c.REASON_REVISION_TOO_LARGE)
    writes = kube.status_writes
    clock.now += INTERVAL
    syncer.reconcile("team", "prod")
    assert kube.status_writes == writes  # a repeated refusal writes nothing


def test_security_a_new_commit_spec_or_requested_sync_is_judged_at_once() -> None:
    syncer, git, _, cache, clock = reconciler()
    syncer.reconcile("team", "prod")
    clock.now += INTERVAL
    git.sha = "c" * 40  # a new commit
    syncer.reconcile("team", "prod")
    assert git.checkouts == 2
    clock.now += INTERVAL
    cache.ms = {**modelsync(generation=2), "status": cache.ms.get("status", {})}
    syncer.reconcile("team", "prod")
    assert git.checkouts == 3
    clock.now += INTERVAL
    cache.ms = {**modelsync(generation=2, requested="now"), "status": cache.ms["status"]}
    syncer.reconcile("team", "prod")
    assert git.checkouts == 4
    # Forgotten with the ModelSync: a new one of the same name is judged at once.
    syncer.forget("team", "prod")
    clock.now += INTERVAL
    syncer.reconcile("team", "prod")
    assert git.checkouts == 5


def test_a_refusal_the_environment_may_mend_is_retried_soon_not_backed_off() -> None:
    """Forbidden (the applying account lacks a verb; a RoleBinding may grant it) is
    retried with the short back-off of environment errors, as before."""
    refused = Outcome(revision="main@sha1:" + "b" * 40, reason=c.REASON_FORBIDDEN)
    refused.errors = [RevisionError(Source("budget.yaml", 1), "is forbidden")]
    args = ("1/", T0, 600.0, RETRIED_REASONS)
    assert after_sync(None, refused, *args) is None
    refused.reason = c.REASON_VALIDATION_FAILED
    remembered = after_sync(None, refused, *args)
    assert remembered is not None
    assert remembered.due == T0 + 2 * INTERVAL
