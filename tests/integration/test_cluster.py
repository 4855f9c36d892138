"""The local cluster is a real Kubernetes: controllers, scheduler, admission, GC, kwok."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client import (
    AppsV1Api,
    AuthenticationV1TokenRequest,
    CoreV1Api,
    V1ConfigMap,
    V1Container,
    V1Deployment,
    V1DeploymentSpec,
    V1LabelSelector,
    V1ObjectMeta,
    V1OwnerReference,
    V1Pod,
    V1PodSpec,
    V1PodTemplateSpec,
    V1ServiceAccount,
    V1TokenRequestSpec,
)
from kubernetes.dynamic import DynamicClient

from testcluster import stages, versions
from tests.support.cluster import LocalCluster
from tests.support.kube import condition_of, wait_for, wait_for_set

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def deployment(
    name: str,
    replicas: int = 2,
    pod_labels: dict[str, str] | None = None,
    progress_deadline: int | None = None,
) -> V1Deployment:
    labels = {"app": name, **(pod_labels or {})}
    return V1Deployment(
        metadata=V1ObjectMeta(name=name),
        spec=V1DeploymentSpec(
            replicas=replicas,
            progress_deadline_seconds=progress_deadline,
            selector=V1LabelSelector(match_labels={"app": name}),
            template=V1PodTemplateSpec(
                metadata=V1ObjectMeta(labels=labels),
                spec=V1PodSpec(containers=[V1Container(name="server", image="example/model:1")]),
            ),
        ),
    )


def has_condition(kind: str, status: str, reason: str | None = None) -> Callable[[Any], bool]:
    def check(obj: Any) -> bool:
        condition = condition_of(obj, kind)
        return (
            condition is not None
            and condition.status == status
            and (reason is None or condition.reason == reason)
        )

    check.__name__ = f"{kind}={status}" + (f" ({reason})" if reason else "")
    return check


def test_cluster_deployment_becomes_available(local_cluster: LocalCluster, namespace: str) -> None:
    apps = AppsV1Api(local_cluster.api)
    core = CoreV1Api(local_cluster.api)
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=2))

    available = wait_for(
        apps.list_namespaced_deployment,
        "web",
        lambda d: has_condition("Available", "True")(d) and (d.status.ready_replicas or 0) == 2,
        namespace=namespace,
        timeout=60,
        describe="deployment web to have 2 ready replicas",
    )
    assert available.status.available_replicas == 2

    # The controller-manager made a ReplicaSet owned by the Deployment ...
    replica_sets = apps.list_namespaced_replica_set(namespace).items
    assert len(replica_sets) == 1
    assert replica_sets[0].metadata.owner_references[0].uid == available.metadata.uid
    # ... whose pods the scheduler put on kwok nodes, which kwok marked Running and Ready.
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 2
    assert {pod.spec.node_name for pod in pods} <= set(local_cluster.cluster.nodes)
    for pod in pods:
        assert pod.status.phase == "Running"
        assert has_condition("Ready", "True")(pod)
        assert pod.status.pod_ip


def test_cluster_never_ready_pods_exceed_progress_deadline(
    local_cluster: LocalCluster, namespace: str
) -> None:
    apps = AppsV1Api(local_cluster.api)
    core = CoreV1Api(local_cluster.api)
    apps.create_namespaced_deployment(
        namespace,
        deployment(
            "broken",
            replicas=1,
            pod_labels={stages.FAULT_LABEL: stages.NEVER_READY},
            progress_deadline=5,
        ),
    )
    stalled = wait_for(
        apps.list_namespaced_deployment,
        "broken",
        has_condition("Progressing", "False", "ProgressDeadlineExceeded"),
        namespace=namespace,
        timeout=90,
    )
    assert not stalled.status.ready_replicas
    pods = core.list_namespaced_pod(namespace, label_selector="app=broken").items
    assert pods
    assert all(pod.status.phase == "Running" for pod in pods)
    assert all(has_condition("Ready", "False")(pod) for pod in pods)


def test_cluster_crash_looping_pod_restarts(local_cluster: LocalCluster, namespace: str) -> None:
    core = CoreV1Api(local_cluster.api)
    core.create_namespaced_pod(
        namespace,
        V1Pod(
            metadata=V1ObjectMeta(name="crashy", labels={stages.FAULT_LABEL: stages.CRASH_LOOP}),
            spec=V1PodSpec(containers=[V1Container(name="server", image="example/model:1")]),
        ),
    )

    def restarted_twice(pod: Any) -> bool:
        statuses = (pod.status.container_statuses or []) if pod is not None else []
        return bool(statuses) and statuses[0].restart_count >= 2

    crashed = wait_for(
        core.list_namespaced_pod, "crashy", restarted_twice, namespace=namespace, timeout=60
    )
    status = crashed.status.container_statuses[0]
    assert status.state.waiting.reason == "CrashLoopBackOff"
    assert status.last_state.terminated.exit_code == 1
    assert crashed.status.phase == "Running"
    assert has_condition("Ready", "False")(crashed)


def test_cluster_api_server_rejects_invalid_objects(
    local_cluster: LocalCluster, namespace: str
) -> None:
    apps = AppsV1Api(local_cluster.api)
    broken = deployment("invalid")
    # A selector that does not match the pod template's labels is invalid.
    broken.spec.selector = V1LabelSelector(match_labels={"app": "something-else"})
    with pytest.raises(kubernetes.client.ApiException) as rejected:
        apps.create_namespaced_deployment(namespace, broken)
    assert rejected.value.status == 422
    body = json.loads(rejected.value.body)
    assert body["reason"] == "Invalid"
    assert "selector" in body["message"]

    # Strict field validation refuses unknown fields instead of dropping them. (The
    # dynamic client sends the manifest as it is; the typed one refuses it itself.)
    manifest = local_cluster.api.sanitize_for_serialization(deployment("typo"))
    manifest["spec"]["replicaz"] = 3
    deployments = DynamicClient(local_cluster.api).resources.get(
        api_version="apps/v1", kind="Deployment"
    )
    with pytest.raises(kubernetes.client.ApiException) as unknown:
        deployments.create(
            body=manifest, namespace=namespace, query_params=[("fieldValidation", "Strict")]
        )
    assert unknown.value.status == 400
    assert 'unknown field "spec.replicaz"' in json.loads(unknown.value.body)["message"]
    assert apps.list_namespaced_deployment(namespace).items == []


def test_cluster_garbage_collects_dependents(local_cluster: LocalCluster, namespace: str) -> None:
    core = CoreV1Api(local_cluster.api)
    apps = AppsV1Api(local_cluster.api)
    owner = core.create_namespaced_config_map(
        namespace, V1ConfigMap(metadata=V1ObjectMeta(name="owner"), data={"a": "1"})
    )
    core.create_namespaced_config_map(
        namespace,
        V1ConfigMap(
            metadata=V1ObjectMeta(
                name="dependent",
                owner_references=[
                    V1OwnerReference(
                        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
                    )
                ],
            ),
            data={"b": "2"},
        ),
    )
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")
    wait_for(
        core.list_namespaced_config_map,
        "dependent",
        lambda cm: cm is None,
        namespace=namespace,
        timeout=60,
        describe="the garbage collector to delete the dependent ConfigMap",
    )

    # Deleting a Deployment takes its ReplicaSet and pods with it.
    apps.create_namespaced_deployment(namespace, deployment("gc", replicas=1))
    wait_for(
        apps.list_namespaced_deployment,
        "gc",
        has_condition("Available", "True"),
        namespace=namespace,
        timeout=60,
    )
    apps.delete_namespaced_deployment("gc", namespace, propagation_policy="Foreground")
    wait_for(
        apps.list_namespaced_deployment, "gc", lambda d: d is None, namespace=namespace, timeout=60
    )
    assert apps.list_namespaced_replica_set(namespace).items == []
    pods = DynamicClient(local_cluster.api).resources.get(api_version="v1", kind="Pod")
    wait_for_set(
        pods,
        lambda items: items == [],
        namespace=namespace,
        label_selector="app=gc",
        timeout=60,
        describe="the Deployment's pods to be garbage-collected",
    )


def test_cluster_issues_service_account_tokens(local_cluster: LocalCluster, namespace: str) -> None:
    core = CoreV1Api(local_cluster.api)
    core.create_namespaced_service_account(
        namespace, V1ServiceAccount(metadata=V1ObjectMeta(name="robot"))
    )
    token = core.create_namespaced_service_account_token(
        "robot",
        namespace,
        AuthenticationV1TokenRequest(spec=V1TokenRequestSpec(audiences=[], expiration_seconds=600)),
    )
    assert token.status.token.count(".") == 2  # a signed JWT
    # A token the API server accepts, with the rights RBAC gives (none yet).
    config = kubernetes.client.Configuration()
    config.host = local_cluster.cluster.server
    config.ssl_ca_cert = str(local_cluster.cluster.root / "pki" / "ca.crt")
    config.api_key = {"authorization": f"Bearer {token.status.token}"}
    with kubernetes.client.ApiClient(config) as as_robot:
        with pytest.raises(kubernetes.client.ApiException) as forbidden:
            CoreV1Api(as_robot).list_namespaced_pod(namespace)
        assert forbidden.value.status == 403
        assert (
            f"system:serviceaccount:{namespace}:robot"
            in json.loads(forbidden.value.body)["message"]
        )


def test_cluster_kubectl_reports_versions_and_nodes(
    local_cluster: LocalCluster, kubectl: Kubectl
) -> None:
    version = json.loads(kubectl("version", "-o", "json").stdout)
    assert version["clientVersion"]["gitVersion"] == versions.KUBERNETES
    assert version["serverVersion"]["gitVersion"] == versions.KUBERNETES
    nodes = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert sorted(node["metadata"]["name"] for node in nodes) == sorted(local_cluster.cluster.nodes)


def test_cluster_helm_installs_a_chart(
    local_cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    def helm(*args: str) -> subprocess.CompletedProcess[str]:
        return local_cluster.run("helm", *args, cwd=tmp_path)

    assert versions.HELM in helm("version", "--short").stdout
    helm("create", "hello")
    helm("install", "hello", "./hello", "--namespace", namespace, "--wait", "--timeout", "90s")
    releases = json.loads(helm("list", "--namespace", namespace, "-o", "json").stdout)
    assert [(r["name"], r["status"]) for r in releases] == [("hello", "deployed")]
    apps = AppsV1Api(local_cluster.api)
    assert apps.read_namespaced_deployment("hello", namespace).status.ready_replicas == 1
    helm("uninstall", "hello", "--namespace", namespace, "--wait")
    wait_for(
        apps.list_namespaced_deployment,
        "hello",
        lambda d: d is None,
        namespace=namespace,
        timeout=60,
    )
