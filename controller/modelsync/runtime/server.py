"""The operator's HTTP server: /metrics, /healthz, /readyz and /hooks/{provider}/{ns}/{name}.

It runs on a thread and an event loop of its own from the moment the process
starts: a standby replica answers its probes and scrapes too, and a stuck
operator loop shows in /healthz instead of silencing it. Webhooks reach the
operator's work queue through its loop (thread-safe).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Hashable
from typing import Any, Protocol

import kubernetes
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modelsync.api import constants as c
from modelsync.gitops import webhooks
from modelsync.kube.cache import ObjectCache
from modelsync.runtime import probes
from modelsync.runtime.settings import OperatorSettings
from modelsync.telemetry import metrics

log = logging.getLogger(__name__)

API_CHECK_SECONDS = 5.0


class OperatorView(Protocol):
    """What the server reads of the running operator (operator.Operator): a protocol, so
    that the server does not import the module that starts it."""

    settings: OperatorSettings
    cache: ObjectCache
    health: probes.Health

    def accepts_work(self) -> bool: ...

    def enqueue_threadsafe(self, key: Hashable) -> None: ...

    def webhook_token(self, ms: dict[str, Any]) -> bytes | None: ...

    def webhook_target(self, namespace: str, name: str) -> tuple[bool, dict[str, Any] | None]: ...

    def uncached_modelsync(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def hand_over(self, ms: dict[str, Any]) -> None: ...


class HttpServer:
    def __init__(self, runtime: OperatorView, api: kubernetes.client.ApiClient) -> None:
        self.runtime = runtime
        self.api = api
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._runner: web.AppRunner | None = None
        self.replays = webhooks.ReplayWindow()  # touched only on the server's loop
        self._reading = asyncio.Semaphore(webhooks.MAX_READING)  # bodies read at once

    def start(self) -> HttpServer:
        """Bind and serve; raises (in the caller's thread) when the port cannot be bound."""
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(timeout=10)
            self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as error:  # reported to start()
            self._error = error
            self._started.set()
            return
        self._started.set()
        checker = self.loop.create_task(self._check_api())
        self.loop.run_forever()
        checker.cancel()
        self.loop.run_until_complete(asyncio.gather(checker, return_exceptions=True))
        self.loop.close()

    async def _serve(self) -> None:
        app = web.Application(client_max_size=webhooks.MAX_BODY_BYTES)
        app.add_routes(
            [
                web.get("/metrics", self._metrics),
                web.get("/healthz", self._healthz),
                web.get("/readyz", self._readyz),
                web.post("/hooks/{provider}", self._gone),
                web.post("/hooks/{provider}/{namespace}/{name}", self._hook),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        settings = self.runtime.settings
        await web.TCPSite(self._runner, settings.http_host, settings.http_port).start()

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self.loop.stop()

    async def _check_api(self) -> None:
        """Readiness needs the API server: ask for its version every few seconds."""
        versions = kubernetes.client.VersionApi(self.api)
        health = self.runtime.health
        while True:
            try:
                await self.loop.run_in_executor(
                    None, lambda: versions.get_code(_request_timeout=API_CHECK_SECONDS)
                )
                health.api_answered()
            except Exception as error:  # any failure is "not connected"
                health.api_failed(type(error).__name__)
            await asyncio.sleep(API_CHECK_SECONDS)

    # ------------------------------------------------------------------ routes

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(metrics.REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        alive, why = probes.liveness(self.runtime.health, time.monotonic())
        return web.Response(status=200 if alive else 503, text=why)

    async def _readyz(self, _: web.Request) -> web.Response:
        ready, why = probes.readiness(self.runtime.health, time.monotonic())
        return web.Response(status=200 if ready else 503, text=why)

    async def _gone(self, request: web.Request) -> web.Response:
        """The pre-0.2 path named no ModelSync, so its body had to be parsed to find one."""
        provider = request.match_info["provider"]
        known = provider if provider in webhooks.PROVIDERS else "unknown"
        metrics.WEBHOOKS.labels(provider=known, result="gone").inc()
        new = webhooks.route(provider if known != "unknown" else "<provider>")
        return web.json_response(
            {"error": f"this path is gone: point the git host at {new}", "use": new}, status=410
        )

    async def _hook(self, request: web.Request) -> web.Response:
        provider = request.match_info["provider"]
        status, answer = await self._receive(
            provider, request.match_info["namespace"], request.match_info["name"], request
        )
        result = _RESULTS.get(status, "bad-request")
        if status == 202 and not answer.get("queued"):
            result = "duplicate" if answer.get("duplicate") else "ignored"
        known = provider if provider in webhooks.PROVIDERS else "unknown"
        metrics.WEBHOOKS.labels(provider=known, result=result).inc()
        return web.json_response(answer, status=status)

    @staticmethod
    def _refused(
        provider: str, namespace: str, name: str, answer: tuple[int, dict[str, Any]]
    ) -> tuple[int, dict[str, Any]]:
        log.warning(
            "webhook %s for %s/%s: not authenticated",
            provider,
            webhooks.loggable(namespace),
            webhooks.loggable(name),
        )
        return answer

    async def _receive(  # noqa: C901 - each refusal of a delivery, in order
        self, provider: str, namespace: str, name: str, request: web.Request
    ) -> tuple[int, dict[str, Any]]:
        """A push notification for one ModelSync: authenticated with that ModelSync's token
        before the body is parsed, then queued when it is for the repository and ref the
        ModelSync follows."""
        runtime = self.runtime
        if provider not in webhooks.PROVIDERS:
            return 404, {"error": f"unknown provider {provider!r}"}
        if (request.content_length or 0) > webhooks.MAX_BODY_BYTES:
            return 413, {"error": "body too large"}
        if runtime.health.role != probes.ROLE_LEADER or not runtime.accepts_work():
            return 503, {"error": "standby: another replica leads and receives webhooks"}
        # From the watch, never the API: a name that does not exist costs no request.
        # Known by name alone: listed at start-up, its watch event not in yet (a replica
        # that has just taken the lead: read once, its first sync follows).
        known, ms = runtime.webhook_target(namespace, name)
        if known and ms is None:
            ms = await self.loop.run_in_executor(None, runtime.uncached_modelsync, namespace, name)
        token = await self.loop.run_in_executor(None, runtime.webhook_token, ms) if ms else None
        # One answer for "no such ModelSync", "no webhook Secret" and "wrong signature":
        # the sender learns nothing about which namespaces and ModelSyncs exist. GitLab's
        # token is a header: checked before a byte of the body is read.
        unauthorized = 401, {"error": "signature or token does not match"}
        if provider == "gitlab" and not (
            token and webhooks.authentic(provider, request.headers, b"", token)
        ):
            return self._refused(provider, namespace, name, unauthorized)
        try:
            async with asyncio.timeout(webhooks.BODY_SECONDS), self._reading:
                body = await _read_body(request, webhooks.MAX_BODY_BYTES + 1)
        except TimeoutError:
            return 408, {"error": f"the body did not arrive within {webhooks.BODY_SECONDS:.0f}s"}
        if len(body) > webhooks.MAX_BODY_BYTES:
            return 413, {"error": "body too large"}
        if (
            ms is None
            or token is None
            or not webhooks.authentic(provider, request.headers, body, token)
        ):
            return self._refused(provider, namespace, name, unauthorized)
        if webhooks.is_ping(provider, request.headers):
            return 200, {"pong": True}
        delivery = webhooks.delivery_id(provider, request.headers)
        if delivery and not self.replays.first_time((namespace, name, delivery), time.monotonic()):
            return 202, {"queued": [], "duplicate": True}
        try:
            push = webhooks.parse(provider, body)
        except webhooks.BadRequestError as error:
            return 400, {"error": str(error)}
        if not webhooks.matching(push, [ms]):
            return 202, {"queued": []}
        if _shard(ms) != runtime.settings.shard:  # another shard's, handed over
            await self.loop.run_in_executor(None, runtime.hand_over, ms)
            return 202, {"queued": [f"{namespace}/{name}"], "shard": _shard(ms)}
        runtime.enqueue_threadsafe((c.MODELSYNC_KIND, namespace, name))
        return 202, {"queued": [f"{namespace}/{name}"]}


async def _read_body(request: web.Request, limit: int) -> bytes:
    """Up to `limit` bytes of the body. One read returns what has arrived so far, which
    for a git host's push (a few KiB, Gitea's) can be its first part only: the signature
    of a part never matches."""
    body = bytearray()
    while len(body) < limit:
        chunk = await request.content.read(limit - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


def _shard(ms: dict[str, Any]) -> str:
    return str(((ms.get("metadata") or {}).get("labels") or {}).get(c.LABEL_SHARD) or "")


_RESULTS = {
    200: "ping",
    202: "queued",
    400: "bad-request",
    401: "unauthorized",
    404: "unknown-provider",
    408: "timeout",
    413: "too-large",
    410: "gone",
    503: "standby",
}
