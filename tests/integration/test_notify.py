"""Notifications to people: a revision rejected, a model rolled back, and recovered after
each, told once to each receiver (a generic webhook, signed; a Slack-compatible one),
from pull requests merged in a real Gitea; receivers that fail or never answer, and
receivers a tenant may not make the operator post to."""

from __future__ import annotations

import http.server
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import kubernetes
import pytest

from modelsync.api import constants as c
from modelsync.gitops import webhooks
from modelsync.telemetry import metrics
from testcluster.gitea import Gitea
from tests.integration import test_commit_status, test_git_rollback
from tests.integration.test_commit_status import GiteaRepo, secret, wait_event
from tests.integration.test_rollback import DEADLINE, broken_model_yaml, rolled_back
from tests.support.gitserver import GitHttpServer, SlowHttpServer
from tests.support.httpserve import InThread
from tests.support.kube import dict_condition
from tests.support.models import Models, ready_on
from tests.support.syncs import Syncs, model_yaml

BROKEN = "kind: [unclosed\n"
gitea_repo = test_commit_status.gitea_repo  # the fixture: a Gitea repository and its Secrets
read_only_server = test_git_rollback.read_only_server  # the fixture: a server refusing pushes


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver(InThread, http.server.ThreadingHTTPServer):
    """Webhook receivers on one loopback port, by path. `answers[path]` lists the status
    codes to answer in turn (then 200); a 5xx answer echoes the request's path, as a
    careless receiver might."""

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _ReceiverHandler)
        self.taken: list[Delivery] = []
        self.answers: dict[str, list[int]] = {}
        self.changed = threading.Condition()

    def at(self, path: str) -> list[Delivery]:
        with self.changed:
            return [d for d in self.taken if d.path == path]

    def wait_count(self, path: str, count: int, timeout: float = 90) -> list[Delivery]:
        """Until `path` has taken `count` deliveries (no fewer; more fails at once)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = [d for d in self.taken if d.path == path]
                assert len(found) <= count, [json.loads(d.body) for d in found]
                if len(found) == count:
                    return found
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"{path}: {len(found)} of {count} deliveries"
                self.changed.wait(remaining)


class _ReceiverHandler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.changed:
            plan = self.server.answers.get(self.path) or []
            status = plan.pop(0) if plan else 200
            self.server.taken.append(Delivery(self.path, dict(self.headers.items()), body))
            self.server.changed.notify_all()
        answer = json.dumps({"message": f"cannot take {self.path}"} if status >= 500 else {})
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer.encode())


@pytest.fixture
def receiver(notify_ports: tuple[int, int]) -> Iterator[Receiver]:
    with Receiver(notify_ports[0]) as server:
        yield server


def receiver_secret(
    syncs: Syncs, name: str, address: str, token: str = "", namespace: str = "", type_: str = ""
) -> None:
    data = {"address": address, **({"token": token} if token else {})}
    secret(syncs, name, data, type_ or c.SECRET_TYPE_NOTIFICATION, namespace)


def notified(deliveries: list[Delivery], token: str) -> list[dict[str, Any]]:
    """The notices of signed deliveries; each delivery's signature checked."""
    for delivery in deliveries:
        assert webhooks.authentic("generic", delivery.headers, delivery.body, token.encode()), (
            delivery.headers
        )
        assert delivery.headers["X-Modelsync-Delivery"] == json.loads(delivery.body)["id"]
    return [json.loads(d.body) for d in deliveries]


def events_of(syncs: Syncs) -> list[dict[str, Any]]:
    events = kubernetes.dynamic.DynamicClient(syncs.cluster.api).resources.get(
        api_version="events.k8s.io/v1", kind="Event"
    )
    items: list[dict[str, Any]] = events.get(namespace=syncs.namespace).to_dict()["items"]
    return items


def wait_notify_event(syncs: Syncs, name: str, *words: str, timeout: float = 60) -> str:
    return wait_event(syncs, name, *words, reason=c.EVENT_NOTIFICATION_FAILED, timeout=timeout)


def test_notify_each_outcome_once_to_a_signed_webhook_and_a_slack_receiver(
    gitea_repo: GiteaRepo, syncs: Syncs, models: Models, receiver: Receiver
) -> None:
    """Rejected, recovered (a fix merged through a Gitea pull request), rolled back,
    recovered: each told exactly once to each receiver, the webhook's signed with its key."""
    gitea, repo = gitea_repo.gitea, gitea_repo.name
    port = receiver.server_address[1]
    key = "hmac-" + secrets.token_hex(8)
    slack_path = f"/services/T0/B0/{secrets.token_hex(8)}"  # a Slack URL is a credential
    receiver_secret(syncs, "hook", f"http://127.0.0.1:{port}/hook", key)
    receiver_secret(syncs, "slack", f"http://127.0.0.1:{port}{slack_path}")
    healthy = model_yaml("iris", version="1", replicas=2) + (
        f"  rollout:\n    progressDeadlineSeconds: {DEADLINE}\n"
    )
    good = gitea.write(repo, "models/iris.yaml", healthy)
    syncs.create(
        "prod",
        gitea_repo.url,
        secret="git",
        path="models",
        # Receivers alone: no git host provider, no commit status.
        notify={
            "receivers": [
                {"type": "webhook", "secretRef": {"name": "hook"}},
                {"type": "slack", "secretRef": {"name": "slack"}},
            ]
        },
    )
    syncs.wait_applied("prod", f"main@sha1:{good}")

    broken = gitea.write(repo, "models/extra.yaml", BROKEN)
    syncs.request("prod")
    [rejected] = notified(receiver.wait_count("/hook", 1), key)
    assert rejected["kind"] == c.NOTICE_REVISION_REJECTED, rejected
    assert rejected["revision"] == f"main@sha1:{broken}"
    assert rejected["model"] == ""
    assert "models/extra.yaml" in rejected["message"], rejected

    gitea.write(repo, "models/extra.yaml", model_yaml("extra"), new_branch="fix")
    merge = gitea.merge_pull_request(repo, "fix", "fix extra")
    syncs.request("prod")
    syncs.wait_applied("prod", f"main@sha1:{merge}")
    recovered = notified(receiver.wait_count("/hook", 2), key)[-1]
    assert recovered["kind"] == c.NOTICE_RECOVERED, recovered
    assert recovered["revision"] == f"main@sha1:{merge}", recovered

    bad = gitea.write(repo, "models/iris.yaml", broken_model_yaml("iris", "2"))
    syncs.request("prod")
    models.wait("iris", rolled_back, timeout=DEADLINE + 30)
    back = notified(receiver.wait_count("/hook", 3), key)[-1]
    assert back["kind"] == c.NOTICE_ROLLED_BACK, back
    assert back["model"] == "iris", back
    assert back["revision"] == f"main@sha1:{bad}", back
    assert back["reason"], back
    assert "rolled back to version 1" in back["message"], back

    fixed = gitea.write(repo, "models/iris.yaml", model_yaml("iris", version="3", replicas=2))
    token = syncs.request("prod")
    syncs.wait_applied("prod", f"main@sha1:{fixed}", token=token)
    told = notified(receiver.wait_count("/hook", 4), key)
    assert told[-1]["kind"] == c.NOTICE_RECOVERED, told[-1]
    assert told[-1]["model"] == "iris", told[-1]

    # Nothing more to tell: a sync with nothing new says nothing again.
    token = syncs.request("prod")
    syncs.wait_applied("prod", f"main@sha1:{fixed}", token=token)
    slack = receiver.wait_count(slack_path, 4)
    assert len(receiver.at("/hook")) == 4
    assert len({notice["id"] for notice in told}) == 4
    assert [n["kind"] for n in told] == [
        c.NOTICE_REVISION_REJECTED,
        c.NOTICE_RECOVERED,
        c.NOTICE_ROLLED_BACK,
        c.NOTICE_RECOVERED,
    ]
    texts = [json.loads(d.body)["text"] for d in slack]
    assert all(f"{syncs.namespace}/prod" in text for text in texts), texts
    assert "RolledBack" in texts[2], texts
    assert "model iris" in texts[2], texts
    # The Slack webhook's address and the HMAC key were sent nowhere but to the receiver.
    notes = " ".join(str(e.get("note")) for e in events_of(syncs))
    status = json.dumps(syncs.models()) + json.dumps(
        syncs.api.get_namespaced_custom_object(
            c.GROUP, c.VERSION, syncs.namespace, c.MODELSYNC_PLURAL, "prod"
        )
    )
    assert slack_path not in notes + status
    assert key not in notes + status


def test_notify_a_5xx_receiver_is_retried_with_the_same_id_and_no_secret_leaks(
    gitea_repo: GiteaRepo,
    syncs: Syncs,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A receiver answering 503, 503, then 200 gets the one notice three times with one id
    and one body (taken once); one answering 503 always is an Event naming the answer,
    which never holds the receiver's address or key, nor does any log line."""
    caplog.set_level(logging.INFO)
    gitea, repo = gitea_repo.gitea, gitea_repo.name
    port = receiver.server_address[1]
    key = "hmac-" + secrets.token_hex(8)
    flaky, down = f"/flaky/{secrets.token_hex(8)}", f"/down/{secrets.token_hex(8)}"
    receiver.answers = {flaky: [503, 503], down: [503] * 10}
    receiver_secret(syncs, "flaky", f"http://127.0.0.1:{port}{flaky}", key)
    receiver_secret(syncs, "down", f"http://127.0.0.1:{port}{down}", key)
    retried = metrics.NOTIFICATIONS.labels(type="webhook", result="retried")
    before = retried._value.get()
    syncs.create(
        "prod",
        gitea_repo.url,
        secret="git",
        path="models",
        notify={
            "receivers": [
                {"type": "webhook", "secretRef": {"name": "flaky"}},
                {"type": "webhook", "secretRef": {"name": "down"}},
            ]
        },
    )
    syncs.wait_applied("prod", f"main@sha1:{gitea_repo.first}")
    gitea.write(repo, "models/extra.yaml", BROKEN)
    syncs.request("prod")
    syncs.wait_failed("prod", c.REASON_VALIDATION_FAILED)

    taken = notified(receiver.wait_count(flaky, 3), key)
    assert len({n["id"] for n in taken}) == 1, taken
    assert len({d.body for d in receiver.at(flaky)}) == 1
    note = wait_notify_event(syncs, "prod", "webhook receiver", "Secret", "/down", "503")
    assert len(receiver.at(down)) == 3  # one delivery and two retries, then given up
    assert retried._value.get() - before >= 4
    for secret_text in (down, flaky, key):
        assert secret_text not in note, note
        assert secret_text not in caplog.text
    assert taken[0]["id"] in note, note


def test_notify_a_silent_receiver_does_not_delay_five_commits(
    gitea_repo: GiteaRepo, syncs: Syncs, notify_ports: tuple[int, int]
) -> None:
    """A receiver that accepts connections and never answers: five commits in a row, each
    with news to tell (rejected, recovered, ...), apply one after another."""
    gitea, repo = gitea_repo.gitea, gitea_repo.name
    silent = SlowHttpServer(delay=300, port=notify_ports[1]).start()
    try:
        receiver_secret(syncs, "silent", f"http://127.0.0.1:{notify_ports[1]}/hook", "k")
        syncs.create(
            "prod",
            gitea_repo.url,
            secret="git",
            path="models",
            notify={"receivers": [{"type": "webhook", "secretRef": {"name": "silent"}}]},
        )
        syncs.wait_applied("prod", f"main@sha1:{gitea_repo.first}")
        for step in range(5):
            text = BROKEN if step % 2 == 0 else model_yaml("extra", version=str(step))
            sha = gitea.write(repo, "models/extra.yaml", text)
            token = syncs.request("prod")
            if step % 2 == 0:
                syncs.wait_failed("prod", c.REASON_VALIDATION_FAILED, token=token)
            else:
                syncs.wait_applied("prod", f"main@sha1:{sha}", token=token)
        assert silent.total >= 1, "no notification was even tried"
        wait_notify_event(syncs, "prod", "timed out", timeout=90)
    finally:
        silent.stop()


def test_notify_refused_receivers_other_namespaces_secrets_wrong_types_and_addresses(
    gitea: Gitea,
    gitea_repo: GiteaRepo,
    syncs: Syncs,
    own_namespace: str,
    receiver: Receiver,
) -> None:
    """A tenant names receivers: it cannot post through another namespace's Secret, a
    Secret not made for notifications, or an address outside the platform's allow-list
    (refused before any connection). Each is an Event; the sync itself unaffected."""
    repo = gitea_repo.name
    for name in ("r-a", "r-b", "r-c"):
        gitea.write(repo, f"{name}/bad.yaml", BROKEN)
    port = receiver.server_address[1]
    outside = SlowHttpServer(delay=5).start()  # counts any connection made to it
    hidden = f"/hook/{secrets.token_hex(8)}"
    receiver_secret(syncs, "outside", f"http://127.0.0.1:{outside.port}{hidden}", "k")
    receiver_secret(syncs, "stolen", f"http://127.0.0.1:{port}/stolen", "k", own_namespace)
    receiver_secret(syncs, "opaque", f"http://127.0.0.1:{port}/opaque", "k", type_="Opaque")
    try:
        for name, ref in (("r-a", "outside"), ("r-b", "stolen"), ("r-c", "opaque")):
            syncs.create(
                name,
                gitea_repo.url,
                secret="git",
                path=name,
                notify={"receivers": [{"type": "webhook", "secretRef": {"name": ref}}]},
            )
        for name in ("r-a", "r-b", "r-c"):
            syncs.wait_failed(name, c.REASON_VALIDATION_FAILED)
        notes = [
            wait_notify_event(
                syncs, "r-a", f"127.0.0.1:{outside.port}", "refused before any connection"
            ),
            wait_notify_event(syncs, "r-b", f"{syncs.namespace}/stolen", "does not exist"),
            wait_notify_event(syncs, "r-c", "type 'Opaque'", c.SECRET_TYPE_NOTIFICATION),
        ]
        assert "--notification-endpoint" in notes[0], notes[0]
        assert outside.total == 0, "a refused receiver was connected to"
    finally:
        outside.stop()
    assert not receiver.taken, [d.path for d in receiver.taken]
    assert not any(hidden in note for note in notes), notes


def test_notify_write_back_failed_once_when_the_git_server_refuses_the_push(
    syncs: Syncs, models: Models, read_only_server: GitHttpServer, receiver: Receiver
) -> None:
    """A rollback whose write-back the git server refuses (its repository is read-only):
    one signed WriteBackFailed (beside the model's RolledBack), and no second one when the
    ModelSync syncs again."""
    server = read_only_server
    key = "hmac-" + secrets.token_hex(8)
    receiver_secret(syncs, "hook", f"http://127.0.0.1:{receiver.server_address[1]}/hook", key)
    syncs.secret("git-auth", server.username, server.password)
    repo = syncs.repo("models")
    repo.write("iris.yaml", model_yaml("iris", version="1", replicas=2))
    good = repo.commit("iris 1")
    syncs.create(
        "prod",
        server.url(repo.bare.name),
        secret="git-auth",
        rollbackWriteBack=True,
        notify={
            "receivers": [
                {
                    "type": "webhook",
                    "secretRef": {"name": "hook"},
                    "events": [c.NOTICE_WRITE_BACK_FAILED, c.NOTICE_ROLLED_BACK],
                }
            ]
        },
    )
    syncs.wait_applied("prod", f"main@sha1:{good}")
    models.wait("iris", ready_on("1"))
    repo.write("iris.yaml", broken_model_yaml("iris", "2"))
    bad = repo.commit("iris 2")
    syncs.request("prod")
    models.wait("iris", rolled_back, timeout=DEADLINE + 30)

    # The model's rollback and the ModelSync's write-back are told apart, in either order.
    told = {n["kind"]: n for n in notified(receiver.wait_count("/hook", 2), key)}
    assert set(told) == {c.NOTICE_WRITE_BACK_FAILED, c.NOTICE_ROLLED_BACK}, told
    back, failed = told[c.NOTICE_ROLLED_BACK], told[c.NOTICE_WRITE_BACK_FAILED]
    assert (back["model"], back["modelNamespace"]) == ("iris", syncs.namespace), back
    assert failed["revision"] == f"main@sha1:{bad}", failed
    assert failed["reason"] == c.REASON_WRITE_BACK_FAILED, failed
    assert "could not push" in failed["message"], failed
    assert (failed["model"], failed["modelNamespace"]) == ("", ""), failed
    assert failed["namespace"] == back["namespace"] == syncs.namespace
    # Synced again, still failing: nothing new to tell.
    token = syncs.request("prod")
    ms = syncs.wait(
        "prod",
        lambda ms: (ms or {}).get("status", {}).get("lastHandledReconcileAt") == token,
        "another sync",
    )
    assert (dict_condition(ms, c.WRITE_BACK) or {}).get("status") == "False", ms
    assert len(receiver.at("/hook")) == 2
