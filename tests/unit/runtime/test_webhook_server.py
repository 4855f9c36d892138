"""The webhook receiver's bounds on what a sender may hold: a body is read within a
deadline, and GitLab's token (a header) is checked before any of it is read."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import kubernetes
import pytest

from modelsync.gitops import webhooks
from modelsync.runtime.server import HttpServer
from modelsync.runtime.settings import OperatorSettings
from tests.unit.runtime.test_webhook_log_security import Leader


@pytest.fixture
def port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setattr(webhooks, "BODY_SECONDS", 0.5)
    config = kubernetes.client.Configuration()
    config.host = "http://127.0.0.1:9"  # the readiness check's API server: nothing listens
    server = HttpServer(
        Leader(OperatorSettings(http_host="127.0.0.1", http_port=0)),
        kubernetes.client.ApiClient(config),
    )
    server.start()
    try:
        assert server._runner is not None
        yield server._runner.addresses[0][1]
    finally:
        server.stop()


def half_sent(port: int, route: str, header: str = "") -> tuple[str, float]:
    """Headers announcing a 100-byte body, 10 bytes of it, then silence: the status line
    of the answer, and how long it took."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        start = time.monotonic()
        sock.sendall(
            f"POST {route} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n{header}\r\n".encode()
            + b'{"ref": "r'
        )
        answer = sock.recv(4096).decode(errors="replace")
        return answer.split("\r\n", 1)[0], time.monotonic() - start


def test_security_webhook_body_not_sent_in_time_is_cut_off(port: int) -> None:
    status, seconds = half_sent(port, "/hooks/github/team/prod")
    assert status == "HTTP/1.1 408 Request Timeout", status
    assert 0.4 < seconds < 4, seconds


def test_security_webhook_gitlab_token_is_checked_before_the_body(port: int) -> None:
    """No wait for a body that would be refused anyway: answered at once."""
    status, seconds = half_sent(port, "/hooks/gitlab/team/prod", "X-Gitlab-Token: guessed\r\n")
    assert status == "HTTP/1.1 401 Unauthorized", status
    assert seconds < 0.4, seconds


def test_security_webhook_for_an_unknown_name_reads_the_body_as_for_a_known_one(
    port: int,
) -> None:
    """A name that does not exist is not answered sooner than a wrong signature would be
    (which needs the body): when the answer comes says nothing about which names exist."""
    status, _ = half_sent(port, "/hooks/github/team/nosuch")
    assert status == "HTTP/1.1 408 Request Timeout", status
