"""Client-side rate limiting: the token bucket, Retry-After, and 429s retried by a real
Kubernetes client against a loopback HTTP server that sheds load."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator

import kubernetes
import pytest

from modelsync.kube import throttle
from modelsync.telemetry import metrics

CONFIG_MAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_paces_at_qps() -> None:
    clock = Clock()
    bucket = throttle.TokenBucket(qps=10, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0, 0, 0]
    # Each further request waits one more tenth of a second: they queue in order.
    assert bucket.take() == pytest.approx(0.1)
    assert bucket.take() == pytest.approx(0.2)
    clock.now += 1.0  # a quiet second refills, but never beyond the burst
    assert [bucket.take() for _ in range(3)] == [0, 0, 0]
    assert bucket.take() > 0


def test_bucket_rate_over_many_requests() -> None:
    clock = Clock()
    bucket = throttle.TokenBucket(qps=50, burst=100, clock=clock)
    waits = [bucket.take() for _ in range(10_100)]
    # 10,000 requests past the burst take 200 s at 50 per second.
    assert waits[-1] == pytest.approx(200.0)


@pytest.mark.parametrize(("qps", "burst"), [(0, 1), (-1, 5), (10, 0)])
def test_bucket_refuses_nonsense(qps: float, burst: int) -> None:
    with pytest.raises(ValueError, match="qps > 0"):
        throttle.TokenBucket(qps, burst)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), ("0", 0.0), (None, 1.0), ("soon", 1.0), ("-4", 0.0), ("9999", 30.0)],
)
def test_retry_after(header: str | None, seconds: float) -> None:
    assert throttle.retry_after_seconds(header) == seconds


class Shedding(http.server.ThreadingHTTPServer):
    """Answers the first `refusals` POSTs with 429 + Retry-After, then a ConfigMap. (The
    client retries a GET's 429 itself; writes are ours to retry.)"""

    def __init__(self, refusals: int, retry_after: str) -> None:
        self.refusals, self.retry_after = refusals, retry_after
        self.times: list[float] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Shedding

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.server.times.append(time.monotonic())
        if len(self.server.times) <= self.server.refusals:
            body = b'{"kind":"Status","code":429,"reason":"TooManyRequests"}'
            self.send_response(429)
            self.send_header("Retry-After", self.server.retry_after)
        else:
            body = json.dumps(
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
            ).encode()
            self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def shedding(request: pytest.FixtureRequest) -> Iterator[Shedding]:
    refusals, retry_after = request.param
    server = Shedding(refusals, retry_after)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _client(
    server: Shedding, qps: float | None = None, burst: int = 1
) -> kubernetes.client.ApiClient:
    config = kubernetes.client.Configuration()
    config.host = f"http://127.0.0.1:{server.server_address[1]}"
    client = kubernetes.client.ApiClient(config)
    bucket = throttle.TokenBucket(qps, burst) if qps else None
    client.rest_client = throttle.ThrottledRest(client.rest_client, bucket)
    return client


@pytest.mark.parametrize("shedding", [(2, "1")], indirect=True)
def test_429_is_retried_after_retry_after(shedding: Shedding) -> None:
    before = _sample("modelsync_api_errors_total", verb="post", code="429")
    found = kubernetes.client.CoreV1Api(_client(shedding)).create_namespaced_config_map(
        "d", CONFIG_MAP
    )
    assert found.metadata.name == "x"
    assert len(shedding.times) == 3
    gaps = [b - a for a, b in zip(shedding.times, shedding.times[1:], strict=False)]
    assert all(gap >= 0.95 for gap in gaps), gaps  # Retry-After: 1 honoured each time
    assert _sample("modelsync_api_errors_total", verb="post", code="429") == before + 2


@pytest.mark.parametrize("shedding", [(100, "0")], indirect=True)
def test_429_gives_up_after_a_few_tries(shedding: Shedding) -> None:
    with pytest.raises(kubernetes.client.ApiException) as raised:
        kubernetes.client.CoreV1Api(_client(shedding)).create_namespaced_config_map("d", CONFIG_MAP)
    assert raised.value.status == 429
    assert len(shedding.times) == throttle.MAX_429_RETRIES + 1


@pytest.mark.parametrize("shedding", [(0, "0")], indirect=True)
def test_requests_are_paced_by_the_bucket(shedding: Shedding) -> None:
    api = kubernetes.client.CoreV1Api(_client(shedding, qps=20, burst=2))
    started = time.monotonic()
    for _ in range(12):
        api.create_namespaced_config_map("d", CONFIG_MAP)
    # 2 at once, then 10 at 20 a second: at least half a second.
    assert time.monotonic() - started >= 0.45


def _sample(name: str, **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name, labels)
    return value or 0.0
