"""Record and tell, to people: notifications to a ModelSync's receivers (the shell of
notices.py, which decides what is told).

Configured in the ModelSync itself (`spec.notify.receivers`), like its commit status and
for the same reason: what is told is one ModelSync's news, so a shared Provider/Alert
pair (as Flux's) would only add references to check across objects and namespaces.
A receiver's URL and HMAC key are in a Secret of type `modelsync.io/notification` in
the ModelSync's namespace: a Slack webhook URL is itself a credential, and a tenant can
name nothing but its own namespace's Secrets. Every URL must have an origin among the
platform's `notification_endpoints` (not the analysis endpoints: a Prometheus that may
be queried is not a place to post to, nor the reverse).

Who tells it: the ModelSync's reconciler (`observe_sync`, after it writes status) and
the operator's ModelDeployment watch (`observe_model`, for rollouts, rollbacks and
analysis), which finds the owning ModelSync itself: serving/ knows nothing of this.

Sent off the sync's path: a bounded queue (a full one drops and counts), a few threads
shared by namespace (outbound.Sender), one ModelSync's notifications in order, a
wall-clock deadline per request (commitstatus.send), no redirects, retries of a 5xx or
no answer with the same id (the wait before a retry holds no thread). A failure is an
Event naming the receiver's Secret and the answer, never its address or key.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import logging
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelsync.api import constants as c
from modelsync.api import modelsync as typed
from modelsync.api.fields import FieldError
from modelsync.gitops import notices
from modelsync.gitops.commitstatus import Request, SendError, send
from modelsync.gitops.outbound import EventPoster, Getter, Sender
from modelsync.telemetry import metrics

log = logging.getLogger(__name__)

DEADLINE_SECONDS = 5.0  # connect, send and read the whole answer of one attempt
MAX_QUEUED = 1000  # deliveries waiting, all ModelSyncs together; past it, dropped
WORKERS = 2  # ModelSyncs whose notifications are being sent at once

Subject = tuple[str, str, str]  # kind, namespace, name


@dataclass(frozen=True)
class Delivery:
    ms: dict[str, Any]  # the ModelSync as it was (its Events name it)
    receiver: typed.Receiver
    notice: notices.Notice
    attempt: int = 1  # a retry is the same delivery (the same id) again


class Notifier(Sender[Delivery]):
    """Tells each outcome once to each receiver that wants it, off the sync's path
    (outbound.Sender)."""

    def __init__(
        self,
        get: Getter,
        event: EventPoster,
        allowed: tuple[str, ...] = (),
        *,
        max_queued: int = MAX_QUEUED,
        workers: int = WORKERS,
        timeout: float = DEADLINE_SECONDS,
    ) -> None:
        super().__init__(
            get,
            event,
            allowed,
            max_queued=max_queued,
            workers=workers,
            timeout=timeout,
            thread_prefix="notify",
        )
        self._said: dict[Subject, notices.State | None] = {}

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """The subject is gone: what was said of it goes (and, of a ModelSync, the
        failures told of its receivers)."""
        with self._lock:
            self._said.pop((kind, namespace, name), None)
            if kind == c.MODELSYNC_KIND:
                for key in [k for k in self._failing if k[:2] == (namespace, name)]:
                    del self._failing[key]

    def observe_sync(
        self, ms: dict[str, Any], before: dict[str, Any], after: dict[str, Any]
    ) -> None:
        """The ModelSync's status went from `before` to `after` (as written). Seen for the
        first time, `before` is what was said (so a restarted operator says nothing twice)."""
        meta = ms["metadata"]
        subject = (c.MODELSYNC_KIND, meta["namespace"], meta["name"])
        with self._lock:
            said = self._said[subject] if subject in self._said else notices.sync_state(before)
            self._said[subject], told = notices.follow(said, notices.sync_state(after))
        if told is not None:
            self._tell(ms, told, "")

    def observe_model(self, md: dict[str, Any], owner: Callable[[], dict[str, Any] | None]) -> None:
        """A ModelDeployment as its watch delivered it; `owner` finds the ModelSync that
        applied it (called only when there is something to tell). Seen for the first time
        (a restart), its state is taken as said."""
        meta = md["metadata"]
        subject = (c.MODELDEPLOYMENT_KIND, meta.get("namespace", ""), meta["name"])
        state = notices.model_state(md.get("status") or {})
        with self._lock:
            if subject not in self._said:
                self._said[subject] = state
                return
            self._said[subject], told = notices.follow(self._said[subject], state)
        if told is not None and (ms := owner()) is not None:
            self._tell(ms, told, meta["name"], subject[1])

    def _tell(
        self, ms: dict[str, Any], state: notices.State, model: str, model_namespace: str = ""
    ) -> None:
        try:
            receivers = typed.parse_receivers((ms.get("spec") or {}).get("notify") or {})
        except FieldError:
            return  # the API server's schema stands in the way of such a spec
        meta = ms["metadata"]
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        item = notices.notice(
            str(uuid.uuid4()), state, meta["namespace"], meta["name"], model, now, model_namespace
        )
        for receiver in receivers:
            if notices.wanted(receiver.events, item.kind):
                self._enqueue(Delivery(ms, receiver, item))

    def _enqueue(self, delivery: Delivery) -> None:
        meta = delivery.ms["metadata"]
        key = (meta["namespace"], meta["name"])
        with self._lock:
            admitted = self._offer(key, delivery)
        if admitted == notices.DROPPED:
            metrics.NOTIFICATIONS.labels(type=delivery.receiver.type, result=admitted).inc()

    def _send(self, delivery: Delivery) -> tuple[float, Delivery] | None:
        receiver, item = delivery.receiver, delivery.notice
        namespace = item.namespace
        where = f"{receiver.type} receiver (Secret {namespace}/{receiver.secret_ref})"
        try:
            address, token = self._receiver(namespace, receiver)
            notices.check_address(address, self.allowed)
        except notices.RefusedError as error:  # names the address's origin at most
            self._failed(delivery, where, str(error), "refused")
            return None
        # What a receiver's answer must not carry into an Event or a log line: its address
        # and the path of it (a Slack webhook's path is its credential), and the HMAC key.
        path = urllib.parse.urlsplit(address).path
        secrets = (address, path if len(path) > 1 else "", token.decode(errors="replace"))
        if receiver.type == c.RECEIVER_WEBHOOK:
            headers, body = notices.webhook_request(item, token)
        else:
            headers, body = notices.slack_request(item)
        try:
            send(Request("POST", address, headers, body), self.timeout)
        except SendError as error:
            delay = notices.retry_after(delivery.attempt, error.status)
            if delay is None:
                self._failed(delivery, where, str(error), "failed", secrets)
                return None
            metrics.NOTIFICATIONS.labels(type=receiver.type, result="retried").inc()
            return delay, dataclasses.replace(delivery, attempt=delivery.attempt + 1)
        metrics.NOTIFICATIONS.labels(type=receiver.type, result="sent").inc()
        with self._lock:
            self._failing.pop((namespace, item.modelsync, receiver.secret_ref), None)
        log.info(
            "%s/%s: notified %s %s (id %s) to the %s",
            namespace,
            item.modelsync,
            item.kind,
            item.model or item.revision,
            item.id,
            where,
        )
        return None

    def _failed(
        self, delivery: Delivery, where: str, why: str, result: str, secrets: tuple[str, ...] = ()
    ) -> None:
        receiver, item = delivery.receiver, delivery.notice
        for secret in secrets:
            if secret:  # a receiver may echo the request: its answer goes out without them
                why = why.replace(secret, "<redacted>")
        metrics.NOTIFICATIONS.labels(type=receiver.type, result=result).inc()
        message = f"notification {item.kind} (id {item.id}) to the {where}: {why}"
        key = (item.namespace, item.modelsync, receiver.secret_ref)
        with self._lock:
            repeated = self._failing.get(key) == why
            self._failing[key] = why
        log.warning("%s/%s: %s", item.namespace, item.modelsync, message)
        if not repeated:
            self.event(delivery.ms, c.EVENT_NOTIFICATION_FAILED, message, True)

    def _receiver(self, namespace: str, receiver: typed.Receiver) -> tuple[str, bytes]:
        """(address, HMAC key) from the receiver's Secret, in the ModelSync's own
        namespace, and only from a Secret made for it."""
        name = receiver.secret_ref
        try:
            secret = self.get("v1", "Secret", namespace, name)
        except Exception as error:  # the API server's answer (403: namespace not enabled)
            status = getattr(error, "status", "") or type(error).__name__
            raise notices.RefusedError(f"its Secret could not be read: {status}") from None
        if secret is None:
            raise notices.RefusedError(f"Secret {namespace}/{name} does not exist")
        if secret.get("type") != c.SECRET_TYPE_NOTIFICATION:
            raise notices.RefusedError(
                f"Secret {namespace}/{name} has type {secret.get('type') or 'Opaque'!r}; only "
                f"Secrets of type {c.SECRET_TYPE_NOTIFICATION!r} are sent to a receiver: "
                f"kubectl create secret generic {name} --type={c.SECRET_TYPE_NOTIFICATION} "
                "--from-literal=address=https://... [--from-literal=token=...]"
            )
        data = secret.get("data") or {}
        address = base64.b64decode(data.get("address") or "").decode(errors="replace").strip()
        token = base64.b64decode(data.get("token") or "").strip()
        if not address:
            raise notices.RefusedError(f"Secret {namespace}/{name} has no key address")
        if receiver.type == c.RECEIVER_WEBHOOK and not token:
            raise notices.RefusedError(
                f"Secret {namespace}/{name} has no key token (the webhook's HMAC key)"
            )
        return address, token
