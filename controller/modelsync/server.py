"""The operator's HTTP server: /metrics, /healthz, /readyz and /hooks/{provider}.

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
from typing import TYPE_CHECKING, Any

import kubernetes
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modelsync import constants as c
from modelsync import metrics, probes, webhooks

if TYPE_CHECKING:
    from modelsync.operator import Runtime

log = logging.getLogger(__name__)

API_CHECK_SECONDS = 5.0


class HttpServer:
    def __init__(self, runtime: Runtime, api: kubernetes.client.ApiClient) -> None:
        self.runtime = runtime
        self.api = api
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._runner: web.AppRunner | None = None

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
                web.post("/hooks/{provider}", self._hook),
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

    async def _hook(self, request: web.Request) -> web.Response:
        provider = request.match_info["provider"]
        status, answer = await self._receive(provider, request)
        result = _RESULTS.get(status, "bad-request")
        if status == 202 and not answer.get("queued"):
            result = "ignored"
        known = provider if provider in webhooks.PROVIDERS else "unknown"
        metrics.WEBHOOKS.labels(provider=known, result=result).inc()
        return web.json_response(answer, status=status)

    async def _receive(self, provider: str, request: web.Request) -> tuple[int, dict[str, Any]]:
        """A push notification: queue a sync of every ModelSync it authenticates for."""
        runtime = self.runtime
        if provider not in webhooks.PROVIDERS:
            return 404, {"error": f"unknown provider {provider!r}"}
        if (request.content_length or 0) > webhooks.MAX_BODY_BYTES:
            return 413, {"error": "body too large"}
        body = await request.content.read(webhooks.MAX_BODY_BYTES + 1)
        if len(body) > webhooks.MAX_BODY_BYTES:
            return 413, {"error": "body too large"}
        if webhooks.is_ping(provider, request.headers):
            return 200, {"pong": True}
        if runtime.health.role != probes.ROLE_LEADER or not runtime.accepts_work():
            return 503, {"error": "standby: another replica leads and receives webhooks"}
        try:
            push = webhooks.parse(provider, body)
        except webhooks.BadRequestError as error:
            return 400, {"error": str(error)}
        syncs = [
            ms
            for key in runtime.cache.names(c.MODELSYNC_KIND)
            if (ms := runtime.cache.get(c.MODELSYNC_KIND, *key)) is not None
        ]
        candidates = webhooks.matching(push, syncs)
        if not candidates:
            return 202, {"queued": []}
        accepted = await self.loop.run_in_executor(
            None,
            webhooks.verified,
            provider,
            dict(request.headers),
            body,
            candidates,
            runtime.webhook_token,
        )
        if not accepted:
            log.warning(
                "webhook %s for %s: signature does not match any ModelSync's token",
                provider,
                push.urls[0],
            )
            return 401, {"error": "signature or token does not match"}
        queued = []
        for ms in accepted:
            key = (c.MODELSYNC_KIND, ms["metadata"]["namespace"], ms["metadata"]["name"])
            runtime.enqueue_threadsafe(key)
            queued.append(f"{key[1]}/{key[2]}")
        return 202, {"queued": queued}


_RESULTS = {
    200: "ping",
    202: "queued",
    400: "bad-request",
    401: "unauthorized",
    404: "unknown-provider",
    413: "too-large",
    503: "standby",
}
