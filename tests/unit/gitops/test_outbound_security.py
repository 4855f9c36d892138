"""The outbound senders (commit statuses, notifications) against hosts a tenant names:
a host that trickles its answer holds a sender thread for one deadline at most, reads
stop at the cap, and one namespace's slow hosts never hold another namespace's items.
Real sockets on loopback, no cluster."""

from __future__ import annotations

import base64
import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from modelsync.api import constants as c
from modelsync.gitops import commitstatus, notify
from modelsync.gitops.outbound import Sender
from tests.support.httpserve import InThread

TRICKLE_SECONDS = 2.0  # between two bytes: far below the old 10 s per socket read
REVISIONS = [f"main@sha1:{digit * 40}" for digit in "abc"]


class Host(InThread, http.server.ThreadingHTTPServer):
    """A git host's API or a receiver on loopback: `trickle` answers one byte every
    TRICKLE_SECONDS (headers included), `flood` a body of 1 MiB at once, otherwise 201."""

    def __init__(self, behaviour: str = "") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour = behaviour
        self.accepted = threading.Event()  # a request arrived
        self.paths: list[str] = []
        self.stopped = threading.Event()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.stopped.set()
        super().stop()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Host

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.paths.append(self.path)
        self.server.accepted.set()
        if self.server.behaviour == "trickle":
            answer = b"HTTP/1.1 201 Created\r\nContent-Length: 65536\r\n\r\n" + b" " * 65536
            for byte in answer:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                if self.server.stopped.wait(TRICKLE_SECONDS):
                    return
        body = b"x" * (1 << 20) if self.server.behaviour == "flood" else b"{}"
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    started: list[Host] = []
    yield started
    for host in started:
        host.stop()


def serve(hosts: list[Host], behaviour: str = "") -> Host:
    host = Host(behaviour).start()
    hosts.append(host)
    return host


def secret(type_: str, **data: str) -> dict[str, Any]:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    return {"type": type_, "data": encoded}


def modelsync(namespace: str, name: str, host: Host) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name},
        "spec": {
            "repo": {"url": f"{host.origin}/acme/{name}.git"},
            "notify": {
                "provider": "gitea",
                "secretRef": {"name": "git-host"},
                "receivers": [{"type": "slack", "secretRef": {"name": f"hook-{name}"}}],
            },
        },
    }


def ready(revision: str, reason: str) -> dict[str, Any]:
    status = "True" if reason == c.REASON_SUCCEEDED else "False"
    return {
        "lastAttemptedRevision": revision,
        "lastAppliedRevision": revision if status == "True" else "",
        "conditions": [{"type": c.READY, "status": status, "reason": reason, "message": "m"}],
    }


def origin_of(ms: dict[str, Any]) -> str:
    """The origin of the ModelSync's host (its git host API and its receiver alike)."""
    return str(ms["spec"]["repo"]["url"]).rsplit("/acme/", 1)[0]


def make_sender(kind: str, syncs: dict[str, dict[str, Any]]) -> Sender[Any]:
    """A StatusWriter or a Notifier with its defaults (threads, deadline), whose Secrets
    point each ModelSync's receiver at its own host."""

    def get(_: str, __: str, namespace: str, name: str) -> dict[str, Any] | None:
        if name == "git-host":
            return secret(c.SECRET_TYPE_PROVIDER, token="t0ken")
        origin = origin_of(syncs[name.removeprefix("hook-")])
        return secret(c.SECRET_TYPE_NOTIFICATION, address=f"{origin}/hook")

    def event(*_: object) -> None:
        pass

    if kind == "status":
        return commitstatus.StatusWriter(get, event)
    return notify.Notifier(get, event, tuple(origin_of(ms) for ms in syncs.values()))


def tell(sender: Sender[Any], ms: dict[str, Any], revision: str) -> None:
    """One item for `ms` at `revision`: a commit status, or a notification that the
    revision was rejected (the ModelSync was fine before: each revision is news)."""
    if isinstance(sender, commitstatus.StatusWriter):
        sender.pending(ms, revision)
    elif isinstance(sender, notify.Notifier):
        fine = ready(REVISIONS[0], c.REASON_SUCCEEDED)
        sender.observe_sync(ms, fine, ready(revision, c.REASON_VALIDATION_FAILED))


@pytest.mark.parametrize("kind", ["status", "notification"])
def test_security_trickling_hosts_of_one_tenant_hold_no_other_tenants_item(
    kind: str, hosts: list[Host]
) -> None:
    """Four ModelSyncs of one namespace whose hosts answer one byte every 2 s, three items
    each waiting: another namespace's item still arrives within 10 s."""
    noisy = {f"m{i}": modelsync("noisy", f"m{i}", serve(hosts, "trickle")) for i in range(4)}
    quiet_host = serve(hosts)
    quiet = modelsync("quiet", "q", quiet_host)
    sender = make_sender(kind, {**noisy, "q": quiet})
    try:
        for ms in noisy.values():
            for revision in REVISIONS:
                tell(sender, ms, revision)
        # Every thread of the sender is now held by a trickling host (a Notifier has
        # fewer threads than there are hosts: those of the first ModelSyncs).
        workers = commitstatus.WORKERS if kind == "status" else notify.WORKERS
        for host in hosts[:workers]:
            assert host.accepted.wait(5), "the noisy items were never sent"
        tell(sender, quiet, REVISIONS[0])
        asked = time.monotonic()
        arrived = quiet_host.accepted.wait(10)
        waited = time.monotonic() - asked
    finally:
        sender.shutdown()
    assert arrived, f"the quiet tenant's {kind} did not arrive within 10 s"
    assert waited < 10
    assert all("statuses" in path or path == "/hook" for path in quiet_host.paths)


def test_security_one_request_has_a_wall_clock_deadline_and_a_read_cap(
    hosts: list[Host],
) -> None:
    trickling, flooding = serve(hosts, "trickle"), serve(hosts, "flood")
    request = commitstatus.Request("POST", f"{trickling.origin}/x", {}, b"{}")
    outcome: list[BaseException | str] = []

    def send() -> None:
        try:
            outcome.append(commitstatus.send(request, 3.0))
        except commitstatus.SendError as error:
            outcome.append(error)

    started = time.monotonic()
    worker = threading.Thread(target=send, daemon=True)
    worker.start()
    worker.join(10)
    took = time.monotonic() - started
    assert not worker.is_alive(), "a host answering a byte every 2 s held send() for 10 s"
    assert isinstance(outcome[0], commitstatus.SendError)
    assert "3s" in str(outcome[0])  # says which deadline passed
    assert took < 3 + 1
    answer = commitstatus.send(commitstatus.Request("POST", f"{flooding.origin}/x", {}, b""))
    assert len(answer) == commitstatus.ANSWER_LIMIT == 64 * 1024
