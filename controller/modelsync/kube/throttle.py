"""Client-side rate limiting of Kubernetes API requests, as client-go does it.

A token bucket (QPS, burst) stands before every request the operator's client
makes, so that a 10,000-object repository queues in the operator instead of
flooding the API server; a 429 (API Priority and Fairness shedding load) is
tried again after its Retry-After. Every request, and every failure, is counted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from modelsync.telemetry import metrics

MAX_429_RETRIES = 5
RETRY_AFTER_DEFAULT = 1.0  # seconds, when a 429 names no (or a malformed) Retry-After
RETRY_AFTER_CAP = 30.0  # a server asking for longer is asked again after this


class TokenBucket:
    """`qps` tokens a second, at most `burst` saved up; take() says how long to wait."""

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError(f"need qps > 0 and burst >= 1, got qps={qps}, burst={burst}")
        self.qps, self.burst, self.clock = qps, burst, clock
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take one token; returns the seconds until it is really ours (0: now).
        Tokens may go negative: callers queue up in the order they asked."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.qps


def retry_after_seconds(value: str | None) -> float:
    """Retry-After as seconds (only the delta form: the API server sends no dates)."""
    try:
        seconds = float(value) if value is not None else RETRY_AFTER_DEFAULT
    except ValueError:
        seconds = RETRY_AFTER_DEFAULT
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


class ThrottledRest:
    """Wraps the client's REST layer (`ApiClient.rest_client`): rate limit, 429 retry,
    counts. Watches do not go through here (kopf has its own connection)."""

    def __init__(
        self,
        inner: Any,
        bucket: TokenBucket | None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.inner, self.bucket, self.sleep = inner, bucket, sleep

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        verb = method.lower()
        for attempt in range(MAX_429_RETRIES + 1):
            if self.bucket is not None:
                wait = self.bucket.take()
                if wait > 0:
                    metrics.API_THROTTLED_SECONDS.labels(cause="rate-limit").inc(wait)
                    self.sleep(wait)
            metrics.API_REQUESTS.labels(verb=verb).inc()
            try:
                response = self.inner.request(method, url, *args, **kwargs)
            except Exception:
                metrics.API_ERRORS.labels(verb=verb, code="connection").inc()
                raise
            status = int(response.status)
            if status < 400 or (status == 404 and verb == "get"):
                return response  # a GET of what does not exist is an answer, not a failure
            metrics.API_ERRORS.labels(verb=verb, code=str(status)).inc()
            if status != 429 or attempt == MAX_429_RETRIES:
                return response
            delay = retry_after_seconds(response.getheader("Retry-After"))
            response.read()  # give the connection back to the pool
            metrics.API_THROTTLED_SECONDS.labels(cause="retry-after").inc(delay)
            self.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns on its last attempt

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # pool_manager, close(), ...
