"""A canary on the real node (issue 20, part B): real MLServer pods behind one Service,
a client in the node's network namespace making a new connection per request through
the ClusterIP (kube-proxy picks a pod per connection). At weight 25 % with 4 replicas
about a quarter of the answers come from the new version; the promotion that follows,
with the client still running, loses no request.

The step is held by its analysis (tests/support/promserver.py answering "no data") until the
client has made its requests, then released: no wall-clock pause to guess."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubernetes.client import AppsV1Api
from kubernetes.dynamic import DynamicClient

from modelsync.api import constants as c
from testcluster.objectstore import ObjectStore
from tests.integration.conftest import BUCKET
from tests.integration.real_node.test_models_real import (
    MODEL_TIMEOUT,
    SECRET,
    Client,
    explain,
    failures,
    infer_once,
    model_yaml,
    own_operator,
    service_ip,
    storage_secret,
)
from tests.support.cluster import LocalCluster, RealNode
from tests.support.kube import until, wait_for, wait_for_set
from tests.support.models import Models, ready_on
from tests.support.promserver import PrometheusApi

REQUESTS = 800  # at weight 25 %: +-7 points is 4.5 binomial standard deviations (seen:
# windows of a few hundred requests vary more than binomial on this loaded machine)
TOLERANCE = 7.0


def share_of(answers: list[dict[str, Any]], predictions: list[int]) -> float:
    return 100.0 * sum(1 for a in answers if a["answer"] == predictions) / len(answers)


def test_real_canary_sends_its_weight_and_promotes_without_losing_a_request(
    local_cluster: LocalCluster,
    real_node: RealNode,
    own_namespace: str,
    crds: list[str],
    node_images: dict[str, str],
    node_store: ObjectStore,
    trained: dict[str, tuple[bytes, list[int]]],
    tmp_path: Path,
) -> None:
    namespace = own_namespace
    for version, (body, _) in trained.items():
        node_store.put(BUCKET, f"{namespace}/iris/{version}/model.joblib", body)
    storage_secret(local_cluster, namespace, SECRET, node_store.storage_secret())
    models, apps = Models(local_cluster, namespace), AppsV1Api(local_cluster.api)
    prometheus = PrometheusApi().start()

    def spec(version: str) -> dict[str, Any]:
        uri = f"s3://{BUCKET}/{namespace}/iris/{version}"
        rollout = {
            "strategy": "Canary",
            "progressDeadlineSeconds": 600,
            "steps": [{"weight": 25}],
            "analysis": {
                "prometheusURL": prometheus.url,
                "query": "errors",
                "threshold": 0.05,
                "intervalSeconds": 1,
            },
        }
        body: dict[str, Any] = json.loads(model_yaml("iris", version, uri))
        body["spec"].update(replicas=4, rollout=rollout)
        return body

    try:
        with own_operator(
            local_cluster,
            namespace,
            node_images,
            tmp_path / "operator.log",
            "--analysis-endpoint",
            prometheus.url,
        ):
            models.create(spec("1"))
            try:
                models.wait("iris", ready_on("1"), timeout=MODEL_TIMEOUT)
            except AssertionError as error:
                explained = explain(local_cluster, real_node, namespace)
                raise AssertionError(f"{error}\n{explained}") from error
            ip, port = service_ip(local_cluster, namespace, "iris")
            assert infer_once(real_node, ip, port) == trained["1"][1]
            prometheus.answer = None  # "no data": the canary holds at 25 %
            client = Client(real_node, ip, port, tmp_path)
            try:
                client.wait_for(trained["1"][1], timeout=60)
                models.patch("iris", {"spec": spec("2")["spec"]})
                # Sized: one canary pod and three stable ones, all available.
                wait_for(
                    apps.list_namespaced_deployment,
                    "iris-canary",
                    lambda d: d is not None and (d.status.available_replicas or 0) == 1,
                    namespace=namespace,
                    timeout=MODEL_TIMEOUT,
                )
                wait_for(
                    apps.list_namespaced_deployment,
                    "iris",
                    lambda d: d.spec.replicas == 3 and (d.status.replicas or 0) == 3,
                    namespace=namespace,
                    timeout=120,
                )
                # The stable pod that made room drains (preStop) and goes: until then it
                # still answers some requests (seen: 1 in 5 for its 10 s).
                wait_for_set(
                    DynamicClient(local_cluster.api).resources.get(api_version="v1", kind="Pod"),
                    lambda pods: len(pods) == 4,
                    namespace=namespace,
                    label_selector=f"{c.LABEL_DEPLOYMENT}=iris",
                    timeout=120,
                    describe="four pods of iris, none terminating",
                )
                client.wait_for(trained["2"][1], timeout=60)  # kube-proxy routes to it
                start = len(client.answers())
                until(
                    f"{REQUESTS} answers at weight 25 %",
                    lambda: len(client.answers()) >= start + REQUESTS,
                    timeout=300,
                    interval=0.5,
                )
                measured = client.answers()[start:]
                prometheus.answer = 0.01  # the step passes: the promotion, client running
                models.wait("iris", ready_on("2"), timeout=MODEL_TIMEOUT)
                wait_for(
                    apps.list_namespaced_deployment,
                    "iris-canary",
                    lambda d: d is None,
                    namespace=namespace,
                    timeout=120,
                )
                client.wait_for(trained["2"][1], timeout=120, streak=100)
            finally:
                answers = client.stop()
    finally:
        prometheus.stop()
    share = share_of(measured, trained["2"][1])
    print(f"canary share at weight 25 %: {share:.1f} % of {len(measured)} requests")
    assert abs(share - 25.0) <= TOLERANCE, share
    assert not failures(answers), failures(answers)[:5]
    assert {json.dumps(a["answer"]) for a in answers} <= {
        json.dumps(trained["1"][1]),
        json.dumps(trained["2"][1]),
    }
    labels = apps.read_namespaced_deployment("iris", namespace).spec.template.metadata.labels
    assert labels[c.LABEL_MODEL_VERSION] == "2"
