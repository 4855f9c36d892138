"""Models that answer, on the real node: images built here (testcluster/modelimages.py),
the object store on the host's end of the node's veth, an operator process configured
as an installation would be (--runtime-image, --storage-initializer-image,
--image-pull-policy=Never), and ModelDeployments that come from git.

The model is a scikit-learn classifier the test trains (iris, joblib) with the image's
own packages (the host venv of the same lock); its predictions in this process are
what the pods must answer through their Service's ClusterIP, from the node's network
namespace, where only kube-proxy's rules route it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client import CoreV1Api
from kubernetes.dynamic import DynamicClient

from modelsync.api import constants as c
from testcluster import addresses
from testcluster import node as nodemod
from testcluster.objectstore import ObjectStore
from tests.integration.conftest import BUCKET
from tests.support.cluster import LocalCluster, RealNode
from tests.support.gitserver import GitHttpServer, WorkRepo
from tests.support.kube import dict_condition, until, wait_for_set
from tests.support.models import ROWS, Models, ready_on
from tests.support.operatorproc import spawn_operator
from tests.support.syncs import Syncs

# Generous: a cold node unpacks a 760 MB image, and MLServer starts in tens of seconds
# on a machine the other test runs load too.
MODEL_TIMEOUT = 600.0
SECRET = "model-store"
INFER_BODY = json.dumps(
    {
        "inputs": [
            {
                "name": "predict",
                "shape": [len(ROWS), 4],
                "datatype": "FP64",
                "data": [value for row in ROWS for value in row],
            }
        ]
    }
)
# The client of the zero-downtime checks, in the node's network namespace: a new
# connection per request, no retries, until the stop file exists; one JSON line each.
CLIENT = """
import http.client, json, os, sys, time
host, port, stop, out, body = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
headers = {"Content-Type": "application/json"}
with open(out, "a") as log:
    while not os.path.exists(stop):
        started = time.monotonic()
        try:
            conn = http.client.HTTPConnection(host, port, timeout=2)
            conn.request("POST", "/v2/models/iris/infer", body, headers)
            response = conn.getresponse()
            data = response.read()
            conn.close()
            status = response.status
            answer = data.decode()[:300]
            if status == 200:
                answer = json.loads(data)["outputs"][0]["data"]
        except Exception as error:
            status, answer = 0, f"{type(error).__name__}: {error}"
        seconds = round(time.monotonic() - started, 3)
        log.write(json.dumps({"status": status, "seconds": seconds, "answer": answer}) + "\\n")
        log.flush()
"""


@contextlib.contextmanager
def own_operator(
    local: LocalCluster, namespace: str, refs: dict[str, str], log: Path, *args: str
) -> Iterator[None]:
    """The operator as an installation runs it, with this machine's images (and `args`)."""
    with log.open("wb") as out:
        process = spawn_operator(
            local.kubeconfig,
            "-n",
            namespace,
            "--http-port",
            "0",
            "--runtime-image",
            f"mlserver={refs['mlserver']}",
            "--storage-initializer-image",
            refs["storage-initializer"],
            "--image-pull-policy",
            "Never",
            *args,
            log=out,
            die_with_parent=True,
        )
    try:
        yield
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def storage_secret(local: LocalCluster, namespace: str, name: str, data: dict[str, str]) -> None:
    """The Secret a user makes for storageSecretRef (not in git)."""
    CoreV1Api(local.api).create_namespaced_secret(
        namespace,
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name=name),
            data={k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        ),
    )


def model_yaml(
    name: str,
    version: str,
    uri: str,
    *,
    secret: str = SECRET,
    runtime: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    model = {"name": name, "version": version, "uri": uri, "storageSecretRef": {"name": secret}}
    if runtime is None:
        model["format"] = "sklearn"  # MLServer's implementation follows it
    spec: dict[str, Any] = {
        "model": model,
        "runtime": runtime or {"name": "mlserver"},
        "replicas": 1,
        "nodeSelector": nodemod.NODE_SELECTOR,
        "tolerations": [nodemod.TOLERATION],
        **(extra or {}),
    }
    body = {"apiVersion": c.API_VERSION, "kind": c.MODELDEPLOYMENT_KIND}
    return json.dumps({**body, "metadata": {"name": name}, "spec": spec}, indent=2) + "\n"


def explain(local: LocalCluster, node: RealNode, namespace: str) -> str:
    """Pods and their containers' states, and the node's logs, for a failure message."""
    pods = CoreV1Api(local.api).list_namespaced_pod(namespace).items
    states = [
        (
            p.metadata.name,
            p.status.phase,
            p.status.init_container_statuses,
            p.status.container_statuses,
        )
        for p in pods
    ]
    return f"pods: {states}\n{node.log_tails()}"


def wait_model(
    models: Models, name: str, check: Callable[[Any], bool], local: LocalCluster, node: RealNode
) -> dict[str, Any]:
    """`models.wait` for the real node's time; a timeout says what its pods were doing."""
    try:
        return models.wait(name, check, timeout=MODEL_TIMEOUT)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{explain(local, node, models.namespace)}") from error


@dataclass
class IrisFromGit:
    """The iris model of a test namespace, served from git: its versions in the object
    store, its file in a repository that a ModelSync of the test's own operator syncs."""

    local: LocalCluster
    node: RealNode
    git: GitHttpServer
    syncs: Syncs
    models: Models
    repo: WorkRepo

    @classmethod
    def stored(
        cls,
        local: LocalCluster,
        node: RealNode,
        namespace: str,
        git: GitHttpServer,
        store: ObjectStore,
        versions: dict[str, bytes],
    ) -> IrisFromGit:
        """The model file of each version in the store, and the Secret that reads them."""
        for version, body in versions.items():
            store.put(BUCKET, f"{namespace}/iris/{version}/model.joblib", body)
        storage_secret(local, namespace, SECRET, store.storage_secret())
        syncs = Syncs(local, namespace, git)
        return cls(local, node, git, syncs, Models(local, namespace), syncs.repo("models"))

    def commit(self, version: str, **extra: Any) -> str:
        """iris at `version` (spec fields `extra` added) committed to the repository."""
        uri = f"s3://{BUCKET}/{self.syncs.namespace}/iris/{version}"
        self.repo.write("iris.json", model_yaml("iris", version, uri, extra=extra))
        return self.repo.commit(f"iris v{version}")

    @contextlib.contextmanager
    def served(self, refs: dict[str, str], log: Path) -> Iterator[None]:
        """The test's operator runs and syncs the repository; from when version 1 serves."""
        with own_operator(self.local, self.syncs.namespace, refs, log):
            self.syncs.secret("git", self.git.username, self.git.password)
            self.syncs.create("models", self.syncs.http_url(self.repo), secret="git")
            wait_model(self.models, "iris", ready_on("1"), self.local, self.node)
            yield


def service_ip(local: LocalCluster, namespace: str, name: str) -> tuple[str, int]:
    service = CoreV1Api(local.api).read_namespaced_service(name, namespace)
    return service.spec.cluster_ip, int(service.spec.ports[0].port)


def post_via_service(node: RealNode, ip: str, port: int, path: str, body: str) -> Any:
    """POST through the Service's ClusterIP from the node's namespace; the JSON answer.
    Tries again while nothing answers: kube-proxy writes its rules a moment after the
    endpoints change (a Ready model's Service may refuse for that moment)."""
    script = (
        "import sys, urllib.request\n"
        f"request = urllib.request.Request('http://{ip}:{port}{path}', "
        "data=sys.argv[1].encode(), headers={'Content-Type': 'application/json'})\n"
        "print(urllib.request.urlopen(request, timeout=30).read().decode())"
    )
    tries: list[subprocess.CompletedProcess[str]] = []

    def answered() -> bool:
        tries.append(node.in_netns("python3", "-c", script, body, timeout=60))
        if tries[-1].returncode != 0 and "Connection refused" not in tries[-1].stderr:
            raise AssertionError(f"POST {path} via {ip}:{port}: {tries[-1].stderr[-2000:]}")
        return tries[-1].returncode == 0

    # A fresh connection per try; there is nothing to watch in iptables.
    until(
        f"POST {path} via {ip}:{port} to be answered",
        answered,
        60,
        interval=0.5,
        explain=lambda: tries[-1].stderr[-2000:],
    )
    return json.loads(tries[-1].stdout)


def infer_once(node: RealNode, ip: str, port: int) -> list[int]:
    answer = post_via_service(node, ip, port, "/v2/models/iris/infer", INFER_BODY)
    data: list[int] = answer["outputs"][0]["data"]
    return data


class Client:
    """CLIENT running in the node's namespace until `stop()`; `answers` reads its log."""

    def __init__(self, node: RealNode, ip: str, port: int, where: Path) -> None:
        assert node.node is not None
        self.log, self.stop_file = where / "answers.jsonl", where / "stop"
        self.log.touch()
        args = (ip, str(port), str(self.stop_file), str(self.log), INFER_BODY)
        self.process = subprocess.Popen(node.node.netns_exec("python3", "-c", CLIENT, *args))

    def answers(self) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def wait_for(self, predictions: list[int], timeout: float, streak: int = 1) -> None:
        """Until the latest `streak` answers are `predictions` (the traffic switched)."""

        def switched() -> bool:
            answers = self.answers()[-streak:]
            return len(answers) == streak and all(a["answer"] == predictions for a in answers)

        # Reads the client's log; there is nothing to watch.
        until(
            f"the answer {predictions}",
            switched,
            timeout,
            interval=0.5,
            explain=lambda: f"last answers: {self.answers()[-3:]}",
        )

    def stop(self) -> list[dict[str, Any]]:
        self.stop_file.touch()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.answers()


def failures(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in answers if a["status"] != 200 or a["seconds"] > 2.0]


def rolled_back_from(version: str) -> Any:
    def check(md: dict[str, Any] | None) -> bool:
        condition = dict_condition(md, c.ROLLED_BACK) or {}
        return condition.get("status") == "True" and f"version {version}" in str(
            condition.get("message")
        )

    check.__name__ = f"rolled back from version {version}"
    return check


def test_real_model_answers_rolls_out_without_errors_and_rolls_back_a_corrupt_version(
    local_cluster: LocalCluster,
    real_node: RealNode,
    own_namespace: str,
    crds: list[str],
    git_server: GitHttpServer,
    node_images: dict[str, str],
    node_store: ObjectStore,
    trained: dict[str, tuple[bytes, list[int]]],
    tmp_path: Path,
) -> None:
    namespace = own_namespace
    versions = {version: body for version, (body, _) in trained.items()}
    iris = IrisFromGit.stored(
        local_cluster,
        real_node,
        namespace,
        git_server,
        node_store,
        versions | {"3": b"not a joblib file\n"},
    )
    syncs, models, commit = iris.syncs, iris.models, iris.commit
    commit("1")
    with iris.served(node_images, tmp_path / "operator.log"):
        ip, port = service_ip(local_cluster, namespace, "iris")
        assert infer_once(real_node, ip, port) == trained["1"][1]

        # v2 rolls out under load: not one request fails, and the answers switch.
        (tmp_path / "v2").mkdir()
        client = Client(real_node, ip, port, tmp_path / "v2")
        try:
            client.wait_for(trained["1"][1], timeout=60)
            commit("2")
            syncs.request("models")
            models.wait("iris", ready_on("2"), timeout=MODEL_TIMEOUT)
            # The old pod drains (preStop) and goes; then kube-proxy routes only to v2.
            wait_for_set(
                DynamicClient(local_cluster.api).resources.get(api_version="v1", kind="Pod"),
                lambda pods: not pods,
                namespace=namespace,
                label_selector=f"{c.LABEL_MODEL_VERSION}=1",
                timeout=120,
                describe="no pod of version 1 left",
            )
            client.wait_for(trained["2"][1], timeout=120, streak=100)
        finally:
            answers = client.stop()
        assert not failures(answers), failures(answers)[:5]
        assert {json.dumps(a["answer"]) for a in answers} <= {
            json.dumps(trained["1"][1]),
            json.dumps(trained["2"][1]),
        }

        # v3 is corrupt: never Ready, rolled back, and v2 answers every request meanwhile.
        (tmp_path / "v3").mkdir()
        client = Client(real_node, ip, port, tmp_path / "v3")
        try:
            commit("3", rollout={"progressDeadlineSeconds": 90}, rollback={"maxRestarts": 2})
            syncs.request("models")
            md = models.wait("iris", rolled_back_from("3"), timeout=MODEL_TIMEOUT)
        finally:
            answers = client.stop()
        assert answers
        assert not failures(answers), failures(answers)[:5]
        assert all(a["answer"] == trained["2"][1] for a in answers)
        assert md["status"]["modelVersion"] == "2"
        assert infer_once(real_node, ip, port) == trained["2"][1]


def download_failed(md: dict[str, Any] | None) -> bool:
    """The rollout failed with the initializer's own word (not the progress deadline)."""
    history = ((md or {}).get("status") or {}).get("history") or []
    return bool(history) and history[0].get("result") == c.HISTORY_FAILED


def test_real_custom_runtime_answers_and_storage_failures_fail_the_rollout_with_the_store_word(
    local_cluster: LocalCluster,
    real_node: RealNode,
    own_namespace: str,
    crds: list[str],
    git_server: GitHttpServer,
    node_images: dict[str, str],
    node_store: ObjectStore,
    trained: dict[str, tuple[bytes, list[int]]],
    tmp_path: Path,
) -> None:
    namespace = own_namespace
    body, expected = trained["1"]
    node_store.put(BUCKET, f"{namespace}/iris/1/model.joblib", body)
    good = node_store.storage_secret()
    storage_secret(local_cluster, namespace, SECRET, good)
    storage_secret(local_cluster, namespace, "wrong-key", good | {"AWS_SECRET_ACCESS_KEY": "wrong"})
    # A reserved address of the node's network where nothing listens.
    storage_secret(
        local_cluster,
        namespace,
        "nowhere",
        good | {"AWS_ENDPOINT_URL": f"http://{addresses.UNREACHABLE_STORE}:9000"},
    )
    syncs, models = Syncs(local_cluster, namespace, git_server), Models(local_cluster, namespace)
    repo = syncs.repo("models")
    uri = f"s3://{BUCKET}/{namespace}/iris/1"
    custom = {
        "name": "custom",
        "image": node_images["kserve-custom"],
        "port": 8080,
        "args": ["--model_name=custom", "--http_port=8080"],
        "readinessPath": "/v1/models/{model}",
    }
    # Deadlines far beyond what the test waits: a failure must come from the initializer.
    patient = {"rollout": {"progressDeadlineSeconds": 3600}, "rollback": {"maxRestarts": 1}}
    repo.write("custom.json", model_yaml("custom", "1", uri, runtime=custom))
    repo.write(
        "wrong-key.json", model_yaml("wrong-key", "1", uri, secret="wrong-key", extra=patient)
    )
    repo.write("missing.json", model_yaml("missing", "1", f"{uri}-not-there", extra=patient))
    repo.write("nowhere.json", model_yaml("nowhere", "1", uri, secret="nowhere", extra=patient))
    repo.commit("four models")
    with own_operator(local_cluster, namespace, node_images, tmp_path / "operator.log"):
        syncs.secret("git", git_server.username, git_server.password)
        syncs.create("models", syncs.http_url(repo), secret="git")
        for name, words in (
            (
                "wrong-key",
                (
                    "authentication failed",
                    "Invalid AWS credentials",
                    "SignatureDoesNotMatch",
                    "403",
                ),
            ),
            ("missing", ("No model found", "not found", "does not exist", "404")),
            ("nowhere", ("connect", "Connect")),
        ):
            md = wait_model(models, name, download_failed, local_cluster, real_node)
            ready = dict_condition(md, c.READY) or {}
            assert ready.get("status") == "False", md["status"]
            # The initializer's own words, long before the hour-long progress deadline.
            message = str(md["status"]["history"][0].get("message"))
            assert "init container storage-initializer" in message, message
            assert any(word in message for word in words), message
        wait_model(models, "custom", ready_on("1"), local_cluster, real_node)
        ip, port = service_ip(local_cluster, namespace, "custom")
        path, request = "/v1/models/custom:predict", json.dumps({"instances": ROWS})
        assert post_via_service(real_node, ip, port, path, request)["predictions"] == expected
