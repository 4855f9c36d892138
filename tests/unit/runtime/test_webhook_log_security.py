"""The webhook receiver's log: path segments come from anyone who can reach the port."""

from __future__ import annotations

import dataclasses
import http.client
import logging
from typing import Any

import kubernetes
import pytest

from modelsync.kube.cache import ObjectCache
from modelsync.runtime import probes
from modelsync.runtime.server import HttpServer
from modelsync.runtime.settings import OperatorSettings


@dataclasses.dataclass
class Leader:
    """What the HTTP server reads of the operator: a leader that knows no ModelSync."""

    settings: OperatorSettings
    cache: ObjectCache = dataclasses.field(default_factory=ObjectCache)
    health: probes.Health = dataclasses.field(
        default_factory=lambda: probes.Health(role=probes.ROLE_LEADER)
    )

    def accepts_work(self) -> bool:
        return True

    def enqueue_threadsafe(self, key: Any) -> None:
        raise AssertionError(f"nothing is queued: {key}")

    def webhook_token(self, ms: dict[str, Any]) -> bytes | None:
        return None

    def webhook_target(self, namespace: str, name: str) -> tuple[bool, dict[str, Any] | None]:
        return False, None

    def uncached_modelsync(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    def hand_over(self, ms: dict[str, Any]) -> None:
        raise AssertionError("nothing is handed over")


def test_security_webhook_path_segments_are_logged_escaped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A forged line (a newline, a terminal escape, a fake record) in the namespace and
    name of /hooks/<provider>/<namespace>/<name> stays one escaped line in the log."""
    config = kubernetes.client.Configuration()
    config.host = "http://127.0.0.1:9"  # the readiness check's API server: nothing listens
    server = HttpServer(
        Leader(OperatorSettings(http_host="127.0.0.1", http_port=0)),
        kubernetes.client.ApiClient(config),
    )
    forged = "team%0Aoperator%20INFO%20sync%20prod%2Fprod%3A%20applied%1B%5B2K"
    with caplog.at_level(logging.WARNING, logger="modelsync.runtime.server"):
        server.start()
        try:
            assert server._runner is not None
            port = server._runner.addresses[0][1]
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("POST", f"/hooks/github/{forged}/na%0Dme", body=b"{}")
            assert connection.getresponse().status == 401
            connection.close()
        finally:
            server.stop()
    logged = [r.getMessage() for r in caplog.records if "not authenticated" in r.getMessage()]
    assert len(logged) == 1, logged
    for raw in ("\n", "\r", "\x1b"):
        assert raw not in logged[0]
    assert "team\\noperator INFO sync prod/prod: applied\\x1b[2K" in logged[0]
    assert "na\\rme" in logged[0]
