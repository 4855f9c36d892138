"""Record and tell, to people: which outcomes a notification tells, read from statuses.

One notification per outcome a person acts on, never per Event: a revision rejected, a
rollout failed (no automatic rollback), a model rolled back, a canary analysis failed
(and was rolled back), a rollback write-back failed, and recovered after any of these.
Each subject (a ModelSync, or one of its ModelDeployments) has a `State` read from its
status: a failure, OK, or nothing to say (in progress, or the environment broke an
attempt off). `follow` turns the last state said and the new one into a notice: a new
failure, or Recovered when OK follows a failure; the in-between states are passed over.

Also pure: the receiver's request (a generic webhook's JSON, signed like our own webhook
receivers; a Slack-compatible incoming webhook's text), whether a receiver URL is one the
platform allows, the retry rule, and the bounded queue's bookkeeping (`Outbox`: what is
admitted, what is dropped, in which order). The shell is notify.py.
"""

from __future__ import annotations

import collections
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Generic, TypeVar

from modelsync.api import conditions
from modelsync.api import constants as c
from modelsync.api.manifest import items, text
from modelsync.api.origins import origin, origin_text, parse_origin
from modelsync.gitops.webhooks import DELIVERY_HEADERS, signature
from modelsync.kube.shares import Held

OK = ""  # State.kind of a subject that is fine
ENDPOINTS_SETTING = "--notification-endpoint"
ATTEMPTS = 3  # one delivery and two retries, with the same id
RETRY_SECONDS = (1.0, 4.0)  # before the second and the third attempt
MAX_MESSAGE = 1000

# A revision refused for its content (or the tenant's settings): the same revision fails
# the same way until git or the ModelSync changes.
REJECTED = frozenset(
    {
        c.REASON_VALIDATION_FAILED,
        c.REASON_OWNERSHIP_CONFLICT,
        c.REASON_REVISION_TOO_LARGE,
        c.REASON_EMPTY_REVISION,
        c.REASON_PRUNE_REFUSED,
        c.REASON_PRUNE_FAILED,
        c.REASON_TARGET_NAMESPACE_NOT_ALLOWED,
    }
)


class RefusedError(ValueError):
    """A receiver the operator will not send to; the message never holds its address's
    path or query (a Slack webhook URL is a credential), only its origin."""


@dataclass(frozen=True)
class State:
    """What a subject's status says: `kind` a notice kind (a failure) or OK."""

    kind: str
    revision: str = ""
    reason: str = ""
    message: str = ""


def sync_state(status: Mapping[str, object]) -> State | None:
    """A ModelSync's state: its last attempted revision rejected, its rollback write-back
    failing, or applied and Ready (OK). A rolled-back model is its ModelDeployment's news."""
    revision = text(status, "lastAttemptedRevision")
    ready = conditions.find(status.get("conditions"), c.READY) or {}
    reason, message = text(ready, "reason"), text(ready, "message")
    if reason in REJECTED:
        return State(c.NOTICE_REVISION_REJECTED, revision, reason, message)
    write_back = conditions.find(status.get("conditions"), c.WRITE_BACK) or {}
    if write_back.get("status") == "False":
        return State(
            c.NOTICE_WRITE_BACK_FAILED,
            revision,
            text(write_back, "reason"),
            text(write_back, "message"),
        )
    if ready.get("status") == "True" and revision and status.get("lastAppliedRevision") == revision:
        return State(OK, revision, reason, message)
    return None


def model_state(status: Mapping[str, object]) -> State | None:
    """A ModelDeployment's state: rolled back (AnalysisFailed when a canary's analysis
    was the cause), its rollout failed with no rollback, or Ready (OK)."""
    found = status.get("conditions")
    rolled = conditions.find(found, c.ROLLED_BACK) or {}
    if rolled.get("status") == "True":
        reason = text(rolled, "reason")
        kind = (
            c.NOTICE_ANALYSIS_FAILED if reason == c.REASON_ANALYSIS_FAILED else c.NOTICE_ROLLED_BACK
        )
        revision = text(status, "failedGitRevision")
        return State(kind, revision, reason, text(rolled, "message"))
    ready = conditions.find(found, c.READY) or {}
    revision = text(status, "currentRevision")
    if ready.get("status") == "True":
        return State(OK, revision, text(ready, "reason"), text(ready, "message"))
    history = items(status, "history")
    last = history[0] if history else {}
    if last.get("result") == c.HISTORY_FAILED:
        return State(
            c.NOTICE_ROLLOUT_FAILED,
            text(last, "revision") or revision,
            c.REASON_FAILED,
            text(last, "message"),
        )
    return None


def follow(before: State | None, after: State | None) -> tuple[State | None, State | None]:
    """(the state to remember, the notice to send, if any). Nothing to say keeps what was
    said; a failure is told once per kind and revision; OK after a failure is Recovered."""
    if after is None:
        return before, None
    if after.kind == OK:
        if before is not None and before.kind != OK:
            return after, State(c.NOTICE_RECOVERED, after.revision, before.kind, after.message)
        return after, None
    if before is not None and (before.kind, before.revision) == (after.kind, after.revision):
        return before, None
    return after, after


@dataclass(frozen=True)
class Notice:
    """One notification: `id` stays the same through every retry."""

    id: str
    kind: str
    namespace: str  # the ModelSync's
    modelsync: str
    model: str  # "" for the ModelSync's own outcomes
    revision: str
    reason: str
    message: str
    time: str
    # The model's own namespace (its ModelDeployment's: spec.targetNamespace, when the
    # ModelSync has one), "" with `model`; `namespace` stays the ModelSync's.
    model_namespace: str = ""

    @property
    def severity(self) -> str:
        return "info" if self.kind == c.NOTICE_RECOVERED else "error"


def notice(
    id_: str,
    state: State,
    namespace: str,
    modelsync: str,
    model: str,
    time: str,
    model_namespace: str = "",
) -> Notice:
    message = " ".join(state.message.split())
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    return Notice(
        id_,
        state.kind,
        namespace,
        modelsync,
        model,
        state.revision,
        state.reason,
        message,
        time,
        model_namespace if model else "",
    )


def wanted(events: tuple[str, ...], kind: str) -> bool:
    return not events or kind in events


def parse_endpoint(text: str) -> str:
    """An allowed receiver origin as the platform writes it (scheme://host[:port])."""
    return parse_origin(text, "a notification endpoint", "https://hooks.slack.com")


def check_address(address: str, allowed: tuple[str, ...]) -> str:
    """The receiver URL when its scheme, host and port are one of `allowed`; RefusedError
    (naming its origin only) before any connection otherwise."""
    found = origin(address.strip())
    if found is None:
        scheme = urllib.parse.urlsplit(address.strip()).scheme or "none"
        raise RefusedError(
            f"its address is not a plain http(s) URL (scheme {scheme!r}; no user, query or "
            "fragment): refused"
        )
    if origin_text(found) not in allowed:
        listed = ", ".join(allowed) if allowed else "none"
        raise RefusedError(
            f"its address {origin_text(found)} is not among the platform's notification "
            f"endpoints ({ENDPOINTS_SETTING}: {listed}): refused before any connection; ask "
            "the platform team to allow it"
        )
    return address.strip()


def webhook_request(item: Notice, token: bytes) -> tuple[dict[str, str], bytes]:
    """A generic webhook's headers and body: the JSON of the notice, signed as our own
    generic webhook receiver checks it (X-Modelsync-Signature, X-Modelsync-Delivery)."""
    data = asdict(item)
    data["modelNamespace"] = data.pop("model_namespace")  # spelt as the CRDs spell fields
    body = json.dumps({**data, "severity": item.severity}, sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "modelsync",
        "X-Modelsync-Event": item.kind,
        DELIVERY_HEADERS["generic"]: item.id,
        "X-Modelsync-Signature": signature(token, body),
    }
    return headers, body


def slack_request(item: Notice) -> tuple[dict[str, str], bytes]:
    """A Slack-compatible incoming webhook's request: one line of mrkdwn text."""
    model = item.model
    if model and item.model_namespace and item.model_namespace != item.namespace:
        model = f"{item.model_namespace}/{model}"  # served elsewhere (spec.targetNamespace)
    subject = f"model {model}" if model else "revision"
    where = f"ModelSync {item.namespace}/{item.modelsync}"
    mark = ":white_check_mark:" if item.severity == "info" else ":rotating_light:"
    text = f"{mark} *{item.kind}*: {subject} of {where} at `{item.revision}`: {item.message}"
    headers = {"Content-Type": "application/json", "User-Agent": "modelsync"}
    return headers, json.dumps({"text": text}).encode()


def retry_after(attempt: int, status: int | None) -> float | None:
    """Seconds before attempt `attempt + 1` (attempts count from 1) after an answer
    `status` (None: no answer, a connection failed or timed out); None: do not retry.
    A 4xx other than 408 and 429 says the request itself is wrong: not retried."""
    if status is not None and 200 <= status < 300:
        return None
    if status is not None and 400 <= status < 500 and status not in (408, 429):
        return None
    if attempt >= ATTEMPTS:
        return None
    return RETRY_SECONDS[min(attempt, len(RETRY_SECONDS)) - 1]


QUEUED, DROPPED = "queued", "dropped"  # DROPPED is also the metric's result label

Key = tuple[str, str]  # a ModelSync's namespace and name
Item = TypeVar("Item")


def admit(queued: int, max_queued: int) -> str:
    """Whether one more delivery joins a queue holding `queued` (all ModelSyncs together):
    not past `max_queued` (dropped and counted, so a flood never grows the operator's
    memory nor delays a sync). Nothing else is refused: `follow` already tells each
    outcome once, so every delivery offered is news."""
    return DROPPED if queued >= max_queued else QUEUED


class Outbox(Generic[Item]):
    """The outbound queue's bookkeeping (notifications and commit statuses alike): what
    waits, by ModelSync, in the order it was told; which ModelSyncs a sender thread is
    working on; and which namespace gets the next free thread. Plain data and no lock:
    the shell holds its own around every call, and passes the clock in.

    One item of a ModelSync at a time, oldest first: a newer notice of the same kind (a
    second RolledBack, at another revision) is queued behind the older one, never in its
    place, and `pending` never lands after `success`. A full queue drops the newcomer;
    what waits keeps its place.

    Shares: the next free thread goes to the namespace with the fewest threads at work,
    the oldest item first among equals. Work-conserving: a namespace alone may use every
    thread; while another namespace waits, each thread that comes free goes to it, so a
    tenant's slow hosts (its own git host, its own receivers) hold at most the threads
    they had, for one request's deadline each, never the items of other tenants."""

    def __init__(self, max_queued: int) -> None:
        self.max_queued = max_queued
        self.queued = 0
        self._queues: dict[Key, collections.deque[tuple[int, Item]]] = {}
        self._busy: set[Key] = set()  # a thread is at work on it, or its retry is due later
        self._due: dict[Key, float] = {}  # a retry's time (the shell's monotonic clock)
        self._running = Held()  # threads at work, by namespace (kube/shares.py)
        self._told = 0  # items offered so far: their order

    def offer(self, key: Key, item: Item) -> str:
        """QUEUED, or DROPPED when the queue is full."""
        if admit(self.queued, self.max_queued) == DROPPED:
            return DROPPED
        self._told += 1
        self._queues.setdefault(key, collections.deque()).append((self._told, item))
        self.queued += 1
        return QUEUED

    def take(self, now: float) -> tuple[Key, Item] | None:
        """The item a free thread sends next (its ModelSync is then at work until `done`
        or `later`); None when nothing may go now."""
        key = self._running.fairest(
            (key[0], queue[0][0], key)
            for key, queue in self._queues.items()
            if key not in self._busy or self._due.get(key, now + 1) <= now
        )
        if key is None:
            return None
        queue = self._queues[key]
        _, item = queue.popleft()
        if not queue:
            del self._queues[key]
        self.queued -= 1
        self._due.pop(key, None)
        self._busy.add(key)
        self._running.take(key[0])
        return key, item

    def done(self, key: Key) -> None:
        """The thread is done with `key`'s item: its next one may go."""
        self._busy.discard(key)
        self._running.give_back(key[0])

    def later(self, key: Key, item: Item, due: float) -> None:
        """`item` is sent again at `due`, before anything else of `key` (the thread is
        free meanwhile: a retry's wait holds no thread)."""
        self._queues.setdefault(key, collections.deque()).appendleft((0, item))
        self.queued += 1
        self._due[key] = due
        self._running.give_back(key[0])

    def next_due(self) -> float | None:
        """When the earliest retry is due (a free thread waits until then at most)."""
        return min(self._due.values(), default=None)
