"""A ModelSync's next status after one sync attempt — pure.

The reconciler (reconciler.py) runs the steps and sums them up in an `Outcome`;
`record` turns the previous status and that outcome into the status to write and
the Event to send: a no-op resync (the same revision, nothing written, still Ready)
keeps the last message, so it writes no status, no history and no Event.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from modelsync.api import conditions
from modelsync.api import constants as c
from modelsync.api.conditions import Observed
from modelsync.api.manifest import JsonValue, Manifest, get, integer, items, labels, mapping, text
from modelsync.gitops import modelhealth
from modelsync.gitops.load import RevisionError
from modelsync.gitops.plan import ChangeSet

HISTORY_LIMIT = 10
MAX_ERRORS_KEPT = 200  # status.errors (the CRD's maxItems)
# A condition's message, at most: `kubectl get`'s MESSAGE column stays one line. The
# detail is in status.errors, status.modelsNotReady, the models' own status, history.
MAX_HEADLINE = 120


@dataclass
class Outcome:
    """What one sync attempt came to; `record` turns it into status and an event."""

    revision: str | None = None  # the revision's name (`main@sha1:…`), once resolved
    applied: bool = False  # the revision was applied (even if something else is wrong)
    ready: bool = False
    reason: str = c.REASON_PROGRESSING
    message: str = ""
    stalled: bool = False
    changes: ChangeSet = field(default_factory=ChangeSet)
    inventory: list[dict[str, str]] | None = None  # None: keep the previous one
    write_backs: list[str] | None = None
    write_back_error: str = ""
    errors: list[RevisionError] = field(default_factory=list)
    retry_in: float | None = None  # set when the environment broke the sync off
    # The last outcome of a refused revision, given again without judging it: nothing
    # to record (see ContentFailure).
    repeated: bool = False
    # The conditions' message, short for `kubectl get` (default: `message`, cut); the
    # whole `message` goes to the history entry, the Event and the log.
    headline: str = ""
    prune_errors: list[str] = field(default_factory=list)  # "<object>: <the API's words>"


# A revision refused for its content is judged whole again after twice the interval,
# then four times, ... up to an hour (or the interval, when that is longer), unless git,
# the ModelSync or a requested sync changes; each interval still resolves the ref, so a
# new commit is judged at once. A tenant's broken revision cannot keep a worker busy
# re-rendering it every few seconds.
CONTENT_BACKOFF_MAX_SECONDS = 3600.0


@dataclass(frozen=True)
class ContentFailure:
    """A revision the content check refused, what else would make it worth judging
    again (`trigger`: the ModelSync's generation and requested sync), and when."""

    revision: str
    trigger: str
    failures: int
    due: datetime.datetime
    outcome: Outcome


def sync_trigger(ms: Manifest) -> str:
    """What, besides git, asks for a revision to be judged again: a new spec
    (generation) or a requested sync (`modelsync sync`, the annotation)."""
    requested = labels(ms, "metadata", "annotations").get(c.ANNOTATION_RECONCILE_REQUESTED, "")
    return f"{integer(ms, 'metadata', 'generation')}/{requested}"


def content_refused(outcome: Outcome, retried: frozenset[str]) -> bool:
    """The revision itself was refused (its files, its objects, what they would take
    over): the same revision is refused the same way until something changes. Not a
    reason in `retried`, which the environment may mend (an account's rights granted:
    Forbidden) and which is tried again soon."""
    return (
        outcome.revision is not None
        and not outcome.applied
        and not outcome.ready
        and outcome.retry_in is None
        and outcome.reason not in retried
        and (outcome.stalled or bool(outcome.errors))
    )


def after_sync(
    previous: ContentFailure | None,
    outcome: Outcome,
    trigger: str,
    now: datetime.datetime,
    interval: float,
    retried: frozenset[str],
) -> ContentFailure | None:
    """What is remembered of a sync's outcome for the back-off: None unless the content
    was refused (`content_refused`); a refusal of the same revision and trigger doubles
    the wait."""
    if outcome.repeated:
        return previous
    if not content_refused(outcome, retried) or outcome.revision is None:
        return None
    same = (
        previous is not None
        and previous.revision == outcome.revision
        and previous.trigger == trigger
    )
    failures = previous.failures + 1 if same and previous is not None else 1
    wait = min(interval * 2.0 ** min(failures, 16), max(interval, CONTENT_BACKOFF_MAX_SECONDS))
    due = now + datetime.timedelta(seconds=wait)
    return ContentFailure(outcome.revision, trigger, failures, due, outcome)


def judge_again(
    previous: ContentFailure | None, revision: str, trigger: str, now: datetime.datetime
) -> bool:
    """Whether `revision` is to be judged whole (rendered, loaded, validated, planned),
    or its last refusal stands."""
    return (
        previous is None
        or previous.revision != revision
        or previous.trigger != trigger
        or now >= previous.due
    )


@dataclass(frozen=True)
class Event:
    """The Event (and log line) a sync with news sends."""

    reason: str
    message: str
    warning: bool


@dataclass(frozen=True)
class Recorded:
    status: Manifest
    event: Event | None  # None: no news (a no-op resync)


def cut(message: str) -> str:
    return message if len(message) <= MAX_HEADLINE else message[: MAX_HEADLINE - 1] + "…"


def healthy_condition(health: modelhealth.ModelsHealth) -> Observed:
    reason = c.REASON_MODELS_READY if health.healthy else c.REASON_MODELS_NOT_READY
    return Observed(c.HEALTHY, health.healthy, reason, health.message())


def set_models_not_ready(status: Manifest, health: modelhealth.ModelsHealth) -> None:
    if health.healthy:
        status["modelsNotReady"] = None
    else:
        status["modelsNotReady"] = list(health.details()[:MAX_ERRORS_KEPT])


def record(
    ms: Mapping[str, object],
    outcome: Outcome,
    started: datetime.datetime,
    now: datetime.datetime,
    health: Callable[[list[dict[str, str]]], modelhealth.ModelsHealth],
) -> Recorded:
    """The status to write after `outcome`, and the Event to send. `health` tells how
    the models of an inventory are (asked only once a revision has been applied). A
    field set to None is removed by the status patch."""
    previous = mapping(ms, "status")
    previous_ready = conditions.find(previous.get("conditions"), c.READY) or {}
    generation = integer(ms, "metadata", "generation")
    status = _fields(
        previous,
        text(ms, "metadata", "annotations", c.ANNOTATION_RECONCILE_REQUESTED),
        outcome,
        generation,
    )
    message, headline = outcome.message, outcome.headline
    if (
        outcome.changes.writes == 0
        and outcome.ready
        and previous_ready.get("status") == "True"
        and previous_ready.get("reason") == outcome.reason
        and previous.get("lastAppliedRevision") == outcome.revision
    ):
        # The same revision again, nothing written: a no-op resync. Its message
        # ("0 created, ... N unchanged") is no news; the last one stays, so the
        # resync writes no status, no history and no Event.
        headline = str(previous_ready.get("message") or "")
        message = headline or message
    headline = cut(headline or message)
    observed = _observed(outcome, headline)
    if status.get("lastAppliedRevision"):
        # The models of the last applied revision, whatever became of this attempt.
        models = health([labels(entry) for entry in items(status, "inventory")])
        observed.append(healthy_condition(models))
        set_models_not_ready(status, models)
    # Reconciling and Stalled are present only while true (the Kubernetes and Flux
    # convention). Reconciling is not written at the start of a sync: that would
    # cost two status writes per sync, and a resync with nothing to do writes none.
    kept = conditions.without(status.get("conditions"), [c.RECONCILING, c.STALLED])
    status["conditions"] = [*conditions.merge(kept, observed, generation, now)]
    news = (
        outcome.changes.writes > 0
        or previous_ready.get("message") != headline
        or previous_ready.get("status") != ("True" if outcome.ready else "False")
    )
    if not news:
        return Recorded(status, None)
    entry = _history_entry(outcome, message, started, now)
    history = get(status, "history")
    status["history"] = [entry, *(history if isinstance(history, list) else [])][:HISTORY_LIMIT]
    return Recorded(status, _event(outcome, message))


def _fields(
    previous: Mapping[str, JsonValue], requested: str, outcome: Outcome, generation: int
) -> Manifest:
    """The previous status with what this attempt says of revisions, inventory,
    write-backs and errors (`requested`: the reconcile-request annotation, handled)."""
    status = dict(previous)
    revision = outcome.revision
    if revision:
        status["lastFetchedRevision"] = revision
        status["lastAttemptedRevision"] = revision
    if outcome.applied and revision:
        status["lastAppliedRevision"] = revision
    if outcome.inventory is not None:
        status["inventory"] = [dict(entry) for entry in outcome.inventory]
    status["observedGeneration"] = generation
    if requested:
        status["lastHandledReconcileAt"] = requested
    if outcome.write_backs is not None:
        status["writeBacks"] = list(outcome.write_backs)
    if outcome.errors:
        status["errors"] = [str(error)[:4096] for error in outcome.errors[:MAX_ERRORS_KEPT]]
    elif outcome.prune_errors:
        status["errors"] = [error[:4096] for error in outcome.prune_errors[:MAX_ERRORS_KEPT]]
    elif outcome.applied:
        status["errors"] = None
    return status


def _observed(outcome: Outcome, headline: str) -> list[Observed]:
    observed = [Observed(c.READY, outcome.ready, outcome.reason, headline)]
    if outcome.write_back_error:
        observed.append(
            Observed(c.WRITE_BACK, False, c.REASON_WRITE_BACK_FAILED, outcome.write_back_error)
        )
    elif outcome.write_backs:
        observed.append(
            Observed(
                c.WRITE_BACK, True, c.REASON_SUCCEEDED, "pushed " + ", ".join(outcome.write_backs)
            )
        )
    if outcome.stalled:
        observed.append(Observed(c.STALLED, True, outcome.reason, headline))
    return observed


def _history_entry(
    outcome: Outcome, message: str, started: datetime.datetime, now: datetime.datetime
) -> Manifest:
    return {
        "revision": outcome.revision or "",
        "started": conditions.timestamp(started),
        "finished": conditions.timestamp(now),
        "result": outcome.reason,
        "message": message[:1024],
        "created": len(outcome.changes.created),
        "configured": len(outcome.changes.configured),
        "unchanged": len(outcome.changes.unchanged),
        "deleted": len(outcome.changes.deleted),
    }


def _event(outcome: Outcome, message: str) -> Event:
    # Applied, its models still coming up: progress, not a failure.
    waiting = outcome.reason == c.REASON_MODELS_NOT_READY
    if outcome.ready:
        reason = c.EVENT_SYNCED
    else:
        reason = c.EVENT_MODELS_NOT_READY if waiting else c.EVENT_SYNC_FAILED
    return Event(reason, message, warning=not (outcome.ready or waiting))
