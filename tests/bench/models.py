"""Benchmark models that answer, on the real node: commit -> first correct prediction,
and inference latency and throughput through a model's Service.

On a fresh local cluster with the real node, the model images imported, versitygw on
the host's end of the node's veth and the operator configured as an installation
would be (the same set-up as tests/integration/real_node/test_models_real.py, whose helpers it
uses), it times:

- commit -> first correct prediction, for an iris classifier on MLServer (the node's
  first model: its images are unpacked then), the same model on the custom runtime
  (the `kserve` ModelServer image), and BENCH_BUMPS (default 3) version bumps of the
  served MLServer model, each once the last one's old pod has gone, then
  BENCH_VALIDATED (default 10) bumps with spec.validation: the time the inference gate
  adds is the new pod's containers ready (model loaded) -> pod Ready, p50/p95. From the commit
  on, the operator's status and the pods are read every 0.1 s: pushed, sync asked,
  synced (the ModelDeployment names the new version), pod created, scheduled,
  initialized (the storage initializer downloaded the model), server started, pod
  Ready, model Ready; clients in the node's network namespace ask the new pod's own
  address (the model is loaded, whatever its readiness probe says yet) and the
  Service until each gives the answer the model gives in this process. The first sync
  is the ModelSync's creation; later commits ask for a sync at once, as a webhook does.
- latency p50/p90/p99/max and throughput of BENCH_REQUESTS requests (default 2000)
  through each model's Service ClusterIP (kube-proxy's rules, from the node's network
  namespace: nothing else routes there): one client, then BENCH_CONCURRENCY (default 8)
  clients at once with a new connection per request, then with keep-alive.
- canary traffic share against weight: the served model at 4 replicas, a canary of
  the next version held at each of 10, 25, 50 and 75 %, BENCH_REQUESTS requests
  through the Service (a new connection each): the share the new version answered,
  beside the pods' ratio (a weight is served in whole pods).

    flock /tmp/realnode.lock python -m tests.bench.models

When the real node cannot start here it prints one line saying why and exits 0.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client import AppsV1Api, CoreV1Api, CustomObjectsApi, V1Namespace, V1ObjectMeta
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from modelsync.api import constants as c
from modelsync.serving.canary import split
from testcluster import build, launcher, modelimages, wheels
from testcluster import node as nodemod
from testcluster.objectstore import ObjectStore, ensure_versitygw
from tests.bench.common import percentile, update_results
from tests.integration.conftest import BUCKET, STORE_HOST
from tests.integration.real_node.test_models_real import (
    INFER_BODY,
    SECRET,
    model_yaml,
    own_operator,
    service_ip,
    storage_secret,
)
from tests.support.cluster import LocalCluster
from tests.support.gitserver import GitHttpServer, WorkRepo
from tests.support.kube import (
    install_crds,
    install_tenant_role,
    make_tenant,
    wait_for,
    wait_for_set,
)
from tests.support.models import MD, ROWS, TRAIN, ready_on
from tests.support.syncs import Syncs

NAMESPACE = "bench-models"
ROLLOUT_TIMEOUT = 600.0
PERIOD = 0.1  # how often the status and the pods are read while a rollout runs
WARMUP = 50  # requests sent before each latency run, not counted
# Traffic share against weight: the canary's weights, at this many replicas.
CANARY_WEIGHTS = (10, 25, 50, 75)
CANARY_REPLICAS = 4

# Asks the model (in the node's network namespace) until it answers `expected`; prints
# the monotonic time of that answer (the same clock as the host's: one machine).
FIRST_ANSWER = """
import json, sys, time, urllib.request
url, body, expected, key, timeout = sys.argv[1:6]
expected, deadline, tries = json.loads(expected), time.monotonic() + float(timeout), 0
while time.monotonic() < deadline:
    tries += 1
    try:
        request = urllib.request.Request(url, data=body.encode(),
                                         headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=5).read())
        got = answer["outputs"][0]["data"] if key == "v2" else answer["predictions"]
        if got == expected:
            print(json.dumps({"at": time.monotonic(), "tries": tries}))
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.05)
sys.exit(f"no answer {expected} from {url} in {timeout}s")
"""

# N requests from C client threads, each on a new connection per request or on one it
# keeps; seconds per request (successful or not), errors, wrong answers, wall time.
LOAD = """
import http.client, json, socket, sys, threading, time
host, port, path, body, expected, key = sys.argv[1:7]
total, clients, warmup = int(sys.argv[7]), int(sys.argv[8]), int(sys.argv[10])
keepalive, port, expected = sys.argv[9] == "1", int(port), json.loads(expected)
headers = {"Content-Type": "application/json"}
lock, seconds, errors, wrong, left = threading.Lock(), [], [], [0], [total]

class Connection(http.client.HTTPConnection):
    # http.client sends the headers and the body in two writes: without NODELAY a kept
    # connection waits for the server's delayed ACK between them (40 ms), every request.
    def connect(self):
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

def ask(conn):
    if conn is None:
        conn = Connection(host, port, timeout=10)
    conn.request("POST", path, body, headers)
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
    answer = json.loads(data)
    return answer["outputs"][0]["data"] if key == "v2" else answer["predictions"]

def client(count=None):
    conn = Connection(host, port, timeout=10) if keepalive else None
    while True:
        with lock:
            if count is None:
                if left[0] == 0:
                    break
                left[0] -= 1
        if count is not None:
            if count == 0:
                break
            count -= 1
        started = time.perf_counter()
        try:
            got = ask(conn)
            ok = got == expected
            error = None
        except Exception as exc:
            ok, error = False, f"{type(exc).__name__}: {exc}"
            if conn is not None:
                conn.close()
                conn = Connection(host, port, timeout=10)
        took = time.perf_counter() - started
        if count is None:
            with lock:
                seconds.append(took)
                if error:
                    errors.append(error)
                elif not ok:
                    wrong[0] += 1
    if conn is not None:
        conn.close()

client(warmup)
threads = [threading.Thread(target=client) for _ in range(clients)]
began = time.perf_counter()
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
wall = time.perf_counter() - began
print(json.dumps({"seconds": seconds, "errors": len(errors), "first_errors": errors[:3],
                  "wrong": wrong[0], "wall": wall}))
"""


@dataclass(frozen=True)
class Served:
    """How to ask one model through its Service, and what it must answer."""

    name: str
    path: str
    body: str
    protocol: str  # "v2" (MLServer's open inference protocol) or "v1" (kserve's)
    expected: list[int]


def requests_count() -> int:
    return _positive("BENCH_REQUESTS", 2000)


def concurrency() -> int:
    return _positive("BENCH_CONCURRENCY", 8)


def _positive(variable: str, default: int) -> int:
    text = os.environ.get(variable, str(default))
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise SystemExit(f"{variable}={text!r}: expected a whole number above 0, e.g. {default}")
    return value


def train(where: Path) -> dict[str, tuple[bytes, list[int]]]:
    """Version -> (model.joblib, its predictions for ROWS), as the real-node tests train
    them: v1 and v2 answer differently."""
    python = wheels.ensure_host_venv("mlserver")
    versions: dict[str, tuple[bytes, list[int]]] = {}
    for version, shift in (("1", 0), ("2", 1)):
        path = where / f"v{version}.joblib"
        done = subprocess.run(
            [str(python), "-c", TRAIN, str(path), json.dumps(ROWS), str(shift)],
            capture_output=True,
            text=True,
            check=True,
        )
        versions[version] = (path.read_bytes(), json.loads(done.stdout))
    return versions


# ------------------------------------------------------------------ commit -> answer


SERVICE_ANSWER = "first correct answer"
POD_ANSWER = "pod answers (its own address)"


class Rollout:
    """The milestones of one model version's rollout, seconds after the commit began."""

    def __init__(self, local: LocalCluster, node: nodemod.Node, served: Served) -> None:
        self.core = CoreV1Api(local.api)
        self.objects = CustomObjectsApi(local.api)
        self.local, self.node, self.served = local, node, served
        self.seen: dict[str, float] = {}
        self.started = 0.0
        # Milestone -> the client asking for it: through the Service, and the new pod
        # itself (when the model is loaded, whatever its readiness probe says yet).
        self.askers: dict[str, subprocess.Popen[str]] = {}
        self.initializer_seconds: float | None = None

    def run(
        self, version: str, push: Callable[[], None], sync: Callable[[], None], *, served: bool
    ) -> None:
        """Commit and push, ask for a sync, and read the rollout until the first correct
        answer through the Service (`served`: the Service exists already)."""
        self.started = time.monotonic()
        push()
        self._mark("pushed")
        sync()
        self._mark("sync asked")
        if served:
            self._ask_service()
        deadline = self.started + ROLLOUT_TIMEOUT
        try:
            while SERVICE_ANSWER not in self.seen or POD_ANSWER not in self.seen:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{self.served.name} v{version}: no correct answer within "
                        f"{ROLLOUT_TIMEOUT:.0f}s; seen {self.seen}"
                    )
                self._observe(version)
                if SERVICE_ANSWER not in self.askers and "synced" in self.seen:
                    self._ask_service()  # once the operator has made the model's Service
                self._collect()
                time.sleep(PERIOD)  # a benchmark's sampling period; nothing to wait on
            # The last milestones may follow the answer by a moment (status writes).
            while "model Ready" not in self.seen and time.monotonic() < deadline:
                self._observe(version)
                time.sleep(PERIOD)
        finally:
            for asker in self.askers.values():
                if asker.poll() is None:
                    asker.kill()
                    asker.wait()

    def _mark(self, milestone: str, at: float | None = None) -> None:
        if milestone not in self.seen:
            self.seen[milestone] = round((at or time.monotonic()) - self.started, 2)

    def _observe(self, version: str) -> None:  # noqa: C901 - one look at every figure of a bump
        name = self.served.name
        try:
            md = self.objects.get_namespaced_custom_object(namespace=NAMESPACE, name=name, **MD)
        except ApiException as error:
            if error.status != 404:
                raise
            md = None
        if md is not None and md["spec"]["model"]["version"] == version:
            self._mark("synced")
        selector = f"{c.LABEL_DEPLOYMENT}={name},{c.LABEL_MODEL_VERSION}={version}"
        for pod in self.core.list_namespaced_pod(NAMESPACE, label_selector=selector).items:
            self._mark("pod created")
            conditions = {
                condition.type: condition.status for condition in pod.status.conditions or []
            }
            for kind, milestone in (
                ("PodScheduled", "scheduled"),
                ("Initialized", "initialized (model downloaded)"),
            ):
                if conditions.get(kind) == "True":
                    self._mark(milestone)
            if any(
                status.state and status.state.running
                for status in pod.status.container_statuses or []
            ):
                self._mark("server started")
                if POD_ANSWER not in self.askers and pod.status.pod_ip:
                    port = pod.spec.containers[0].ports[0].container_port
                    self._ask(POD_ANSWER, f"http://{pod.status.pod_ip}:{port}")
            if conditions.get("ContainersReady") == "True":
                self._mark("containers ready")  # the model loaded; the gate's turn
            if conditions.get("Ready") == "True":
                self._mark("pod Ready")
            for status in pod.status.init_container_statuses or []:
                done = status.state and status.state.terminated
                if done is not None and done.exit_code == 0 and self.initializer_seconds is None:
                    # The kubelet's own timestamps: whole seconds.
                    self.initializer_seconds = (done.finished_at - done.started_at).total_seconds()
        if ready_on(version)(md):
            self._mark("model Ready")

    def _ask_service(self) -> None:
        """Ask through the Service, if the operator has made it yet."""
        try:
            ip, port = service_ip(self.local, NAMESPACE, self.served.name)
        except ApiException as error:
            if error.status == 404:
                return
            raise
        self._ask(SERVICE_ANSWER, f"http://{ip}:{port}")

    def _ask(self, milestone: str, base: str) -> None:
        """Ask `base` for the expected answer, from the node's network namespace, until
        it comes: the time it came is `milestone`."""
        args = (
            base + self.served.path,
            self.served.body,
            json.dumps(self.served.expected),
            self.served.protocol,
            str(ROLLOUT_TIMEOUT),
        )
        self.askers[milestone] = subprocess.Popen(
            self.node.netns_exec("python3", "-c", FIRST_ANSWER, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def _collect(self) -> None:
        for milestone, asker in self.askers.items():
            if milestone in self.seen or asker.poll() is None:
                continue
            out, err = asker.communicate()
            if asker.returncode != 0:
                raise RuntimeError(f"asking {self.served.name}: {err.strip()[-500:]}")
            self._mark(milestone, json.loads(out)["at"])

    def figures(self) -> dict[str, Any]:
        ordered = dict(sorted(self.seen.items(), key=lambda item: item[1]))
        if self.initializer_seconds is not None:
            ordered["initializer ran (kubelet, whole seconds)"] = self.initializer_seconds
        return ordered


# ------------------------------------------------------------------ latency


def latency(
    local: LocalCluster, node: nodemod.Node, served: Served, clients: int, keepalive: bool
) -> dict[str, Any]:
    """BENCH_REQUESTS requests from `clients` threads through the model's Service."""
    ip, port = service_ip(local, NAMESPACE, served.name)
    total = requests_count()
    args = (
        ip,
        str(port),
        served.path,
        served.body,
        json.dumps(served.expected),
        served.protocol,
        str(total),
        str(clients),
        "1" if keepalive else "0",
        str(WARMUP),
    )
    done = subprocess.run(
        node.netns_exec("python3", "-c", LOAD, *args),
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the load client failed: {done.stderr.strip()[-1000:]}")
    raw = json.loads(done.stdout)
    seconds: list[float] = raw["seconds"]
    return {
        "requests": len(seconds),
        "clients": clients,
        "keepalive": keepalive,
        "errors": raw["errors"],
        "first_errors": raw["first_errors"],
        "wrong_answers": raw["wrong"],
        "p50_ms": 1000 * percentile(seconds, 0.50),
        "p90_ms": 1000 * percentile(seconds, 0.90),
        "p99_ms": 1000 * percentile(seconds, 0.99),
        "max_ms": 1000 * max(seconds),
        "per_second": len(seconds) / raw["wall"],
    }


def latencies(local: LocalCluster, node: nodemod.Node, served: Served) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for label, clients, keepalive in (
        ("1 client, new connection each", 1, False),
        (f"{concurrency()} clients, new connection each", concurrency(), False),
        (f"{concurrency()} clients, keep-alive", concurrency(), True),
    ):
        print(f"[bench] {served.name}: {requests_count()} requests, {label}", flush=True)
        runs[label] = latency(local, node, served, clients, keepalive)
    return runs


# ------------------------------------------------------------------ the run


def main() -> int:
    binaries = build.ensure_binaries()
    reason = nodemod.why_not(binaries)
    if reason is not None:
        return skipped(f"the real node cannot start here: {reason}")
    with (
        tempfile.TemporaryDirectory(prefix="modelsync-bench-models-") as tmp,
        launcher.running(
            Path(tmp) / "cluster", binaries, log=io.StringIO(), die_with_parent=True
        ) as cluster,
    ):
        print("[bench] models: starting the real node", flush=True)
        try:
            node = nodemod.start(cluster, binaries, die_with_parent=True, log=io.StringIO())
        except nodemod.NodeError as error:
            return skipped(str(error).splitlines()[0])
        try:
            api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
            local = LocalCluster(cluster=cluster, binaries=binaries, api=api)
            results = run(local, node, Path(tmp))
        finally:
            nodemod.stop(cluster.root, io.StringIO())
    update_results("models", results)
    print_table(results)
    return 1 if results.get("errors") else 0


def skipped(reason: str) -> int:
    print(f"[bench] models on the real node: skipped ({reason})")
    update_results("models", {"skipped": reason})
    return 0


def run(local: LocalCluster, node: nodemod.Node, tmp: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"node_start_s": node.started_seconds, "errors": []}
    print("[bench] models: images, store, git, operator", flush=True)
    started = time.monotonic()
    references = modelimages.import_model_images(node.ctr(), io.StringIO())
    results["images_imported_s"] = round(time.monotonic() - started, 1)
    results["image_import_s"] = {
        key.removeprefix("import "): seconds
        for key, seconds in modelimages.TIMINGS.items()
        if key.startswith("import ")
    }
    trained = train(tmp)

    install_crds(local.api)
    install_tenant_role(local.api, local.binaries.helm)
    CoreV1Api(local.api).create_namespace(V1Namespace(metadata=V1ObjectMeta(name=NAMESPACE)))
    make_tenant(local.api, NAMESPACE)

    store = ObjectStore(ensure_versitygw(io.StringIO()), tmp / "store", host=STORE_HOST)
    (tmp / "git").mkdir()
    git = GitHttpServer(tmp / "git").start()
    store.start()
    try:
        store.create_bucket(BUCKET)
        for version, (body, _) in trained.items():
            store.put(BUCKET, f"iris/{version}/model.joblib", body)
        storage_secret(local, NAMESPACE, SECRET, store.storage_secret())
        syncs = Syncs(local, NAMESPACE, git)
        syncs.secret("git", git.username, git.password)
        repo = syncs.repo("models")
        with own_operator(local, NAMESPACE, references, tmp / "operator.log"):
            scenarios(local, node, syncs, repo, references, trained, results)
    finally:
        store.stop()
        git.stop()
    if results["errors"]:
        tail = (tmp / "operator.log").read_text().splitlines()[-20:]
        print("operator log, last lines:\n" + "\n".join(tail), file=sys.stderr)
    return results


def scenarios(  # noqa: C901 - the benchmark's scenarios, in order
    local: LocalCluster,
    node: nodemod.Node,
    syncs: Syncs,
    repo: WorkRepo,
    references: dict[str, str],
    trained: dict[str, tuple[bytes, list[int]]],
    results: dict[str, Any],
) -> None:
    """The rollouts, and latencies on each runtime once it answers."""
    uri = f"s3://{BUCKET}/iris"
    runtime = {
        "name": "custom",
        "image": references["kserve-custom"],
        "port": 8080,
        "args": ["--model_name=custom", "--http_port=8080"],
        "readinessPath": "/v1/models/{model}",
    }
    custom_body = json.dumps({"instances": ROWS})
    custom = Served("custom", "/v1/models/custom:predict", custom_body, "v1", trained["1"][1])

    def iris(version: int) -> Served:
        # Versions alternate between the two trained models: odd ones answer as v1.
        expected = trained["1" if version % 2 else "2"][1]
        return Served("iris", "/v2/models/iris/infer", INFER_BODY, "v2", expected)

    def push_iris(version: int, validation: list[int] | None = None) -> Callable[[], None]:
        def push() -> None:
            stored = "1" if version % 2 else "2"
            extra: dict[str, Any] | None = None
            if validation is not None:  # the inference gate: the rows, and their answer
                check = {"path": "$.outputs[0].data", "equals": validation}
                sample: dict[str, Any] = {"name": "rows", "path": "/v2/models/iris/infer"}
                sample |= {"body": json.loads(INFER_BODY), "expect": {"json": [check]}}
                extra = {"validation": {"samples": [sample]}}
            yaml = model_yaml("iris", str(version), f"{uri}/{stored}", extra=extra)
            repo.write("iris.json", yaml)
            repo.commit(f"iris v{version}")

        return push

    def push_custom() -> None:
        repo.write("custom.json", model_yaml("custom", "1", f"{uri}/1", runtime=runtime))
        repo.commit("custom v1")

    def create_sync() -> None:
        syncs.create("models", syncs.http_url(repo), secret="git")

    def request_sync() -> None:
        syncs.request("models")  # what a push webhook does

    # label, served, version, push, sync, Service exists, latency measured as
    steps: list[tuple[str, Served, int, Callable[[], None], Callable[[], None], bool, str]] = [
        (
            "mlserver (sklearn), first model on the node",
            iris(1),
            1,
            push_iris(1),
            create_sync,
            False,
            "mlserver",
        ),
        (
            "custom runtime (kserve ModelServer)",
            custom,
            1,
            push_custom,
            request_sync,
            False,
            "custom",
        ),
    ]
    for version in range(2, 2 + bumps()):
        label = f"mlserver, version bump {version - 1} -> {version}"
        steps.append((label, iris(version), version, push_iris(version), request_sync, True, ""))
    first = 2 + bumps()
    for version in range(first, first + validated()):
        label = f"mlserver, validated bump {version - 1} -> {version}"
        push = push_iris(version, validation=iris(version).expected)
        steps.append((label, iris(version), version, push, request_sync, True, ""))
    results["rollouts"], results["latency"] = {}, {}
    for label, served, version, push, sync, exists, measure_as in steps:
        print(f"[bench] commit -> first correct prediction: {label}", flush=True)
        rollout = Rollout(local, node, served)
        try:
            if exists:
                only_version(local, served.name, version - 1)  # the last rollout is over
            rollout.run(str(version), push, sync, served=exists)
            results["rollouts"][label] = rollout.figures()
            if measure_as:
                results["latency"][measure_as] = latencies(local, node, served)
        except (RuntimeError, TimeoutError, ApiException, subprocess.SubprocessError) as error:
            results["rollouts"].setdefault(label, rollout.figures())
            results["errors"].append(f"{label}: {error}")
            print(f"[bench] {label}: {error}", file=sys.stderr, flush=True)
    answers = [
        seen[SERVICE_ANSWER]
        for label, seen in results["rollouts"].items()
        if "version bump" in label and SERVICE_ANSWER in seen
    ]
    if answers:
        results["bump_answer_p50_s"] = statistics.median(answers)
        results["bump_answer_max_s"] = max(answers)
    results["gate_seconds"] = gate_seconds(results["rollouts"])
    version = 1 + bumps() + validated()  # the version served last
    print("[bench] canary: traffic share against weight", flush=True)
    try:
        results["canary_share"] = canary_shares(local, node, syncs, repo, trained, version)
    except (
        AssertionError,  # a wait of the tests' helpers that timed out
        RuntimeError,
        TimeoutError,
        ApiException,
        subprocess.SubprocessError,
    ) as error:
        results["errors"].append(f"canary traffic share: {error}")
        print(f"[bench] canary traffic share: {error}", file=sys.stderr, flush=True)


def canary_shares(
    local: LocalCluster,
    node: nodemod.Node,
    syncs: Syncs,
    repo: WorkRepo,
    trained: dict[str, tuple[bytes, list[int]]],
    version: int,
) -> dict[str, Any]:
    """Traffic share against weight: the served iris at CANARY_REPLICAS replicas, then
    for each of CANARY_WEIGHTS a canary of the next version held at that weight (one
    step, paused for a day; each weight is a new spec, so a new canary), asked
    BENCH_REQUESTS times through the Service by BENCH_CONCURRENCY clients with a new
    connection per request. The share is the answers of the new version; the pods'
    ratio (the weight rounded to whole pods) is what it should be near."""
    old, new = ("1", "2") if version % 2 else ("2", "1")
    uri = f"s3://{BUCKET}/iris"

    def commit(model_version: int, stored: str, extra: dict[str, Any]) -> None:
        spec = {"replicas": CANARY_REPLICAS, **extra}
        repo.write(
            "iris.json", model_yaml("iris", str(model_version), f"{uri}/{stored}", extra=spec)
        )
        repo.commit(f"iris v{model_version} {json.dumps(extra)}")
        syncs.request("models")

    commit(version, old, {})
    apps = AppsV1Api(local.api)
    wait_sizes(apps, "iris", CANARY_REPLICAS)
    served = Served("iris", "/v2/models/iris/infer", INFER_BODY, "v2", trained[old][1])
    shares: dict[str, Any] = {}
    for weight in CANARY_WEIGHTS:
        steps = [{"weight": weight, "pauseSeconds": 86400}]
        commit(version + 1, new, {"rollout": {"strategy": "Canary", "steps": steps}})
        canary, stable = split(CANARY_REPLICAS, weight)
        wait_sizes(apps, "iris-canary", canary)
        wait_sizes(apps, "iris", stable)
        # Pods that made room drain (preStop) and still answer until they go.
        wait_for_set(
            DynamicClient(local.api).resources.get(api_version="v1", kind="Pod"),
            lambda pods: len(pods) == CANARY_REPLICAS,
            namespace=NAMESPACE,
            label_selector=f"{c.LABEL_DEPLOYMENT}=iris",
            timeout=ROLLOUT_TIMEOUT,
            describe="the canary's pods and the stable ones, none terminating",
        )
        print(f"[bench] canary at weight {weight}: {canary} of {canary + stable} pods", flush=True)
        figures = latency(local, node, served, concurrency(), keepalive=False)
        answered = figures["requests"] - figures["errors"]
        shares[str(weight)] = {
            "canary_pods": canary,
            "pods": canary + stable,
            "pods_pct": 100.0 * canary / (canary + stable),
            # `served` expects the old version's answer: the new one's are "wrong".
            "measured_pct": 100.0 * figures["wrong_answers"] / max(1, answered),
            "requests": figures["requests"],
            "errors": figures["errors"],
        }
    return shares


def wait_sizes(apps: AppsV1Api, name: str, replicas: int, timeout: float = ROLLOUT_TIMEOUT) -> None:
    """Until Deployment `name` wants `replicas` pods, has no others, and all are available."""

    def sized(live: Any) -> bool:
        if live is None:
            return False
        status = live.status
        return bool(
            live.spec.replicas == replicas
            and (status.replicas or 0) == replicas
            and (status.updated_replicas or 0) == replicas
            and (status.available_replicas or 0) == replicas
        )

    try:
        wait_for(apps.list_namespaced_deployment, name, sized, namespace=NAMESPACE, timeout=timeout)
    except AssertionError as error:
        raise TimeoutError(str(error).splitlines()[0][:300]) from None


def gate_seconds(rollouts: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """What the inference gate adds to a rollout: from the new pod's containers ready
    (its model loaded) to the pod Ready (its samples passed), p50 and p95 of the
    validated bumps, beside the same span of the plain bumps (no gate: ~0)."""
    found: dict[str, dict[str, float]] = {}
    for kind in ("version bump", "validated bump"):
        spans = [
            seen["pod Ready"] - seen["containers ready"]
            for label, seen in rollouts.items()
            if kind in label and "pod Ready" in seen and "containers ready" in seen
        ]
        if spans:
            found[kind] = {
                "rollouts": len(spans),
                "p50_s": percentile(spans, 0.50),
                "p95_s": percentile(spans, 0.95),
            }
    return found


def validated() -> int:
    return _positive("BENCH_VALIDATED", 10)


def bumps() -> int:
    return _positive("BENCH_BUMPS", 3)


def only_version(local: LocalCluster, name: str, version: int, timeout: float = 180) -> None:
    """Wait until the model's pods are all of `version`: the previous rollout's old pod
    has drained and gone, so each bump starts from the same state."""
    core = CoreV1Api(local.api)
    selector = f"{c.LABEL_DEPLOYMENT}={name}"
    deadline = time.monotonic() + timeout
    while True:
        pods = core.list_namespaced_pod(NAMESPACE, label_selector=selector).items
        versions = {pod.metadata.labels.get(c.LABEL_MODEL_VERSION) for pod in pods}
        if versions == {str(version)}:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: pods of versions {versions} after {timeout:.0f}s")
        time.sleep(0.5)  # between rollouts; nothing timed here


# ------------------------------------------------------------------ the table


def table_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("real node start", f"{results['node_start_s']:.1f} s"),
        (
            "model images imported into containerd",
            f"{results['images_imported_s']:.1f} s ("
            + ", ".join(f"{k} {v:.1f} s" for k, v in results["image_import_s"].items())
            + ")",
        ),
    ]
    for label, seen in results.get("rollouts", {}).items():
        answer = seen.get(SERVICE_ANSWER)
        total = f"{answer:.1f} s" if answer is not None else "no answer"
        rows.append((f"commit -> first correct prediction: {label}", total))
        steps = ", ".join(f"{milestone} {at:.1f}" for milestone, at in seen.items())
        rows.append(("  seen, s after the commit began", steps))
    if "bump_answer_p50_s" in results:
        rows.append(
            (
                "commit -> first correct prediction: version bumps",
                f"median {results['bump_answer_p50_s']:.1f} s, "
                f"max {results['bump_answer_max_s']:.1f} s",
            )
        )
    for kind, figures in results.get("gate_seconds", {}).items():
        rows.append(
            (
                f"containers ready -> pod Ready, {kind}s ({figures['rollouts']:.0f})",
                f"p50 {figures['p50_s']:.2f} s, p95 {figures['p95_s']:.2f} s",
            )
        )
    for runtime, runs in results.get("latency", {}).items():
        for label, figures in runs.items():
            rows.append(
                (
                    f"latency {runtime}, {figures['requests']} requests, {label}",
                    f"p50 {figures['p50_ms']:.1f} ms, p90 {figures['p90_ms']:.1f}, "
                    f"p99 {figures['p99_ms']:.1f}, max {figures['max_ms']:.1f}; "
                    f"{figures['per_second']:.0f} req/s; errors {figures['errors']}, "
                    f"wrong {figures['wrong_answers']}",
                )
            )
    for weight, share in results.get("canary_share", {}).items():
        rows.append(
            (
                f"canary traffic share at weight {weight} %, {share['requests']} requests",
                f"{share['measured_pct']:.1f} % (pods {share['canary_pods']} of "
                f"{share['pods']}: {share['pods_pct']:.0f} %); errors {share['errors']}",
            )
        )
    rows += [("error", error.splitlines()[0][:150]) for error in results.get("errors", [])]
    return rows


def print_table(results: dict[str, Any]) -> None:
    rows = table_rows(results)
    width = max(len(label) for label, _ in rows)
    print("models on the real node")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


if __name__ == "__main__":
    raise SystemExit(main())
