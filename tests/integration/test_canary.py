"""Canary rollouts with metric analysis against a Prometheus query API on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import AppsV1Api

from modelsync.api import constants as c
from tests.conftest import LocalCluster
from tests.integration.test_rollback import rolled_back
from tests.kube import dict_condition, wait_for
from tests.models import Models, manifest, ready_on
from tests.promserver import PrometheusApi


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
