"""Canary analysis queries, off the reconcile workers: the one request the operator
makes to an address a tenant names, so it is bounded every way.

Only endpoints the platform allows are asked (`canary.refusal`, before any
connection); one GET over HTTP/1.0 (no redirects followed, no keep-alive), a
total deadline from connect to the last byte, a cap on the answer's size. The
queries run as asyncio tasks on the operator's event loop, a few at a time: a
reconcile asks for a verdict, gets None while the query runs ("pending") and
moves on; when the answer is in, the model is queued again and its next
reconcile takes the verdict. A slow or silent endpoint costs one socket and a
task, never a reconcile worker, so other models roll out meanwhile.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Hashable
from typing import Any

from modelsync.kube.slots import Slots
from modelsync.serving import canary

DEADLINE_SECONDS = 10.0  # connect, send, read the whole answer
BODY_LIMIT = 1024 * 1024  # an instant query's answer; a bigger one is not read
CONCURRENCY = 8  # queries in flight at once (each holds a socket)
_HEADER_LIMIT = 64 * 1024


class AnswerError(Exception):
    """The endpoint's answer could not be read (too big, malformed, cut off)."""


async def get(
    url: str, *, limit: int = BODY_LIMIT, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """GET `url` (http or https) once, with `headers` (checked by
    canary.analysis_headers); returns (status, body). No redirect is followed: a 3xx
    comes back as it is (and a token sent with it goes nowhere else)."""
    parts = urllib.parse.urlsplit(url)
    https = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    context = ssl.create_default_context() if https else None
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname=host if https else None
    )
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        writer.write(
            f"GET {target} HTTP/1.0\r\nHost: {parts.netloc}\r\nAccept: application/json\r\n"
            f"User-Agent: modelsync\r\n{extra}Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        return await _answer(reader, limit)
    finally:
        writer.close()


async def _answer(reader: asyncio.StreamReader, limit: int) -> tuple[int, bytes]:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await reader.read(4096)
        if not chunk:
            raise AnswerError("the connection closed before the headers ended")
        head += chunk
        if len(head) > _HEADER_LIMIT:
            raise AnswerError(f"headers longer than {_HEADER_LIMIT} bytes")
    head, _, body = head.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = lines[0].split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise AnswerError(f"not an HTTP answer: {lines[0][:80]!r}")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:])
    }
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise AnswerError("a chunked answer to an HTTP/1.0 request")
    length = headers.get("content-length")
    expected = int(length) if length and length.isdigit() else None
    if expected is not None and expected > limit:
        raise AnswerError(f"answer of {expected} bytes, more than the {limit} read")
    while expected is None or len(body) < expected:
        chunk = await reader.read(65536)
        if not chunk:
            break
        body += chunk
        if len(body) > limit:
            raise AnswerError(f"answer longer than the {limit} bytes read")
    return int(fields[1]), body[:expected] if expected is not None else body


class Analyses:
    """Verdicts for the reconcile threads, queried on `loop`; `wake(key)` queues the
    model again when its answer is in. Thread-safe."""

    def __init__(
        self,
        allowed: tuple[str, ...],
        loop: asyncio.AbstractEventLoop,
        wake: Callable[[Hashable], None],
        deadline: float = DEADLINE_SECONDS,
        limit: int = BODY_LIMIT,
    ) -> None:
        self.allowed = allowed
        self.loop = loop
        self.wake = wake
        self.deadline = deadline
        self.limit = limit
        self._lock = threading.Lock()
        self._running: dict[Hashable, tuple[Hashable, concurrent.futures.Future[canary.Verdict]]]
        self._running = {}
        # Shared by namespace (kube/shares.py): one tenant's slow queries hold at most the
        # slots they had while another tenant's wait.
        self._slots = Slots(loop, CONCURRENCY)

    def started(self, key: Hashable, attempt: Hashable) -> bool:
        """This `attempt`'s queries were started (and their verdict not taken yet): the
        next `verdict` needs no headers."""
        with self._lock:
            found = self._running.get(key)
            return found is not None and found[0] == attempt

    def verdict(
        self,
        key: Hashable,
        attempt: Hashable,
        analysis: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> canary.Verdict | None:
        """The verdict of this `attempt` (a step of one revision) of `key`'s analysis (all
        its queries, each with its threshold), or None while they run. A refused URL is
        judged at once, with no connection: nor are `headers` ever sent to it."""
        queries = canary.queries_of(analysis)
        refused = canary.refusal(str(analysis["prometheusURL"]), self.allowed)
        if refused is not None:
            return canary.combine([canary.unanswered(query, refused) for query in queries])
        with self._lock:
            running = self._running.get(key)
            if running is not None and running[0] == attempt:
                if not running[1].done():
                    return None
                del self._running[key]
                return running[1].result()
            if running is not None:
                running[1].cancel()  # an answer for a step or revision that is over
            future = asyncio.run_coroutine_threadsafe(
                self._queries(_namespace(key), queries, dict(headers or {})), self.loop
            )
            self._running[key] = (attempt, future)
        future.add_done_callback(lambda done: None if done.cancelled() else self.wake(key))
        return None

    def forget(self, key: Hashable) -> None:
        """The model is gone: drop its query."""
        with self._lock:
            running = self._running.pop(key, None)
        if running is not None:
            running[1].cancel()

    async def _queries(
        self, namespace: str, queries: list[dict[str, Any]], headers: dict[str, str]
    ) -> canary.Verdict:
        verdicts = await asyncio.gather(
            *(self._query(namespace, query, headers) for query in queries)
        )
        return canary.combine(list(verdicts))

    async def _query(
        self, namespace: str, analysis: dict[str, Any], headers: dict[str, str]
    ) -> canary.Verdict:
        url = canary.query_url(analysis)
        turn = self._slots.join(namespace)
        try:
            await self._slots.wait(turn)
            try:
                status, body = await asyncio.wait_for(
                    get(url, limit=self.limit, headers=headers), self.deadline
                )
            except TimeoutError:
                return canary.unanswered(
                    analysis, f"Prometheus did not answer within {self.deadline:g}s"
                )
            except AnswerError as error:
                return canary.unanswered(analysis, f"Prometheus's answer refused: {error}")
            except (OSError, ValueError, UnicodeError) as error:
                return canary.unanswered(analysis, f"Prometheus unreachable ({error})")
        finally:
            self._slots.leave(turn)
        return canary.judge_answer(analysis, status, body)


def _namespace(key: Hashable) -> str:
    """The namespace of a model's key ((kind, namespace, name)); "" for any other key."""
    return str(key[1]) if isinstance(key, tuple) and len(key) == 3 else ""
