"""Analysis with several queries, request headers from a Secret, and the watch after a
promotion (serving/canary.py, serving/analysis.py), without a cluster. The queries go
to tests/support/promserver.py, a real HTTP server on loopback speaking the query API."""

from __future__ import annotations

import asyncio
import base64
import datetime
from collections.abc import Iterator
from typing import Any

import pytest

from modelsync.api import constants as c
from modelsync.api import schemas
from modelsync.api.manifest import Manifest
from modelsync.api.modeldeployment import Analysis, AnalysisQuery, parse_spec, parse_status
from modelsync.serving import analysis
from modelsync.serving.canary import (
    Result,
    Verdict,
    analysis_headers,
    combine,
    parse_endpoint,
    queries_of,
    watch_due,
    watch_look,
    watch_start,
)
from tests.support.promserver import PrometheusApi

T0 = datetime.datetime(2026, 12, 1, 8, 0, tzinfo=datetime.UTC)
WATCHED = Analysis(
    "http://198.18.0.1:9090", "q", 0.5, interval_seconds=10, post_promotion_seconds=60
)
PASS, FAIL = Verdict(Result.PASS, "ok"), Verdict(Result.FAIL, "q = 0.9, wanted < 0.5")


def later(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def secret(kind: str | None, **data: str) -> dict[str, Any]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"type": kind, "data": encoded} if kind else {"data": encoded}


# ------------------------------------------------------------------ several queries


def test_one_query_or_several_each_with_its_threshold() -> None:
    one: Manifest = {"prometheusURL": "http://p:9090", "query": "q", "threshold": 1}
    assert queries_of(one) == [
        {
            "name": "query",
            "query": "q",
            "threshold": 1,
            "comparison": "LessThan",
            "prometheusURL": "http://p:9090",
        }
    ]
    several: Manifest = {
        "prometheusURL": "http://p:9090",
        "queries": [
            {"name": "errors", "query": "e", "threshold": 0.01},
            {"name": "rps", "query": "r", "threshold": 5, "comparison": "GreaterThan"},
        ],
    }
    assert [(q["name"], q["threshold"]) for q in queries_of(several)] == [
        ("errors", 0.01),
        ("rps", 5),
    ]
    typed = parse_spec(
        {
            "model": {"name": "m", "version": "1", "uri": "s3://b/m"},
            "runtime": {"name": "mlserver"},
            "rollout": {"strategy": "Canary", "steps": [{"weight": 50}], "analysis": several},
        }
    ).rollout.analysis
    assert typed is not None
    assert typed.all_queries() == (
        AnalysisQuery("errors", "e", 0.01),
        AnalysisQuery("rps", "r", 5.0, "GreaterThan"),
    )


def test_every_query_must_pass_and_a_failure_is_named_first() -> None:
    unknown = Verdict(Result.INCONCLUSIVE, "r returned no data")
    assert combine([PASS, PASS]).result is Result.PASS
    assert combine([PASS, unknown]) == unknown
    assert combine([unknown, FAIL, PASS]) == FAIL


@pytest.fixture
def prometheus() -> Iterator[PrometheusApi]:
    server = PrometheusApi().start()
    yield server
    server.stop()


def _verdict(url: str, spec: dict[str, Any], headers: dict[str, str] | None) -> Verdict:
    async def run() -> Verdict:
        woken = asyncio.Event()
        loop = asyncio.get_running_loop()

        def wake(_: object) -> None:
            loop.call_soon_threadsafe(woken.set)

        analyses = analysis.Analyses((parse_endpoint(url),), loop, wake)
        assert analyses.verdict("key", 1, spec, headers) is None
        await asyncio.wait_for(woken.wait(), 30)
        assert analyses.started("key", 1)
        found = analyses.verdict("key", 1, spec)
        assert found is not None
        return found

    return asyncio.run(run())


def test_several_queries_are_asked_and_judged_each_by_its_threshold(
    prometheus: PrometheusApi,
) -> None:
    prometheus.answers = {"errors": 0.2, "rps": 9.0}
    spec = {
        "prometheusURL": prometheus.url,
        "queries": [
            {"name": "rps", "query": "rps", "threshold": 5, "comparison": "GreaterThan"},
            {"name": "errors", "query": "errors", "threshold": 0.05},
        ],
    }
    verdict = _verdict(prometheus.url, spec, None)
    assert verdict.result is Result.FAIL
    assert verdict.message == "query 'errors' = 0.2, wanted < 0.05"
    assert sorted(prometheus.queries) == ["errors", "rps"]
    prometheus.answers["errors"] = 0.01
    assert _verdict(prometheus.url, spec, None).result is Result.PASS


def test_a_prometheus_that_needs_a_token_gets_it_from_the_headers(
    prometheus: PrometheusApi,
) -> None:
    prometheus.token, prometheus.answer = "s3cret", 0.01
    spec = {"prometheusURL": prometheus.url, "query": "q", "threshold": 0.05}
    without = _verdict(prometheus.url, spec, None)
    assert (without.result, "HTTP 401" in without.message) == (Result.INCONCLUSIVE, True)
    headers = analysis_headers(
        secret(c.SECRET_TYPE_ANALYSIS_HEADERS, Authorization="Bearer s3cret", **{"X-Org": "7"}),
        "team",
        "prom",
    )
    assert _verdict(prometheus.url, spec, headers).result is Result.PASS
    assert prometheus.headers[-1]["Authorization"] == "Bearer s3cret"
    assert prometheus.headers[-1]["X-Org"] == "7"


def test_headers_are_never_sent_to_an_endpoint_the_platform_does_not_allow(
    prometheus: PrometheusApi,
) -> None:
    async def run() -> Verdict | None:
        loop = asyncio.get_running_loop()
        analyses = analysis.Analyses(("http://127.0.0.1:1",), loop, lambda _: None)
        spec = {"prometheusURL": prometheus.url, "query": "q", "threshold": 1}
        return analyses.verdict("key", 1, spec, {"Authorization": "Bearer s3cret"})

    verdict = asyncio.run(run())
    assert verdict is not None
    assert "refused before any connection" in verdict.message
    assert prometheus.queries == []


# ------------------------------------------------------------------ the headers Secret


@pytest.mark.parametrize(
    ("given", "words"),
    [
        (None, "does not exist"),
        (secret("kubernetes.io/service-account-token", token="eyJ"), "has type"),
        (secret(None, Authorization="Bearer x"), "has type 'Opaque'"),
        (secret(c.SECRET_TYPE_GIT, Authorization="Bearer x"), "has type"),
        (secret(c.SECRET_TYPE_ANALYSIS_HEADERS, Host="evil"), "cannot be a request header"),
        (secret(c.SECRET_TYPE_ANALYSIS_HEADERS, **{"Bad Name": "x"}), "cannot be a request"),
        (secret(c.SECRET_TYPE_ANALYSIS_HEADERS, A="x\r\nHost: evil"), "line break"),
        (secret(c.SECRET_TYPE_ANALYSIS_HEADERS, A="x" * 9000), "longer than"),
    ],
    ids=[
        "missing",
        "service-account-token",
        "opaque",
        "git-credentials",
        "own-header",
        "not-a-token",
        "header-injection",
        "too-long",
    ],
)
def test_a_headers_secret_not_made_for_it_is_refused_naming_the_fix(
    given: dict[str, Any] | None, words: str
) -> None:
    with pytest.raises(ValueError, match=words) as caught:
        analysis_headers(given, "team", "prom")
    assert "Secret team/prom (spec.rollout.analysis.headersSecretRef)" in str(caught.value)
    if "has type" in words:
        assert f"--type={c.SECRET_TYPE_ANALYSIS_HEADERS}" in str(caught.value)


# ------------------------------------------------------------------ after the promotion


def test_the_watch_checks_every_interval_until_its_window_closes() -> None:
    previous: Manifest = {
        "stableSpec": {"x": 1},
        "stableSpecHash": "old",
        "stableRevision": "main@1",
    }
    state = watch_start("new", previous, T0)
    assert (state["previousSpecHash"], state["previousRevision"]) == ("old", "main@1")
    assert not watch_due(state, WATCHED, later(5))
    assert watch_look(state, WATCHED, later(5), None, 10.0).wait == 5.0
    assert watch_due(state, WATCHED, later(10))
    running = watch_look(state, WATCHED, later(10), None, 10.0)
    assert (running.state, running.wait) == (state, 11.0)  # its answer wakes the model
    checked = watch_look(state, WATCHED, later(10), PASS, 10.0)
    assert checked.state is not None
    assert (checked.state["checks"], checked.state["lastAnalysis"], checked.wait) == (1, "ok", 10)
    assert not watch_due(checked.state, WATCHED, later(15))
    near_end = watch_look(checked.state, WATCHED, later(55), PASS, 10.0)
    assert near_end.wait == 5.0  # wakes when the window closes
    over = watch_look(checked.state, WATCHED, later(60), None, 10.0)
    assert (over.state, over.failed) == (None, None)


def test_the_watch_fails_past_the_failure_limit() -> None:
    state = watch_start("new", {"stableSpecHash": "old"}, T0)
    once = watch_look(state, WATCHED, later(10), FAIL, 10.0)
    assert once.failed is None
    assert once.state is not None
    twice = watch_look(once.state, WATCHED, later(20), FAIL, 10.0)
    assert twice.failed is not None
    assert "failed 2 times (20s into its 60s watch)" in twice.failed
    assert FAIL.message in twice.failed


def test_a_restarted_operator_watches_only_what_is_left_of_the_window() -> None:
    state = watch_start("new", {"stableSpecHash": "old"}, T0)
    # The start is in status: a look 50 s later (a new process) still watches, 10 s more.
    assert watch_look(state, WATCHED, later(50), PASS, 10.0).wait == 10.0
    assert watch_look(state, WATCHED, later(61), None, 10.0).state is None


def test_the_watch_in_status_reads_as_typed() -> None:
    state = watch_start("new", {"stableSpec": {"x": 1}, "stableSpecHash": "old"}, T0)
    typed = parse_status({"postPromotion": state}).post_promotion
    assert typed is not None
    assert (typed.spec_hash, typed.previous_spec, typed.previous_spec_hash, typed.checks) == (
        "new",
        {"x": 1},
        "old",
        0,
    )


# ------------------------------------------------------------------ bad input, offline


def problems(analysis: dict[str, Any]) -> list[str]:
    schema = schemas.load_schemas()[(c.API_VERSION, c.MODELDEPLOYMENT_KIND)]
    manifest = {
        "apiVersion": c.API_VERSION,
        "kind": c.MODELDEPLOYMENT_KIND,
        "metadata": {"name": "iris", "namespace": "team"},
        "spec": {
            "model": {"name": "iris", "version": "1", "uri": "s3://models/iris"},
            "runtime": {"name": "mlserver"},
            "rollout": {"strategy": "Canary", "steps": [{"weight": 50}], "analysis": analysis},
        },
    }
    return [f"{p.field}: {p.message}" for p in schemas.problems(schema, manifest)]


URL = {"prometheusURL": "http://prometheus.monitoring:9090"}
QUERY = {"name": "errors", "query": "e", "threshold": 0.01}


@pytest.mark.parametrize(
    ("analysis", "words"),
    [
        ({**URL, "query": "q", "threshold": 1, "queries": [QUERY]}, "either query"),
        (URL, "either query"),
        ({**URL, "query": "q"}, "query needs a threshold"),
        ({**URL, "queries": []}, "at least one query"),
        ({**URL, "queries": [QUERY, QUERY]}, "duplicate"),
        ({**URL, "queries": [{"name": "Bad Name", "query": "q", "threshold": 1}]}, "match"),
        ({**URL, "queries": [{"name": "errors", "query": "q"}]}, "threshold"),
        ({**URL, "query": "q", "threshold": 1, "headersSecretRef": {}}, "name"),
        ({**URL, "query": "q", "threshold": 1, "postPromotionSeconds": -1}, "minimum"),
    ],
    ids=[
        "query-and-queries",
        "no-query",
        "query-without-threshold",
        "no-queries",
        "query-name-twice",
        "query-name-not-dns",
        "query-without-threshold-in-list",
        "secret-ref-without-name",
        "negative-watch",
    ],
)
def test_a_bad_analysis_is_refused_offline_naming_the_field(
    analysis: dict[str, Any], words: str
) -> None:
    found = problems(analysis)
    assert found, analysis
    assert any(words in problem for problem in found), found
    assert all(problem.startswith("spec.rollout.analysis") for problem in found), found


def test_a_good_analysis_passes_offline() -> None:
    assert problems({**URL, "queries": [QUERY], "headersSecretRef": {"name": "p"}}) == []
    assert problems({**URL, "query": "q", "threshold": 1, "postPromotionSeconds": 600}) == []
