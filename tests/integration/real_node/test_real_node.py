"""The real node: pods that really run, probes that really probe, a Service that really
routes (kube-proxy's rules), and a stop that leaves nothing behind.

Every pod here runs the tiny bookworm + python3 image built on this machine
(testcluster/images.py); its server answers `/` with the pod's hostname and
`/status/<code>` with that code.
"""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path
from typing import Any

from kubernetes.client import AppsV1Api, CoreV1Api
from kubernetes.dynamic import DynamicClient

from testcluster import addresses, images
from testcluster import node as nodemod
from tests.support.cluster import LocalCluster, RealNode
from tests.support.kube import condition_of, until, wait_for, wait_for_items

READY_TIMEOUT = 180.0  # generous: a fresh CI machine unpacks the image on first use


def deployment(
    name: str,
    *,
    replicas: int = 2,
    image: str = images.HTTP,
    probe_path: str = "/healthz",
    progress_deadline: int = 600,
) -> dict[str, Any]:
    labels = {"app": name}
    container = {
        "name": "http",
        "image": image,
        "imagePullPolicy": "Never",
        "ports": [{"containerPort": images.HTTP_PORT, "name": "http"}],
        "readinessProbe": {
            "httpGet": {"path": probe_path, "port": images.HTTP_PORT},
            "periodSeconds": 1,
            "failureThreshold": 1,
        },
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": progress_deadline,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": nodemod.NODE_SELECTOR,
                    "tolerations": [nodemod.TOLERATION],
                    "terminationGracePeriodSeconds": 1,
                    "automountServiceAccountToken": False,
                    "containers": [container],
                },
            },
        },
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": name},
            "ports": [{"port": 80, "targetPort": images.HTTP_PORT}],
        },
    }


def available(replicas: int) -> Any:
    def check(found: Any) -> bool:
        return found is not None and (found.status.available_replicas or 0) == replicas

    check.__name__ = f"{replicas} available replicas"
    return check


def wait_available(
    local: LocalCluster, node: RealNode, namespace: str, name: str, replicas: int = 2
) -> Any:
    apps = AppsV1Api(local.api)
    try:
        return wait_for(
            apps.list_namespaced_deployment,
            name,
            available(replicas),
            namespace=namespace,
            timeout=READY_TIMEOUT,
        )
    except AssertionError as error:
        pods = CoreV1Api(local.api).list_namespaced_pod(namespace)
        states = [
            (p.metadata.name, p.status.phase, p.status.container_statuses) for p in pods.items
        ]
        raise AssertionError(f"{error}\npods: {states}\n{node.log_tails()}") from error


def pods_of(local: LocalCluster, namespace: str, name: str) -> list[Any]:
    listing = CoreV1Api(local.api).list_namespaced_pod(namespace, label_selector=f"app={name}")
    return [pod for pod in listing.items if pod.metadata.deletion_timestamp is None]


def get_via_service(node: RealNode, cluster_ip: str, path: str = "/") -> str | None:
    """GET through the Service's ClusterIP from inside the node's namespace, where only
    kube-proxy's rules can route it; None when nothing answered."""
    script = (
        "import sys, urllib.request\n"
        f"print(urllib.request.urlopen('http://{cluster_ip}:80{path}', timeout=3).read().decode())"
    )
    result = node.in_netns("python3", "-c", script)
    return result.stdout.strip() if result.returncode == 0 else None


def answers_via_service(
    node: RealNode, cluster_ip: str, expected: set[str], timeout: float = 60.0
) -> str:
    """The first answer through the Service that names one of `expected` pods, waiting
    (kube-proxy syncs its rules a moment after the endpoints change)."""
    last: list[str | None] = [None]

    def answered() -> bool:
        last[0] = get_via_service(node, cluster_ip)
        return last[0] in expected

    # A fresh connection per try; there is nothing to watch in iptables.
    until(
        f"an answer from {sorted(expected)} through {cluster_ip}",
        answered,
        timeout,
        interval=0.5,
        explain=lambda: f"last: {last[0]!r}\n{node.log_tails()}",
    )
    return str(last[0])


def test_real_pods_become_ready_by_an_http_readiness_probe(
    local_cluster: LocalCluster, real_node: RealNode, namespace: str
) -> None:
    AppsV1Api(local_cluster.api).create_namespaced_deployment(namespace, deployment("web"))
    wait_available(local_cluster, real_node, namespace, "web")
    pods = pods_of(local_cluster, namespace, "web")
    assert len(pods) == 2
    pod_range = ipaddress.ip_network(addresses.NODE_POD_CIDR)
    for pod in pods:
        assert pod.spec.node_name == real_node.name
        assert ipaddress.ip_address(pod.status.pod_ip) in pod_range
        (status,) = pod.status.container_statuses
        assert status.ready
        assert status.state.running is not None
        # The probe reached a real server: the pod answers with its own name.
        answer = real_node.in_netns(
            "python3",
            "-c",
            "import urllib.request; print(urllib.request.urlopen("
            f"'http://{pod.status.pod_ip}:{images.HTTP_PORT}/', timeout=3).read().decode())",
        )
        assert answer.stdout.strip() == pod.metadata.name, answer.stderr


def test_real_service_answers_by_cluster_ip_from_the_node(
    local_cluster: LocalCluster, real_node: RealNode, namespace: str
) -> None:
    AppsV1Api(local_cluster.api).create_namespaced_deployment(namespace, deployment("web"))
    created = CoreV1Api(local_cluster.api).create_namespaced_service(namespace, service("web"))
    cluster_ip = created.spec.cluster_ip
    assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network(addresses.SERVICE_CIDR)
    wait_available(local_cluster, real_node, namespace, "web")
    names = {pod.metadata.name for pod in pods_of(local_cluster, namespace, "web")}
    seen = {answers_via_service(real_node, cluster_ip, names) for _ in range(10)}
    assert seen <= names


def test_real_pod_killed_by_hand_is_replaced_and_the_service_keeps_answering(
    local_cluster: LocalCluster, real_node: RealNode, namespace: str
) -> None:
    core = CoreV1Api(local_cluster.api)
    AppsV1Api(local_cluster.api).create_namespaced_deployment(namespace, deployment("web"))
    cluster_ip = core.create_namespaced_service(namespace, service("web")).spec.cluster_ip
    wait_available(local_cluster, real_node, namespace, "web")
    before = {pod.metadata.name for pod in pods_of(local_cluster, namespace, "web")}
    answers_via_service(real_node, cluster_ip, before)
    victim = sorted(before)[0]
    core.delete_namespaced_pod(victim, namespace, grace_period_seconds=0)
    survivor = before - {victim}
    # While the replacement comes up, the other replica keeps serving.
    assert answers_via_service(real_node, cluster_ip, survivor) in survivor

    def replaced(found: Any) -> bool:
        current = {pod.metadata.name for pod in pods_of(local_cluster, namespace, "web")}
        return available(2)(found) and victim not in current and len(current) == 2

    wait_for(
        AppsV1Api(local_cluster.api).list_namespaced_deployment,
        "web",
        replaced,
        namespace=namespace,
        timeout=READY_TIMEOUT,
        describe=f"a ready replacement for the killed pod {victim}",
    )
    after = {pod.metadata.name for pod in pods_of(local_cluster, namespace, "web")}
    (replacement,) = after - before
    # The Service routes to the new pod too.
    answers_via_service(real_node, cluster_ip, {replacement}, timeout=90)


def test_real_failing_readiness_probe_never_becomes_available(
    local_cluster: LocalCluster, real_node: RealNode, namespace: str
) -> None:
    apps = AppsV1Api(local_cluster.api)
    apps.create_namespaced_deployment(
        namespace, deployment("broken", probe_path="/status/503", progress_deadline=20)
    )

    def deadline_exceeded(found: Any) -> bool:
        progressing = condition_of(found, "Progressing")
        return progressing is not None and progressing.reason == "ProgressDeadlineExceeded"

    found = wait_for(
        apps.list_namespaced_deployment,
        "broken",
        deadline_exceeded,
        namespace=namespace,
        timeout=READY_TIMEOUT,
        describe="Progressing=False, ProgressDeadlineExceeded",
    )
    assert condition_of(found, "Progressing").status == "False"
    assert not found.status.available_replicas
    pods = pods_of(local_cluster, namespace, "broken")
    assert pods
    for pod in pods:
        (status,) = pod.status.container_statuses
        # Running for real, refused by its own probe.
        assert status.state.running is not None
        assert not status.ready
    # The kubelet's own word that the probe ran and what it got.
    events = DynamicClient(local_cluster.api).resources.get(api_version="v1", kind="Event")
    wait_for_items(
        events,
        lambda event: (
            event.get("reason") == "Unhealthy" and "statuscode: 503" in (event.get("message") or "")
        ),
        namespace=namespace,
        describe="an Unhealthy event: readiness probe failed with statuscode 503",
    )


def test_real_missing_image_is_named_in_the_pod_status(
    local_cluster: LocalCluster, real_node: RealNode, namespace: str
) -> None:
    missing = "modelsync.local/not-imported:1"
    AppsV1Api(local_cluster.api).create_namespaced_deployment(
        namespace, deployment("ghost", replicas=1, image=missing)
    )
    core = CoreV1Api(local_cluster.api)

    def waiting_for_image(found: Any) -> bool:
        for status in (found.status.container_statuses or []) if found else []:
            waiting = status.state.waiting
            if waiting is not None and waiting.reason == "ErrImageNeverPull":
                return True
        return False

    until(
        "the Deployment to make a pod",
        lambda: bool(pods_of(local_cluster, namespace, "ghost")),
        READY_TIMEOUT,
        interval=0.5,
    )
    pods = pods_of(local_cluster, namespace, "ghost")
    pod = wait_for(
        core.list_namespaced_pod,
        pods[0].metadata.name,
        waiting_for_image,
        namespace=namespace,
        timeout=READY_TIMEOUT,
        describe="the container waiting with ErrImageNeverPull",
    )
    (status,) = pod.status.container_statuses
    assert missing in status.state.waiting.message


def test_real_node_stop_leaves_nothing_behind(
    local_cluster: LocalCluster, real_node: RealNode, namespace: str
) -> None:
    """Last in this file: it stops the session's node (the next user starts it again)."""
    AppsV1Api(local_cluster.api).create_namespaced_deployment(namespace, deployment("web"))
    wait_available(local_cluster, real_node, namespace, "web")
    assert real_node.node is not None
    listed = subprocess.run(
        [*real_node.node.ctr(), "-n", "k8s.io", "tasks", "ls"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()[1:]
    # Two pods: two sandboxes (pause) and two servers, each a process of the host.
    processes = {int(line.split()[1]): _cmdline(int(line.split()[1])) for line in listed}
    assert len(processes) >= 4, listed
    root = local_cluster.cluster.root
    assert nodemod.leftovers(root), "a running node should show up in leftovers()"
    real_node.stop()
    assert nodemod.leftovers(root) == []
    survivors = [pid for pid, cmdline in processes.items() if _cmdline(pid) == cmdline]
    assert not survivors, f"container processes outlived the node: {survivors}"


def _cmdline(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
