"""A real HTTP server speaking the Prometheus query API (`/api/v1/query`) on loopback,
whose answer a test sets: a value, no data, NaN, or an HTTP error - for all queries
(`answer`) or one query (`answers`); with `token` set it wants `Authorization: Bearer
<token>`, as a Prometheus behind an authenticating proxy does, and answers 401 without.

Chosen over a Prometheus built from its Go module because the canary logic reads
one instant query: what matters is the API's wire format and its failure modes,
which a test must be able to produce on demand (no data, NaN, 500) - a real
Prometheus would need a scrape target and time to produce each of them.
"""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
import urllib.parse
from typing import Any

from tests.support.httpserve import InThread


class _Handler(http.server.BaseHTTPRequestHandler):
    server: PrometheusApi

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path != "/api/v1/query":
            self._send(404, {"status": "error", "error": "not found"})
            return
        asked = urllib.parse.parse_qs(query).get("query", [""])[0]
        with self.server.lock:  # the two lists stay in step (queries come concurrently)
            self.server.queries.append(asked)
            self.server.headers.append(dict(self.headers.items()))
        token = self.server.token
        if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
            self._send(401, {"status": "error", "errorType": "unauthorized", "error": "token"})
            return
        answer = self.server.answers.get(asked, self.server.answer)
        if isinstance(answer, int):
            self._send(answer, {"status": "error", "errorType": "internal", "error": "boom"})
        elif answer is None:
            self._send(200, {"status": "success", "data": {"resultType": "vector", "result": []}})
        else:
            self._send(
                200,
                {
                    "status": "success",
                    "data": {
                        "resultType": "vector",
                        "result": [{"metric": {}, "value": [1_700_000_000, str(answer)]}],
                    },
                },
            )

    def _send(self, code: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class PrometheusApi(InThread, http.server.ThreadingHTTPServer):
    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        # float: that value; "NaN": NaN; None: no data; int: that HTTP error status
        self.answer: float | str | int | None = 0.0
        self.answers: dict[str, float | str | int | None] = {}  # by query, over `answer`
        self.token: str | None = None
        self.queries: list[str] = []
        self.headers: list[dict[str, str]] = []  # of each query, as received
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _TrickleHandler(socketserver.BaseRequestHandler):
    server: Trickle

    def handle(self) -> None:
        with self.server.accepted:
            self.server.accepts += 1
            self.server.accepted.notify_all()
        try:
            self.request.sendall(b"HTTP/1.1 200 OK\r\nX-Trickle: ")
            while not self.server.stopped.wait(0.5):
                self.request.sendall(b"a")
        except OSError:
            return  # the client gave up


class Trickle(InThread, socketserver.ThreadingTCPServer):
    """A listener on loopback that counts the connections it accepts and answers each
    with a header that never ends, a byte every half second: an endpoint that is slow
    forever, never silent long enough for a per-read timeout."""

    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TrickleHandler)
        self.accepts = 0
        self.accepted = threading.Condition()
        self.stopped = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def wait_accepts(self, count: int, timeout: float) -> bool:
        """Wait until `count` connections were accepted; False if not within `timeout`."""
        with self.accepted:
            return self.accepted.wait_for(lambda: self.accepts >= count, timeout)

    def stop(self) -> None:
        self.stopped.set()  # its handlers end
        super().stop()
