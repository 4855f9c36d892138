"""Canary analysis URLs: only the platform's endpoints, matched exactly; answers bounded."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from modelsync.serving import analysis
from modelsync.serving.canary import Result, judge_answer, parse_endpoint, refusal
from tests.support.promserver import PrometheusApi, Trickle

ALLOWED = ("http://prometheus.monitoring:9090", "https://metrics.example.org:443")


@pytest.mark.parametrize(
    "url",
    [
        "http://prometheus.monitoring:9090",
        "http://prometheus.monitoring:9090/",
        "http://PROMETHEUS.monitoring:9090/prefix",
        "https://metrics.example.org",
        "https://metrics.example.org:443/api/",
    ],
)
def test_security_analysis_allowed_urls(url: str) -> None:
    assert refusal(url, ALLOWED) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://prometheus.monitoring",  # port 80, not 9090
        "https://prometheus.monitoring:9090",  # another scheme
        "http://prometheus.monitoring:9091",
        "http://prometheus.monitoring.:9090",
        "http://198.18.0.1:9090",
        "http://169.254.169.254/latest/meta-data",
        "http://prometheus.monitoring:9090@127.0.0.1:6443/",
        "http://user:pw@prometheus.monitoring:9090/",
        "http://prometheus.monitoring:9090/?x=1",
        "http://prometheus.monitoring:9090/#frag",
        "http://prometheus.monitoring:99999/",
        "file:///etc/passwd",
        "gopher://prometheus.monitoring:9090/",
    ],
)
def test_security_analysis_refused_urls(url: str) -> None:
    why = refusal(url, ALLOWED)
    assert why is not None
    assert "refused before any connection" in why
    assert "analysis_endpoints" in why
    assert "--analysis-endpoint" in why


def test_security_analysis_nothing_is_allowed_by_default() -> None:
    assert "(none)" in str(refusal("http://prometheus.monitoring:9090", ()))


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("http://Prometheus.monitoring:9090", "http://prometheus.monitoring:9090"),
        ("https://metrics.example.org", "https://metrics.example.org:443"),
        ("http://[::1]:9090/", "http://[::1]:9090"),
    ],
)
def test_security_analysis_endpoint_setting_is_normalised(text: str, endpoint: str) -> None:
    assert parse_endpoint(text) == endpoint


@pytest.mark.parametrize(
    "text", ["prometheus:9090", "http://p:9090/api", "http://u@p:9090", "ftp://p:21"]
)
def test_security_analysis_endpoint_setting_refuses_what_is_not_an_origin(text: str) -> None:
    with pytest.raises(ValueError, match="scheme://host"):
        parse_endpoint(text)


def test_security_analysis_redirect_is_not_followed() -> None:
    verdict = judge_answer({"query": "q", "threshold": 1}, 302, b"")
    assert verdict.result is Result.INCONCLUSIVE
    assert "HTTP 302 (redirects are not followed)" in verdict.message


class _Redirect(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", "http://127.0.0.1:1/")
        self.end_headers()


@pytest.fixture
def prometheus() -> Iterator[PrometheusApi]:
    server = PrometheusApi().start()
    yield server
    server.stop()


def _verdict(url: str, **limits: Any) -> Any:
    """One analysis through `Analyses`, on an event loop of this test's own."""

    async def run() -> Any:
        woken = asyncio.Event()
        loop = asyncio.get_running_loop()
        endpoint = parse_endpoint(url)

        def wake(_: object) -> None:
            loop.call_soon_threadsafe(woken.set)

        analyses = analysis.Analyses((endpoint,), loop, wake, **limits)
        spec = {"prometheusURL": url, "query": "q", "threshold": 0.5}
        assert analyses.verdict("key", 1, spec) is None  # pending: off the caller's thread
        await asyncio.wait_for(woken.wait(), 30)
        return analyses.verdict("key", 1, spec)

    return asyncio.run(run())


def test_security_analysis_query_answers(prometheus: PrometheusApi) -> None:
    prometheus.answer = 0.1
    verdict = _verdict(prometheus.url)
    assert verdict.result is Result.PASS, verdict.message


def test_security_analysis_answer_larger_than_the_cap_is_not_read(
    prometheus: PrometheusApi,
) -> None:
    prometheus.answer = 0.1
    verdict = _verdict(prometheus.url, limit=16)
    assert verdict.result is Result.INCONCLUSIVE
    assert "more than the 16 read" in verdict.message


def test_security_analysis_endpoint_that_trickles_forever_hits_the_deadline() -> None:
    server = Trickle().start()
    try:
        verdict = _verdict(server.url, deadline=1.0)
    finally:
        server.stop()
    assert verdict.result is Result.INCONCLUSIVE
    assert "did not answer within 1s" in verdict.message


def test_security_analysis_redirect_from_the_endpoint_is_returned_not_followed() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        verdict = _verdict(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert "HTTP 302 (redirects are not followed)" in verdict.message
