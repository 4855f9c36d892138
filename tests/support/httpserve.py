"""A test server on loopback that serves from a thread of its own, started and stopped
by the test (`start()` and `stop()`, or `with server:`): the Prometheus query API, the
notification receivers, a git host's commit-status API, the git smart-HTTP server."""

from __future__ import annotations

import socketserver
import threading
from typing import Self


class InThread(socketserver.BaseServer):
    """Mixed in before a threading socketserver class (`class S(InThread,
    ThreadingHTTPServer)`): its requests are served from a daemon thread, and each
    request's handler too, so a test that ends never waits on a client."""

    daemon_threads = True
    _thread: threading.Thread | None = None

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self.serve_forever, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
