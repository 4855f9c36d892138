"""`helm install` for real (issue 19): the chart's operator Deployment, with the operator
image built here (testcluster/operator_image.py), on the real node.

Both replicas run as the chart makes them (in-cluster configuration, the projected
ServiceAccount token, user 10001 on a read-only root, the probes); one leads on the
Lease. What the tests send to the operator goes through the chart's Services from the
node's network namespace, where only kube-proxy's rules route it: /metrics, and the
webhooks that make a ModelSync sync at once (the interval is an hour). Git and the
object store listen on the host's end of the node's veth, where pods reach them.
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client import AppsV1Api, CoordinationV1Api, CoreV1Api
from kubernetes.dynamic import DynamicClient

from modelsync.api import constants as c
from testcluster import addresses, images, operator_image
from testcluster import node as nodemod
from testcluster.objectstore import ObjectStore
from tests.integration.conftest import BUCKET, OWN_OPERATOR_PREFIX
from tests.integration.real_node.test_models_real import (
    MODEL_TIMEOUT,
    SECRET,
    explain,
    infer_once,
    model_yaml,
    service_ip,
    storage_secret,
)
from tests.integration.test_webhook import github_push, signature
from tests.support.cluster import LocalCluster, RealNode, tenant_namespace
from tests.support.gitserver import GitHttpServer, WorkRepo
from tests.support.kube import TENANT_ACCOUNT, wait_for, wait_for_set
from tests.support.models import Models, ready_on
from tests.support.paths import REPO
from tests.support.syncs import Syncs

CHART = REPO / "helm" / "modelsync"
RELEASE = "modelsync"  # the chart's objects are then named "modelsync", "modelsync-webhooks"
SELECTOR = f"app.kubernetes.io/instance={RELEASE}"
LEASE = "modelsync-leader"
WEBHOOK_TOKEN = "helm-real-webhook-token"
# Generous: a cold node unpacks the operator image (half a GiB) before the first pod starts.
PODS_TIMEOUT = 300.0
LEASE_SECONDS = 10


@dataclass
class Release:
    """The chart installed on the real node, and the namespaces it serves."""

    local: LocalCluster
    node: RealNode
    system: str  # the release's namespace: the operator's pods, Services and Lease
    team: str  # the watched namespace: a tenant's ModelSync and its models
    image: str

    def pods(self, timeout: float = PODS_TIMEOUT, count: int = 2) -> list[dict[str, Any]]:
        """Wait until `count` operator pods are Running and Ready (none terminating)."""

        def ready(pods: list[dict[str, Any]]) -> bool:
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            return len(live) == count == len(pods) and all(_pod_ready(p) for p in live)

        return wait_for_set(
            DynamicClient(self.local.api).resources.get(api_version="v1", kind="Pod"),
            ready,
            namespace=self.system,
            label_selector=SELECTOR,
            timeout=timeout,
            describe=f"{count} operator pods Ready",
        )

    def leader(self, not_pod: str | None = None, timeout: float = 60) -> str:
        """The pod that holds the Lease and carries the leader label (not `not_pod`)."""

        def held(lease: Any) -> bool:
            holder = _field(lease, "spec", "holderIdentity")
            return bool(holder) and (not_pod is None or not holder.startswith(f"{not_pod}_"))

        lease = wait_for(
            lambda **kw: CoordinationV1Api(self.local.api).list_namespaced_lease(**kw),
            LEASE,
            held,
            namespace=self.system,
            timeout=timeout,
            describe="a replica to hold the Lease",
        )
        pod = _field(lease, "spec", "holderIdentity").rsplit("_", 1)[0]
        wait_for(
            lambda **kw: CoreV1Api(self.local.api).list_namespaced_pod(**kw),
            pod,
            lambda found: _field(found, "metadata", "labels", c.LABEL_LEADER) == "true",
            namespace=self.system,
            timeout=timeout,
            describe=f"the leader {pod} to label its pod",
        )
        return pod

    def service(self, name: str) -> tuple[str, int]:
        found = CoreV1Api(self.local.api).read_namespaced_service(name, self.system)
        return found.spec.cluster_ip, int(found.spec.ports[0].port)

    def explain(self) -> str:
        pods = CoreV1Api(self.local.api).list_namespaced_pod(self.system).items
        states = [(p.metadata.name, p.status.phase, p.status.container_statuses) for p in pods]
        return f"operator pods: {states}\n{explain(self.local, self.node, self.team)}"


def _field(obj: Any, *path: str) -> str:
    """A field of an object as the API server wrote it ("spec", "holderIdentity"), whether
    the client parsed it (a watch event may be) or left it a dict; "" when absent."""
    data = kubernetes.client.ApiClient().sanitize_for_serialization(obj) if obj else {}
    for key in path:
        data = (data or {}).get(key) if isinstance(data, dict) else None
    return str(data or "")


def _pod_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return pod.get("status", {}).get("phase") == "Running" and any(
        x.get("type") == "Ready" and x.get("status") == "True" for x in conditions
    )


# Runs in the node's network namespace: one HTTP request; prints {"status", "body"}.
# Retries while the connection is refused: kube-proxy writes a Service's rules a moment
# after its endpoints change.
REQUEST = """
import json, sys, time, urllib.error, urllib.request
url, method, body, headers = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
deadline = time.monotonic() + 60
while True:
    request = urllib.request.Request(
        url, data=body.encode() if body else None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            status, text = answer.status, answer.read().decode()
        break
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
        break
    except OSError as error:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.5)
print(json.dumps({"status": status, "body": text}))
"""


def request_in_node(
    node: RealNode,
    url: str,
    method: str = "GET",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    done = node.in_netns(
        "python3", "-c", REQUEST, url, method, body.decode(), json.dumps(headers or {}), timeout=90
    )
    assert done.returncode == 0, f"{method} {url} from the node: {done.stderr[-2000:]}"
    answer = json.loads(done.stdout)
    return int(answer["status"]), str(answer["body"])


def chart_values(image: str, team: str, model_images: dict[str, str]) -> dict[str, Any]:
    """What a platform team sets to run the chart on this cluster's real node."""
    repository, tag = image.rsplit(":", 1)
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "nodeSelector": nodemod.NODE_SELECTOR,
        "tolerations": [nodemod.TOLERATION],
        "watchNamespaces": [team],
        "leaseSeconds": LEASE_SECONDS,
        "tenancy": {"defaultServiceAccount": TENANT_ACCOUNT},
        "runtimes": {"mlserver": {"image": model_images["mlserver"]}},
        "storageInitializer": {"image": model_images["storage-initializer"]},
        "imagePullPolicy": "Never",
        "operator": {"logFormat": "text"},
    }


@pytest.fixture(scope="module")
def release(
    local_cluster: LocalCluster,
    real_node_session: RealNode,
    crds: list[str],
    tenant_role: dict[str, object],
    node_images: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    """`helm install` with the operator image built here, imported into the node."""
    node = real_node_session.ensure()
    assert node.node is not None
    archive, image = operator_image.operator_image()
    images.import_image(node.node.ctr(), archive)
    prefix = f"{OWN_OPERATOR_PREFIX}{secrets.token_hex(4)}"
    team = tenant_namespace(local_cluster, prefix)
    system = f"{prefix}-system"
    core = CoreV1Api(local_cluster.api)
    core.create_namespace({"metadata": {"name": system}})
    values = tmp_path_factory.mktemp("helm") / "values.yaml"
    values.write_text(yaml.safe_dump(chart_values(image, team, node_images)))
    installed = Release(local_cluster, node, system, team, image)
    try:
        local_cluster.run(
            "helm",
            "install",
            RELEASE,
            str(CHART),
            "--namespace",
            system,
            "--force-conflicts",  # the CRDs the session installed
            "--values",
            str(values),
        )
        try:
            installed.pods()
        except AssertionError as error:
            raise AssertionError(f"{error}\n{installed.explain()}") from error
        yield installed
    finally:
        local_cluster.run("helm", "uninstall", RELEASE, "--namespace", system, check=False)
        for namespace in (team, system):
            core.delete_namespace(namespace, propagation_policy="Background")


@dataclass
class Served:
    """A ModelSync of the release's team namespace, from a git server pods reach, whose
    model answers; `commit` changes the model's labels, `push` tells the operator."""

    release: Release
    syncs: Syncs
    repo: WorkRepo
    body: dict[str, Any]
    predictions: list[int]

    def commit(self, label: str) -> str:
        self.body["metadata"].setdefault("labels", {})["change"] = label
        self.repo.write("iris.json", json.dumps(self.body, indent=2) + "\n")
        return self.repo.commit(f"iris labelled {label}")

    def push(self) -> tuple[int, str]:
        """A signed GitHub push delivery, sent through the chart's webhook Service."""
        ip, port = self.release.service(f"{RELEASE}-webhooks")
        payload = github_push(self.syncs.http_url(self.repo))
        return request_in_node(
            self.release.node,
            f"http://{ip}:{port}/hooks/github/{self.release.team}/models",
            "POST",
            payload,
            {
                "Content-Type": "application/json",
                "X-GitHub-Event": "push",
                "X-Hub-Signature-256": f"sha256={signature(payload, WEBHOOK_TOKEN)}",
            },
        )

    def applied(self, sha: str, timeout: float = 120) -> None:
        self.syncs.wait_applied("models", f"main@sha1:{sha}", timeout=timeout)


@pytest.fixture(scope="module")
def pod_git(release: Release, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHttpServer]:
    """A git server on the host's end of the node's veth, which the operator's pods reach."""
    root = tmp_path_factory.mktemp("pod-git")
    server = GitHttpServer(root, host=addresses.HOST_IP).start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def served(
    release: Release,
    pod_git: GitHttpServer,
    node_store: ObjectStore,
    trained: dict[str, tuple[bytes, list[int]]],
) -> Served:
    team = release.team
    model, predictions = trained["1"]
    node_store.put(BUCKET, f"{team}/iris/1/model.joblib", model)
    storage_secret(release.local, team, SECRET, node_store.storage_secret())
    storage_secret(release.local, team, "webhook", {"token": WEBHOOK_TOKEN})
    syncs = Syncs(release.local, team, pod_git)
    repo = syncs.repo("models")
    body = json.loads(model_yaml("iris", "1", f"s3://{BUCKET}/{team}/iris/1"))
    repo.write("iris.json", json.dumps(body, indent=2) + "\n")
    first = repo.commit("iris v1")
    syncs.secret("git", pod_git.username, pod_git.password)
    syncs.create("models", syncs.http_url(repo), secret="git", webhookSecretRef={"name": "webhook"})
    try:
        syncs.wait_applied("models", f"main@sha1:{first}", timeout=MODEL_TIMEOUT)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{release.explain()}") from error
    return Served(release, syncs, repo, body, predictions)


# ------------------------------------------------------------------ the tests


def test_real_helm_install_runs_two_ready_replicas_one_leads_metrics_through_the_service(
    release: Release,
) -> None:
    pods = release.pods()
    for pod in pods:
        assert pod["spec"]["nodeName"] == nodemod.NAME
        container = pod["spec"]["containers"][0]
        assert container["image"] == release.image
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    leader = release.leader()
    labelled = [
        p["metadata"]["name"]
        for p in release.pods()
        if (p["metadata"].get("labels") or {}).get(c.LABEL_LEADER) == "true"
    ]
    assert labelled == [leader]
    webhooks = CoreV1Api(release.local.api).read_namespaced_endpoints(
        f"{RELEASE}-webhooks", release.system
    )
    assert [a.target_ref.name for s in webhooks.subsets or [] for a in s.addresses or []] == [
        leader
    ]
    ip, port = release.service(RELEASE)
    status, text = request_in_node(release.node, f"http://{ip}:{port}/metrics")
    assert status == 200, text
    assert "modelsync_leader " in text
    status, text = request_in_node(release.node, f"http://{ip}:{port}/readyz")
    assert status == 200, text


def test_real_helm_operator_syncs_a_model_from_git_that_answers_and_webhooks_reach_it(
    served: Served,
) -> None:
    release = served.release
    models = Models(release.local, release.team)
    try:
        models.wait("iris", ready_on("1"), timeout=MODEL_TIMEOUT)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{release.explain()}") from error
    ip, port = service_ip(release.local, release.team, "iris")
    assert infer_once(release.node, ip, port) == served.predictions
    # The interval is an hour: only the delivery through the webhook Service syncs this.
    sha = served.commit("webhook")
    status, answer = served.push()
    assert (status, json.loads(answer)) == (202, {"queued": [f"{release.team}/models"]})
    served.applied(sha)
    md = models.wait(
        "iris",
        lambda md: ((md or {}).get("metadata", {}).get("labels") or {}).get("change") == "webhook",
    )
    assert md["status"]["modelVersion"] == "1"


def test_real_helm_deleting_the_leading_pod_hands_over_and_a_new_commit_applies(
    served: Served,
) -> None:
    release = served.release
    old = release.leader()
    CoreV1Api(release.local.api).delete_namespaced_pod(old, release.system)
    new = release.leader(not_pod=old, timeout=LEASE_SECONDS * 6)
    assert new != old
    sha = served.commit("handover")
    status, answer = served.push()
    assert status == 202, answer
    served.applied(sha)
    # The Deployment replaced the deleted pod: two Ready again, the new one standing by.
    pods = release.pods()
    assert old not in {p["metadata"]["name"] for p in pods}
    assert release.leader() == new


def test_real_helm_uninstall_removes_the_operator_and_leaves_the_models_serving(
    served: Served,
) -> None:
    release = served.release
    models = Models(release.local, release.team)
    models.wait("iris", ready_on("1"), timeout=MODEL_TIMEOUT)
    release.local.run(
        "helm", "uninstall", RELEASE, "--namespace", release.system, "--wait", "--timeout", "90s"
    )
    release.pods(count=0, timeout=90)
    apps = AppsV1Api(release.local.api)
    assert not apps.list_namespaced_deployment(release.system).items
    with pytest.raises(kubernetes.client.ApiException) as gone:
        CoreV1Api(release.local.api).read_namespaced_service(RELEASE, release.system)
    assert gone.value.status == 404
    # What serves stays: the ModelDeployment, its Deployment and Service, and answers.
    assert ready_on("1")(models.list(namespace=release.team)["items"][0])
    assert apps.read_namespaced_deployment("iris", release.team).status.ready_replicas == 1
    ip, port = service_ip(release.local, release.team, "iris")
    assert infer_once(release.node, ip, port) == served.predictions
