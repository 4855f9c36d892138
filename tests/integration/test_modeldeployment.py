"""The operator serves ModelDeployments on a real cluster: create, update, delete,
drift, autoscaling, and every bad input the issue names."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import kubernetes
import pytest
from kubernetes.client import (
    AppsV1Api,
    AutoscalingV2Api,
    CoreV1Api,
)
from kubernetes.dynamic import DynamicClient

from modelsync.api import constants as c
from modelsync.runtime import operator
from modelsync.telemetry import metrics
from testcluster import stages
from tests.support.cluster import LocalCluster
from tests.support.kube import dict_condition, wait_for, wait_for_set
from tests.support.models import MD, Models, condition_is, manifest, ready_on, wait_for_event


def test_modeldeployment_becomes_ready_with_owned_serving_objects(
    models: Models, local_cluster: LocalCluster, namespace: str
) -> None:
    created = models.create(manifest("iris"))
    md = models.wait("iris", ready_on("1"))
    status = md["status"]
    assert status["endpoint"] == f"http://iris.{namespace}.svc.cluster.local:8080"
    assert (status["replicas"], status["readyReplicas"]) == (2, 2)
    assert status["currentRevision"] == f"spec:{status['specHash']}"

    apps, core = AppsV1Api(local_cluster.api), CoreV1Api(local_cluster.api)
    deployment = apps.read_namespaced_deployment("iris", namespace)
    service = core.read_namespaced_service("iris", namespace)
    for obj in (deployment, service):
        assert obj.metadata.owner_references[0].uid == created["metadata"]["uid"]
        assert obj.metadata.labels[c.LABEL_MANAGED_BY] == "modelsync"
    # The version labels the Deployment (and pods), not the Service: a bump writes no Service.
    assert deployment.metadata.labels[c.LABEL_MODEL_VERSION] == "1"
    assert c.LABEL_MODEL_VERSION not in service.metadata.labels
    assert deployment.metadata.annotations[c.ANNOTATION_SPEC_HASH] == status["specHash"]
    assert service.spec.selector == deployment.spec.selector.match_labels

    table = local_cluster.run("kubectl", "get", "md", "iris", "-n", namespace).stdout
    columns = printer_columns(table)
    assert list(columns) == [
        "NAME", "MODEL", "VERSION", "SERVING", "READY", "ROLLEDBACK", "REVISION", "AGE"
    ]  # fmt: skip
    assert columns["NAME"] == "iris"
    assert (columns["VERSION"], columns["SERVING"], columns["READY"]) == ("1", "1", "True")
    assert columns["ROLLEDBACK"] == ""  # no rollback ever: no condition
    assert columns["REVISION"] == status["currentRevision"]


def printer_columns(table: str) -> dict[str, str]:
    """A one-row `kubectl get` table by column, cut at the header's offsets (empty cells
    stay empty instead of shifting the row)."""
    header, row = table.splitlines()[:2]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    ends = [*starts[1:], max(len(header), len(row)) + 1]
    return {header[a:b].strip(): row[a:b].strip() for a, b in zip(starts, ends, strict=True)}


def test_modeldeployment_version_change_rolls_out(
    models: Models, local_cluster: LocalCluster, namespace: str
) -> None:
    models.create(manifest("iris", version="1"))
    first = models.wait("iris", ready_on("1"))
    models.patch("iris", {"spec": {"model": {"version": "2", "uri": "s3://models/iris/2"}}})
    second = models.wait("iris", ready_on("2"))
    assert second["status"]["specHash"] != first["status"]["specHash"]

    apps = AppsV1Api(local_cluster.api)
    deployment = apps.read_namespaced_deployment("iris", namespace)
    template = deployment.spec.template
    assert template.metadata.labels[c.LABEL_MODEL_VERSION] == "2"
    assert template.spec.init_containers[0].args[0] == "s3://models/iris/2"
    replica_sets = apps.list_namespaced_replica_set(namespace).items
    by_version = {
        rs.spec.template.metadata.labels[c.LABEL_MODEL_VERSION]: rs.status.replicas
        for rs in replica_sets
    }
    assert by_version == {"1": 0, "2": 2}  # a real rolling update: the old set scaled away
    # The rollout's record is its history entry (no Event: routine success).
    last = second["status"]["history"][0]  # newest first
    assert (last["modelVersion"], last["result"]) == ("2", c.HISTORY_SUCCEEDED)


def test_modeldeployment_deletion_collects_every_serving_object(
    models: Models, local_cluster: LocalCluster, namespace: str
) -> None:
    spec = {
        "autoscaling": {"minReplicas": 1, "maxReplicas": 3},
        "resources": {"requests": {"cpu": "250m"}},
    }
    body = manifest("iris")
    del body["spec"]["replicas"]
    body["spec"].update(spec)
    models.create(body)
    models.wait("iris", ready_on("1"))
    apps, core = AppsV1Api(local_cluster.api), CoreV1Api(local_cluster.api)
    hpas = AutoscalingV2Api(local_cluster.api)
    assert hpas.read_namespaced_horizontal_pod_autoscaler("iris", namespace)

    models.api.delete_namespaced_custom_object(name="iris", namespace=namespace, **MD)
    gone: Callable[[Any], bool] = lambda obj: obj is None  # noqa: E731
    for list_call in (
        apps.list_namespaced_deployment,
        core.list_namespaced_service,
        hpas.list_namespaced_horizontal_pod_autoscaler,
    ):
        wait_for(list_call, "iris", gone, namespace=namespace, timeout=60)
    pods = DynamicClient(local_cluster.api).resources.get(api_version="v1", kind="Pod")
    wait_for_set(
        pods,
        lambda items: items == [],
        namespace=namespace,
        label_selector=f"{c.LABEL_DEPLOYMENT}=iris",
        timeout=60,
        describe="the model's pods to be garbage-collected",
    )


def test_serving_drift_is_reverted_and_reported(
    models: Models, local_cluster: LocalCluster, namespace: str
) -> None:
    models.create(manifest("iris"))
    md = models.wait("iris", ready_on("1"))
    apps, core = AppsV1Api(local_cluster.api), CoreV1Api(local_cluster.api)

    def kubectl(*args: str) -> None:
        local_cluster.run("kubectl", *args)

    image = (
        apps.read_namespaced_deployment("iris", namespace).spec.template.spec.containers[0].image
    )

    def deployment_where(check: Callable[[Any], bool], describe: str) -> Any:
        return wait_for(
            apps.list_namespaced_deployment,
            "iris",
            check,
            namespace=namespace,
            timeout=30,
            describe=describe,
        )

    # Someone edits the image ...
    kubectl("set", "image", "deployment/iris", "server=evil:latest", "-n", namespace)
    deployment_where(
        lambda d: d.spec.template.spec.containers[0].image == image, "the image to be restored"
    )
    # ... scales by hand, with no autoscaler in charge ...
    kubectl("scale", "deployment/iris", "--replicas=5", "-n", namespace)
    deployment_where(lambda d: d.spec.replicas == 2, "the replica count to be restored")
    # ... adds an annotation of their own (not ours: it stays) ...
    kubectl("annotate", "deployment/iris", "example.com/owner=ops", "-n", namespace)
    # ... and deletes the Service.
    old_uid = core.read_namespaced_service("iris", namespace).metadata.uid
    kubectl("delete", "service/iris", "-n", namespace)
    wait_for(
        core.list_namespaced_service,
        "iris",
        lambda s: s is not None and s.metadata.uid != old_uid,
        namespace=namespace,
        timeout=30,
        describe="the Service to be recreated",
    )

    assert (
        apps.read_namespaced_deployment("iris", namespace).metadata.annotations["example.com/owner"]
        == "ops"
    )
    for words in (
        "Deployment iris: changed spec.template.spec.containers[server].image",
        "Deployment iris: changed spec.replicas",
        "Service iris: deleted",
    ):
        event = wait_for_event(local_cluster, namespace, "iris", c.EVENT_DRIFT_REVERTED, words)
        assert event.type == "Warning"
    assert models.wait("iris", ready_on("1"))["status"]["specHash"] == md["status"]["specHash"]


def test_serving_autoscaler_owns_the_replica_count(
    models: Models, local_cluster: LocalCluster, namespace: str
) -> None:
    body = manifest("iris")
    del body["spec"]["replicas"]
    body["spec"]["autoscaling"] = {"minReplicas": 2, "maxReplicas": 5, "targetCPUUtilization": 60}
    body["spec"]["resources"] = {"requests": {"cpu": "500m"}}
    models.create(body)
    models.wait("iris", ready_on("1"))
    hpa = AutoscalingV2Api(local_cluster.api).read_namespaced_horizontal_pod_autoscaler(
        "iris", namespace
    )
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (2, 5)
    assert hpa.spec.metrics[0].resource.target.average_utilization == 60

    apps = AppsV1Api(local_cluster.api)
    ours = [
        m
        for m in apps.read_namespaced_deployment("iris", namespace).metadata.managed_fields
        if m.manager == c.FIELD_MANAGER
    ]
    assert ours
    assert all("f:replicas" not in json.dumps(m.fields_v1.get("f:spec", {})) for m in ours)

    # The autoscaler (here: someone acting as it) scales; the operator sees it and lets it be.
    local_cluster.run("kubectl", "scale", "deployment/iris", "--replicas=4", "-n", namespace)
    models.wait(
        "iris",
        lambda md: (md or {}).get("status", {}).get("replicas") == 4,
        describe="the operator to observe 4 replicas",
    )
    assert apps.read_namespaced_deployment("iris", namespace).spec.replicas == 4


def canary(*weights: int) -> dict[str, Any]:
    return {"strategy": "Canary", "steps": [{"weight": w} for w in weights]}


BAD_SPECS: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    (
        "canary-weights-not-increasing",
        lambda s: s.update(rollout=canary(50, 20)),
        "rollout.steps weights must increase",
    ),
    (
        "canary-weight-repeated",
        lambda s: s.update(rollout=canary(20, 20, 50)),
        "rollout.steps weights must increase",
    ),
    (
        "canary-weight-above-100",
        lambda s: s.update(rollout=canary(50, 150)),
        "should be less than or equal to 100",
    ),
    (
        "canary-without-steps",
        lambda s: s.update(rollout={"strategy": "Canary"}),
        "a Canary rollout needs steps",
    ),
    (
        "progress-deadline-zero",
        lambda s: s.update(rollout={"progressDeadlineSeconds": 0}),
        "spec.rollout.progressDeadlineSeconds",
    ),
    (
        "history-limit-zero",
        lambda s: s.update(rollback={"historyLimit": 0}),
        "spec.rollback.historyLimit",
    ),
    ("missing-uri", lambda s: s["model"].pop("uri"), "spec.model.uri: Required value"),
    ("negative-replicas", lambda s: s.update(replicas=-1), "spec.replicas"),
    (
        "replicas-and-autoscaling",
        lambda s: s.update(autoscaling={"maxReplicas": 3}),
        "set spec.replicas or spec.autoscaling, not both",
    ),
    (
        "unknown-runtime",
        lambda s: s["runtime"].update(name="seldon"),
        'spec.runtime.name: Unsupported value: "seldon"',
    ),
    (
        "scheme-the-runtime-cannot-load",
        lambda s: s.update(
            runtime={"name": "triton"},
            model={"name": "m", "version": "1", "uri": "https://example.com/m.onnx"},
        ),
        "runtime triton cannot load a model from https://example.com/m.onnx",
    ),
    (
        "format-the-runtime-cannot-serve",
        lambda s: s["model"].update(format="onnx"),
        "runtime mlserver cannot serve model format onnx; it serves sklearn, xgboost",
    ),
    ("file-uri", lambda s: s["model"].update(uri="file:///etc/passwd"), "spec.model.uri"),
    (
        "link-local-uri",
        lambda s: s["model"].update(uri="https://169.254.169.254/latest/meta-data"),
        "must not point at a link-local address",
    ),
    (  # issue 29 item 10: the same address as one decimal number, and IPv4-mapped
        "link-local-uri-as-a-number",
        lambda s: s["model"].update(uri="https://2852039166/latest/meta-data"),
        "must not point at a link-local address in any spelling",
    ),
    (
        "link-local-uri-mapped",
        lambda s: s["model"].update(uri="https://[::ffff:a9fe:a9fe]/latest/meta-data"),
        "must not point at a link-local address in any spelling",
    ),
    (
        "token-as-user-name",
        lambda s: s["model"].update(uri="https://ghp_0123456789@models.example/iris"),
        "must not carry credentials",
    ),
    (
        "min-above-max",
        lambda s: (s.pop("replicas"), s.update(autoscaling={"minReplicas": 5, "maxReplicas": 2})),
        "autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
    ),
    (
        "custom-without-image",
        lambda s: s.update(runtime={"name": "custom"}),
        "runtime.image is required when runtime.name is custom",
    ),
]


@pytest.mark.parametrize(("case", "change", "words"), BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_modeldeployment_schema_violations_are_rejected_by_the_api_server(
    models: Models, case: str, change: Callable[[dict[str, Any]], object], words: str
) -> None:
    body = manifest("bad")
    change(body["spec"])
    with pytest.raises(kubernetes.client.ApiException) as rejected:
        models.create(body)
    assert rejected.value.status == 422
    message = json.loads(rejected.value.body)["message"]
    assert words in message
    assert models.list(namespace=models.namespace)["items"] == []


def test_modeldeployment_invalid_spec_keeps_the_last_good_one_serving(
    models: Models, local_cluster: LocalCluster, namespace: str
) -> None:
    models.create(manifest("iris"))
    good = models.wait("iris", ready_on("1"))
    apps = AppsV1Api(local_cluster.api)
    before = apps.read_namespaced_deployment("iris", namespace)

    # Passes the schema, cannot be served: autoscaling on CPU without a CPU request.
    models.patch(
        "iris",
        {"spec": {"replicas": None, "autoscaling": {"maxReplicas": 4}, "model": {"version": "2"}}},
    )
    invalid = models.wait("iris", condition_is(c.READY, "False", c.REASON_INVALID_SPEC))
    message = dict_condition(invalid, c.READY)["message"]  # type: ignore[index]
    assert message.startswith("spec.resources.requests.cpu: autoscaling on CPU utilization")
    after = apps.read_namespaced_deployment("iris", namespace)
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.status.available_replicas == 2
    assert (
        not AutoscalingV2Api(local_cluster.api)
        .list_namespaced_horizontal_pod_autoscaler(namespace)
        .items
    )
    warning = wait_for_event(
        local_cluster, namespace, "iris", c.EVENT_INVALID_SPEC, "spec.resources.requests.cpu"
    )
    assert warning.type == "Warning"

    models.patch("iris", {"spec": {"resources": {"requests": {"cpu": "250m"}}}})
    fixed = models.wait("iris", ready_on("2"))
    assert fixed["status"]["specHash"] != good["status"]["specHash"]


def test_modeldeployment_failed_rollout_is_degraded(models: Models) -> None:
    body = manifest(
        "broken", replicas=1, podMetadata={"labels": {stages.FAULT_LABEL: stages.NEVER_READY}}
    )
    body["spec"]["rollout"] = {"progressDeadlineSeconds": 5}
    models.create(body)
    md = models.wait(
        "broken", condition_is(c.DEGRADED, "True", c.REASON_PROGRESS_DEADLINE_EXCEEDED), timeout=90
    )
    assert condition_is(c.READY, "False", c.REASON_PROGRESS_DEADLINE_EXCEEDED)(md)
    assert condition_is(c.PROGRESSING, "False", c.REASON_PROGRESS_DEADLINE_EXCEEDED)(md)
    assert "did not become available in time" in dict_condition(md, c.READY)["message"]  # type: ignore[index]


def test_serving_resync_with_nothing_to_do_writes_nothing(
    models: Models,
    local_cluster: LocalCluster,
    namespace: str,
    running_operator: operator.Operator,
) -> None:
    models.create(manifest("iris"))
    models.wait("iris", ready_on("1"))
    apps, core = AppsV1Api(local_cluster.api), CoreV1Api(local_cluster.api)

    def versions() -> tuple[str, str, str]:
        md = models.api.get_namespaced_custom_object(name="iris", namespace=namespace, **MD)
        return (
            md["metadata"]["resourceVersion"],
            apps.read_namespaced_deployment("iris", namespace).metadata.resource_version,
            core.read_namespaced_service("iris", namespace).metadata.resource_version,
        )

    before = versions()
    unchanged = metrics.RECONCILES.labels(result="unchanged")
    count = unchanged._value.get()
    assert running_operator.loop is not None
    # Queue every ModelDeployment the operator knows and wait until all are reconciled.
    resynced = asyncio.run_coroutine_threadsafe(
        running_operator.resync_now(), running_operator.loop
    )
    assert resynced.result(60) >= 1
    assert unchanged._value.get() > count
    assert versions() == before
