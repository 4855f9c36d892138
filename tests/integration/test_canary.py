"""Canary rollouts with metric analysis against a Prometheus query API on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import AppsV1Api, CoreV1Api, V1ObjectMeta, V1Secret

from modelsync.api import constants as c
from tests.integration.test_rollback import rolled_back
from tests.support.cluster import LocalCluster
from tests.support.kube import dict_condition, wait_for
from tests.support.models import Models, manifest, ready_on
from tests.support.operatorproc import spawn_operator
from tests.support.promserver import PrometheusApi


@pytest.fixture
def prometheus(analysis_ports: tuple[int, int]) -> Iterator[PrometheusApi]:
    """On the port the shared operator's setting analysis_endpoints allows."""
    server = PrometheusApi(analysis_ports[0]).start()
    yield server
    server.stop()


def canary_v1(
    models: Models, prometheus_url: str, failure_limit: int = 0, inconclusive: str = "Hold"
) -> None:
    body = manifest("iris", version="1", replicas=4)
    body["spec"]["rollout"] = {
        "strategy": "Canary",
        "progressDeadlineSeconds": 30,
        "steps": [{"weight": 25}, {"weight": 50, "pauseSeconds": 1}],
        "analysis": {
            "prometheusURL": prometheus_url,
            "query": "error_rate{model='iris'}",
            "threshold": 0.05,
            "intervalSeconds": 1,
            "failureLimit": failure_limit,
            "inconclusive": inconclusive,
        },
    }
    models.create(body)
    models.wait("iris", ready_on("1"))


def canary_state(md: dict[str, Any] | None) -> dict[str, Any]:
    return dict((md or {}).get("status", {}).get("canary") or {})


def test_canary_that_passes_analysis_is_promoted(
    models: Models, local_cluster: LocalCluster, namespace: str, prometheus: PrometheusApi
) -> None:
    prometheus.answer = 0.01
    canary_v1(models, prometheus.url)
    apps = AppsV1Api(local_cluster.api)
    models.patch("iris", {"spec": {"model": {"version": "2"}}})
    # First step: one canary pod of four, the stable version keeps three.
    wait_for(
        apps.list_namespaced_deployment,
        "iris-canary",
        lambda d: d is not None and d.spec.replicas == 1,
        namespace=namespace,
        timeout=30,
    )
    md = models.wait("iris", ready_on("2"), timeout=60)
    assert md["status"]["stableSpecHash"] == md["status"]["specHash"]
    assert "canary" not in md["status"]
    assert md["status"]["history"][0]["result"] == c.HISTORY_SUCCEEDED
    wait_for(
        apps.list_namespaced_deployment,
        "iris-canary",
        lambda d: d is None,
        namespace=namespace,
        timeout=30,
    )
    deployment = apps.read_namespaced_deployment("iris", namespace)
    assert deployment.spec.replicas == 4
    assert deployment.spec.template.metadata.labels[c.LABEL_MODEL_VERSION] == "2"
    assert "error_rate{model='iris'}" in prometheus.queries


def test_canary_that_fails_analysis_is_rolled_back(
    models: Models, local_cluster: LocalCluster, namespace: str, prometheus: PrometheusApi
) -> None:
    prometheus.answer = 0.01
    canary_v1(models, prometheus.url)
    prometheus.answer = 0.5
    models.patch("iris", {"spec": {"model": {"version": "2"}}})
    md = models.wait("iris", rolled_back, timeout=60)
    condition = dict_condition(md, c.ROLLED_BACK) or {}
    assert condition["reason"] == c.REASON_ANALYSIS_FAILED
    assert "= 0.5, wanted < 0.05" in condition["message"]
    models.wait("iris", ready_on("1"))
    apps = AppsV1Api(local_cluster.api)
    wait_for(
        apps.list_namespaced_deployment,
        "iris-canary",
        lambda d: d is None,
        namespace=namespace,
        timeout=30,
    )
    assert apps.read_namespaced_deployment("iris", namespace).spec.replicas == 4


@pytest.mark.parametrize(
    "answer", [None, "NaN", 500, "unreachable"], ids=["no-data", "nan", "http-error", "unreachable"]
)
def test_canary_holds_on_inconclusive_analysis(
    models: Models,
    local_cluster: LocalCluster,
    namespace: str,
    prometheus: PrometheusApi,
    answer: Any,
    analysis_ports: tuple[int, int],
) -> None:
    prometheus.answer = 0.01
    url = prometheus.url
    if answer == "unreachable":
        url = f"http://127.0.0.1:{analysis_ports[1]}"  # allowed, and nothing listens
    canary_v1(models, url)
    if answer != "unreachable":
        prometheus.answer = answer
    else:
        models.patch("iris", {"spec": {"rollout": {"analysis": {"prometheusURL": url}}}})
    models.patch("iris", {"spec": {"model": {"version": "2"}}})
    words = {None: "no data", "NaN": "NaN", 500: "HTTP 500", "unreachable": "unreachable"}[answer]
    md = models.wait(
        "iris",
        lambda m: words in str(canary_state(m).get("lastAnalysis")),
        timeout=30,
        describe=f"the analysis to report {words}",
    )
    # Held at the first step: not promoted, not rolled back.
    assert canary_state(md)["step"] == 0
    assert md["status"]["modelVersion"] == "1"
    assert not rolled_back(md)
    assert (dict_condition(md, c.PROGRESSING) or {}).get("reason") == c.REASON_CANARY


def test_canary_can_count_inconclusive_analysis_as_failure(
    models: Models, prometheus: PrometheusApi
) -> None:
    prometheus.answer = 0.01
    canary_v1(models, prometheus.url, inconclusive="Fail")
    prometheus.answer = None
    models.patch("iris", {"spec": {"model": {"version": "2"}}})
    md = models.wait("iris", rolled_back, timeout=60)
    condition = dict_condition(md, c.ROLLED_BACK) or {}
    assert condition["reason"] == c.REASON_ANALYSIS_FAILED
    assert "returned no data" in condition["message"]


# ------------------------------------------------------------------ several queries, a token


def headers_secret(cluster: LocalCluster, namespace: str, kind: str, token: str) -> None:
    CoreV1Api(cluster.api).create_namespaced_secret(
        namespace,
        V1Secret(
            metadata=V1ObjectMeta(name="prometheus-headers"),
            type=kind,
            string_data={"Authorization": f"Bearer {token}"},
        ),
    )


def q(namespace: str, name: str) -> str:
    """A query of this test's model alone: the shared port's server may also be asked by
    models of earlier tests whose namespaces are still going."""
    return f'{name}{{namespace="{namespace}"}}'


def answering(namespace: str, errors: float, rps: float) -> dict[str, float | str | int | None]:
    return {q(namespace, "errors"): errors, q(namespace, "rps"): rps}


def ours(prometheus: PrometheusApi, namespace: str) -> list[tuple[str, dict[str, str]]]:
    """(query, headers) of each query this test's model made."""
    asked = zip(prometheus.queries, prometheus.headers, strict=False)
    return [(query, headers) for query, headers in asked if f'"{namespace}"' in query]


def two_queries(prometheus_url: str, namespace: str, **extra: Any) -> dict[str, Any]:
    return {
        "prometheusURL": prometheus_url,
        "headersSecretRef": {"name": "prometheus-headers"},
        "queries": [
            {"name": "errors", "query": q(namespace, "errors"), "threshold": 0.05},
            {
                "name": "rps",
                "query": q(namespace, "rps"),
                "threshold": 5,
                "comparison": "GreaterThan",
            },
        ],
        "intervalSeconds": 1,
        "failureLimit": 0,
        **extra,
    }


def canary_with(models: Models, analysis: dict[str, Any], version: str = "1") -> None:
    body = manifest("iris", version=version, replicas=2)
    body["spec"]["rollout"] = {
        "strategy": "Canary",
        "progressDeadlineSeconds": 60,
        "steps": [{"weight": 50}],
        "analysis": analysis,
    }
    models.create(body)
    models.wait("iris", ready_on(version))


def test_canary_judges_every_query_with_the_token_of_its_headers_secret(
    models: Models, local_cluster: LocalCluster, namespace: str, prometheus: PrometheusApi
) -> None:
    prometheus.token = "t0ken"
    prometheus.answers = answering(namespace, 0.01, 9.0)
    headers_secret(local_cluster, namespace, c.SECRET_TYPE_ANALYSIS_HEADERS, "t0ken")
    canary_with(models, two_queries(prometheus.url, namespace))
    models.patch("iris", {"spec": {"model": {"version": "2"}}})
    md = models.wait("iris", ready_on("2"), timeout=60)
    assert md["status"]["history"][0]["result"] == c.HISTORY_SUCCEEDED
    asked = ours(prometheus, namespace)
    assert {query for query, _ in asked} == {q(namespace, "errors"), q(namespace, "rps")}
    assert {headers.get("Authorization") for _, headers in asked} == {"Bearer t0ken"}


def test_canary_refuses_a_headers_secret_of_another_type(
    models: Models, local_cluster: LocalCluster, namespace: str, prometheus: PrometheusApi
) -> None:
    # A service-account token is never sent: the analysis holds and says why.
    headers_secret(local_cluster, namespace, "Opaque", "t0ken")
    canary_with(models, two_queries(prometheus.url, namespace))
    models.patch("iris", {"spec": {"model": {"version": "2"}}})
    md = models.wait(
        "iris",
        lambda m: "has type 'Opaque'" in str(canary_state(m).get("lastAnalysis")),
        timeout=30,
        describe="the analysis to refuse the Secret",
    )
    assert f"--type={c.SECRET_TYPE_ANALYSIS_HEADERS}" in canary_state(md)["lastAnalysis"]
    assert md["status"]["modelVersion"] == "1"
    assert ours(prometheus, namespace) == []


# ------------------------------------------------------------------ after the promotion


def watching(md: dict[str, Any] | None) -> bool:
    watch = (md or {}).get("status", {}).get("postPromotion") or {}
    return ready_on("2")(md) and int(watch.get("checks") or 0) >= 1


def test_post_promotion_analysis_failure_rolls_back_to_the_previous_version(
    models: Models, local_cluster: LocalCluster, namespace: str, prometheus: PrometheusApi
) -> None:
    prometheus.answers = answering(namespace, 0.01, 9.0)
    headers_secret(local_cluster, namespace, c.SECRET_TYPE_ANALYSIS_HEADERS, "t")
    canary_with(models, two_queries(prometheus.url, namespace, postPromotionSeconds=300))
    models.patch("iris", {"spec": {"model": {"version": "2"}}})
    md = models.wait("iris", watching, timeout=60, describe="the watch after the promotion")
    assert md["status"]["postPromotion"]["previousSpec"]["model"]["version"] == "1"
    prometheus.answers[q(namespace, "errors")] = 0.5
    md = models.wait("iris", rolled_back, timeout=60)
    condition = dict_condition(md, c.ROLLED_BACK) or {}
    assert condition["reason"] == c.REASON_POST_PROMOTION_ANALYSIS_FAILED
    assert f"query {q(namespace, 'errors')!r} = 0.5, wanted < 0.05" in condition["message"]
    assert "postPromotion" not in md["status"]
    assert md["status"]["stableSpec"]["model"]["version"] == "1"
    models.wait("iris", ready_on("1"))
    deployment = AppsV1Api(local_cluster.api).read_namespaced_deployment("iris", namespace)
    assert deployment.spec.template.metadata.labels[c.LABEL_MODEL_VERSION] == "1"
    assert [h["result"] for h in md["status"]["history"]][:2] == [
        c.HISTORY_ROLLED_BACK,
        c.HISTORY_SUCCEEDED,
    ]


def test_post_promotion_watch_ends_after_its_window(
    models: Models, prometheus: PrometheusApi, local_cluster: LocalCluster, namespace: str
) -> None:
    prometheus.answers = answering(namespace, 0.01, 9.0)
    headers_secret(local_cluster, namespace, c.SECRET_TYPE_ANALYSIS_HEADERS, "t")
    canary_with(models, two_queries(prometheus.url, namespace, postPromotionSeconds=3))
    models.patch("iris", {"spec": {"model": {"version": "2"}}})
    md = models.wait(
        "iris",
        lambda m: (
            ready_on("2")(m)
            and "postPromotion" not in m["status"]
            and m["status"]["stableSpec"]["model"]["version"] == "2"
        ),
        timeout=60,
        describe="the watch to end with version 2 stable",
    )
    prometheus.answers[q(namespace, "errors")] = 0.5  # too late: the watch is over
    models.patch("iris", {"metadata": {"annotations": {"example.com/poke": "1"}}})
    md = models.wait("iris", ready_on("2"))
    assert not rolled_back(md)


def test_post_promotion_watch_survives_an_operator_restart(
    local_cluster: LocalCluster, own_namespace: str, prometheus: PrometheusApi
) -> None:
    models = Models(local_cluster, own_namespace)
    prometheus.answers = answering(own_namespace, 0.01, 9.0)
    headers_secret(local_cluster, own_namespace, c.SECRET_TYPE_ANALYSIS_HEADERS, "t")
    first = own_operator(local_cluster, own_namespace, prometheus.url)
    try:
        canary_with(models, two_queries(prometheus.url, own_namespace, postPromotionSeconds=300))
        models.patch("iris", {"spec": {"model": {"version": "2"}}})
        md = models.wait("iris", watching, timeout=60, describe="the watch after the promotion")
    finally:
        first.kill()
        first.wait(10)
    started = md["status"]["postPromotion"]["startedAt"]
    prometheus.answers[q(own_namespace, "errors")] = 0.5  # goes bad while no operator runs
    second = own_operator(local_cluster, own_namespace, prometheus.url)
    try:
        md = models.wait("iris", rolled_back, timeout=60)
    finally:
        second.terminate()
        second.wait(10)
    condition = dict_condition(md, c.ROLLED_BACK) or {}
    assert condition["reason"] == c.REASON_POST_PROMOTION_ANALYSIS_FAILED
    # The second operator resumed the watch the first had started (its start kept).
    assert "into its 300s watch" in condition["message"]
    history = md["status"]["history"]
    assert history[0]["result"] == c.HISTORY_ROLLED_BACK
    assert started <= history[0]["time"]


def own_operator(cluster: LocalCluster, namespace: str, prometheus_url: str) -> Any:
    return spawn_operator(
        cluster.kubeconfig,
        "-n",
        namespace,
        "--http-port",
        "0",
        "--log-level",
        "WARNING",
        "--analysis-endpoint",
        prometheus_url,
    )
