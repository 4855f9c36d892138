"""`make demo`: modelsync end to end on this machine.

Brings up the local cluster (or uses the one $KUBECONFIG names, and says so),
installs the CRDs, serves `manifests/` from a git repository of its own, runs the
operator, applies the ModelSyncs of its two environments (staging and prod, each a
Kustomize overlay) and shows the models becoming Ready; then promotes the version
staging serves to prod (`modelsync promote`, a branch merged) and shows it rolling out,
commits a broken version to staging, shows the automatic rollback and promote refusing
it. Everything stays up to look around; `make demo-down` stops it.

Where the real node can start (root, containerd & co.), the operator runs as an
installation runs it: `helm install` of helm/modelsync with the operator image built
here, its two replicas on the real node; git and an S3 store listen on the host's end
of the node's veth, and one more model, trained here, is served there for real by
MLServer: the demo ends with its prediction, asked through the model's Service.
Elsewhere (or on the cluster of $KUBECONFIG) the operator runs as a process here and
every model is on kwok's fake nodes, as the demo says.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table

from modelsync.api import conditions
from modelsync.api import constants as c
from testcluster import (
    addresses,
    build,
    images,
    launcher,
    modelimages,
    operator_image,
    stages,
    wheels,
)
from testcluster import node as nodemod
from testcluster.objectstore import ObjectStore, ensure_versitygw, free_port
from testcluster.renderers import ensure_renderers
from tests.support.gitserver import GitHttpServer, WorkRepo, _git
from tests.support.kube import TENANT_ACCOUNT, install_crds, install_tenant_role, make_tenant
from tests.support.models import MD, ROWS, train_iris
from tests.support.operatorproc import spawn_operator
from tests.support.syncs import MS

REPO = Path(__file__).resolve().parents[1]
CLUSTER_ROOT = REPO / ".cluster"
STATE = CLUSTER_ROOT / "demo"
NAMESPACE = "models"
SYSTEM_NAMESPACE = "modelsync-system"
RELEASE = "modelsync"
REAL_MODEL = "iris-real"  # the model served for real, on the real node (in prod)
ENVIRONMENTS = "manifests/environments.yaml"
PROD_OVERLAY = "manifests/overlays/prod"
STAGING_IRIS = "manifests/overlays/staging/iris.yaml"  # staging's pin of iris
BUCKET = "demo-models"
IRIS_SPECIES = ("setosa", "versicolor", "virginica")  # the classes the model predicts
STORE_SECRET = "model-store"  # noqa: S105 - the Secret's name
console = Console(highlight=False)


def step(text: str) -> None:
    console.print(f"\n[bold cyan]==>[/bold cyan] [bold]{text}[/bold]")


def cluster_kubeconfig() -> tuple[Path, Path, launcher.Cluster | None]:
    """(kubeconfig, directory of kubectl & co., the local cluster or None): the user's
    cluster, or the local one."""
    binaries = build.ensure_binaries()
    existing = os.environ.get("KUBECONFIG")
    if (
        existing
        and Path(existing).exists()
        and Path(existing).resolve() != (CLUSTER_ROOT / "kubeconfig").resolve()
    ):
        console.print(f"using the cluster of KUBECONFIG={existing} (unset it for a local one)")
        return Path(existing), binaries.directory, None
    cluster = launcher.start(CLUSTER_ROOT, binaries)
    return cluster.kubeconfig, binaries.directory, cluster


def real_node(cluster: launcher.Cluster | None) -> nodemod.Node | None:
    """The real node, started; None (and the demo says why) where it cannot start."""
    if cluster is None:
        console.print("no real node on a cluster of your own: every model runs on kwok")
        return None
    binaries = build.ensure_binaries()
    reason = nodemod.why_not(binaries)
    if reason is None:
        try:
            return nodemod.start(cluster, binaries)
        except nodemod.NodeError as error:
            reason = str(error).splitlines()[0]
    console.print(
        f"[yellow]the real node cannot start here ({reason}):[/yellow] the operator runs "
        "as a process here and every model on kwok's fake nodes; none answers a request"
    )
    return None


def table(objects: Any) -> Table:
    view = Table(title=f"ModelDeployments in {NAMESPACE}", title_justify="left")
    for column in ("NAME", "VERSION", "READY", "REVISION", "MESSAGE"):
        view.add_column(column, overflow="fold")
    items = objects.list_namespaced_custom_object(namespace=NAMESPACE, **MD)["items"]
    for md in sorted(items, key=lambda m: m["metadata"]["name"]):
        status = md.get("status") or {}
        ready: dict[str, Any] = conditions.of(md, c.READY)
        rolled: dict[str, Any] | None = (
            conditions.of(md, c.ROLLED_BACK)
            if conditions.is_true(status.get("conditions"), c.ROLLED_BACK)
            else None
        )
        colour = "green" if ready.get("status") == "True" else "yellow"
        view.add_row(
            md["metadata"]["name"],
            status.get("modelVersion", "?"),
            f"[{colour}]{ready.get('status', '…')}[/{colour}]",
            status.get("currentRevision", "")[:24],
            (rolled or ready).get("message", "")[:90],
        )
    return view


def watch(objects: Any, until: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    with Live(table(objects), console=console, refresh_per_second=2) as live:
        while not until():
            if time.monotonic() > deadline:
                live.stop()
                raise SystemExit(
                    f"demo: {what} did not happen within {timeout:.0f}s; "
                    f"see {STATE / 'operator.log'}"
                )
            time.sleep(1)
            live.update(table(objects))
        live.update(table(objects))


def models(objects: Any) -> dict[str, dict[str, Any]]:
    items = objects.list_namespaced_custom_object(namespace=NAMESPACE, **MD)["items"]
    return {md["metadata"]["name"]: md for md in items}


def ready_on(objects: Any, name: str, version: str) -> bool:
    md = models(objects).get(name) or {}
    status = md.get("status") or {}
    return status.get("modelVersion") == version and conditions.is_true(
        status.get("conditions"), c.READY
    )


def _kill(pid_file: Path, group: bool = False) -> None:
    """Stop the process `pid_file` names (its whole session when `group`), if it runs."""
    if not pid_file.exists():
        return
    with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
        pid = int(pid_file.read_text())
        if group:
            os.killpg(pid, signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
    pid_file.unlink(missing_ok=True)


def start_operator(kubeconfig: Path) -> None:
    """The kwok way: the operator as a process on this machine."""
    _kill(STATE / "operator.pid")  # a demo run twice: one operator, not two
    log = (STATE / "operator.log").open("ab")
    process = spawn_operator(
        kubeconfig,
        "--http-port",
        "0",
        "--git-cache-dir",
        str(STATE / "git-cache"),
        "--allow-file-urls",  # the demo's repository is a directory on this machine
        "--kustomize",
        str(ensure_renderers()["kustomize"]),
        log=log,
        detach=True,
    )
    (STATE / "operator.pid").write_text(str(process.pid))


def serve_git(root: Path) -> str:
    """A git server for the operator's pods, on the host's end of the node's veth, in a
    session of its own (it outlives `make demo`); its base URL."""
    _kill(STATE / "git-server.pid")
    port = free_port(addresses.HOST_IP)
    with (STATE / "git-server.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tools.demo", "git-server", str(root), str(port)],
            cwd=REPO,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    (STATE / "git-server.pid").write_text(str(process.pid))
    url = f"http://{addresses.HOST_IP}:{port}"
    deadline = time.monotonic() + 30
    while subprocess.run(
        ["git", "ls-remote", f"{url}/models.git"], capture_output=True, check=False
    ).returncode:
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"demo: the git server did not start; see {STATE / 'git-server.log'}")
        time.sleep(0.2)
    return url


def git_server(root: Path, port: int) -> int:
    """`python -m tools.demo git-server ROOT PORT` (what serve_git starts): anyone may
    read, as from a public repository host."""
    server = GitHttpServer(root, port=port, anonymous=True, host=addresses.HOST_IP)
    server.serve_forever()
    return 0


def object_store(api: Any) -> tuple[ObjectStore, list[int]]:
    """An S3 store where pods reach it, holding a classifier trained here, and the
    Secret its ModelDeployment names; returns the store and the model's predictions."""
    _kill(STATE / "objectstore.pid", group=True)
    shutil.rmtree(STATE / "objectstore", ignore_errors=True)  # a demo run twice: afresh
    store = ObjectStore(ensure_versitygw(), STATE / "objectstore" / "data", host=addresses.HOST_IP)
    store.start()
    assert store._process is not None
    (STATE / "objectstore.pid").write_text(str(store._process.pid))
    store.create_bucket(BUCKET)
    model = STATE / "model.joblib"
    predictions = train_iris(wheels.ensure_host_venv("mlserver"), model)
    store.put(BUCKET, f"{REAL_MODEL}/1/model.joblib", model.read_bytes())
    core = kubernetes.client.CoreV1Api(api)
    secret = kubernetes.client.V1Secret(
        metadata=kubernetes.client.V1ObjectMeta(name=STORE_SECRET),
        string_data=store.storage_secret(),
    )
    with contextlib.suppress(kubernetes.client.ApiException):
        core.delete_namespaced_secret(STORE_SECRET, NAMESPACE)
    core.create_namespaced_secret(NAMESPACE, secret)
    return store, predictions


def real_model_yaml() -> str:
    """The model served for real: MLServer on the real node, from the store above."""
    body = {
        "apiVersion": c.API_VERSION,
        "kind": c.MODELDEPLOYMENT_KIND,
        "metadata": {"name": REAL_MODEL},
        "spec": {
            "model": {
                "name": REAL_MODEL,
                "version": "1",
                "uri": f"s3://{BUCKET}/{REAL_MODEL}/1",
                "format": "sklearn",
                "storageSecretRef": {"name": STORE_SECRET},
            },
            "runtime": {"name": "mlserver"},
            "replicas": 1,
            "nodeSelector": nodemod.NODE_SELECTOR,
            "tolerations": [nodemod.TOLERATION],
            "rollout": {"progressDeadlineSeconds": 600},
        },
    }
    return "# Trained by `make demo`, served for real on the real node.\n" + yaml.safe_dump(
        body, sort_keys=False
    )


def helm_install(node: nodemod.Node, kubeconfig: Path, bin_dir: Path, api: Any) -> None:
    """The operator image built here, imported into the node, and `helm install` of the
    chart with it: two replicas on the real node, one leading."""
    archive, image = operator_image.operator_image()
    images.import_image(node.ctr(), archive)
    model_images = modelimages.import_model_images(node.ctr())
    repository, tag = image.rsplit(":", 1)
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "nodeSelector": nodemod.NODE_SELECTOR,
        "tolerations": [nodemod.TOLERATION],
        "watchNamespaces": [NAMESPACE],
        "tenancy": {"defaultServiceAccount": TENANT_ACCOUNT},
        "runtimes": {"mlserver": {"image": model_images["mlserver"]}},
        "storageInitializer": {"image": model_images["storage-initializer"]},
        "imagePullPolicy": "Never",
        "operator": {"logFormat": "text"},
    }
    (STATE / "values.yaml").write_text(yaml.safe_dump(values))
    console.print(f"image {image}; values: {STATE / 'values.yaml'}")
    subprocess.run(
        [
            str(bin_dir / "helm"),
            "upgrade",
            "--install",
            RELEASE,
            str(REPO / "helm" / "modelsync"),
            "--namespace",
            SYSTEM_NAMESPACE,
            "--create-namespace",
            "--force-conflicts",  # the CRDs installed above
            "--values",
            str(STATE / "values.yaml"),
        ],
        env={**os.environ, "KUBECONFIG": str(kubeconfig), **_helm_homes()},
        check=True,
        capture_output=True,
        text=True,
    )
    core = kubernetes.client.CoreV1Api(api)

    def running() -> list[str]:
        pods = core.list_namespaced_pod(
            SYSTEM_NAMESPACE, label_selector=f"app.kubernetes.io/instance={RELEASE}"
        ).items
        rows = []
        for pod in pods:
            ready = any(
                x.type == "Ready" and x.status == "True" for x in pod.status.conditions or []
            )
            leads = (pod.metadata.labels or {}).get(c.LABEL_LEADER) == "true"
            rows.append(f"{pod.metadata.name} {'Ready' if ready else pod.status.phase}")
            rows[-1] += " (leader)" if leads else ""
        return sorted(rows)

    deadline = time.monotonic() + 300
    while not (
        len(rows := running()) == 2
        and all(" Ready" in row for row in rows)
        and any("leader" in row for row in rows)
    ):
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: the operator's pods are not Ready after 300s: {rows}")
        time.sleep(1)
    for row in rows:
        console.print(f"  {SYSTEM_NAMESPACE}/{row} on {nodemod.NAME}")


def _helm_homes() -> dict[str, str]:
    """helm's caches and settings under the demo's state, not the user's home."""
    return {
        f"HELM_{kind}_HOME": str(STATE / "helm" / kind.lower())
        for kind in ("CACHE", "CONFIG", "DATA")
    }


def ask(node: nodemod.Node, api: Any, expected: list[int]) -> None:
    """One inference request through the real model's Service (its ClusterIP, routed by
    kube-proxy in the node's network namespace); prints the prediction."""
    service = kubernetes.client.CoreV1Api(api).read_namespaced_service(
        f"{REAL_MODEL}-prod", NAMESPACE
    )
    url = (
        f"http://{service.spec.cluster_ip}:{service.spec.ports[0].port}"
        f"/v2/models/{REAL_MODEL}/infer"
    )
    body = {
        "inputs": [
            {
                "name": "predict",
                "shape": [len(ROWS), 4],
                "datatype": "FP64",
                "data": [value for row in ROWS for value in row],
            }
        ]
    }
    console.print(f"POST {url}\n  rows: {ROWS}")
    script = (
        "import sys, time, urllib.request\n"
        "request = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), "
        "headers={'Content-Type': 'application/json'})\n"
        "for attempt in range(60):\n"
        "    try:\n"
        "        print(urllib.request.urlopen(request, timeout=30).read().decode()); break\n"
        "    except ConnectionRefusedError:\n"  # kube-proxy's rules come a moment late
        "        time.sleep(0.5)\n"
    )
    done = subprocess.run(
        node.netns_exec("python3", "-c", script, url, json.dumps(body)),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise SystemExit(f"demo: the inference request failed: {done.stderr[-1500:]}")
    answer = json.loads(done.stdout)
    prediction = answer["outputs"][0]["data"]
    species = ", ".join(IRIS_SPECIES[int(label)] for label in prediction)
    same = "as" if prediction == expected else "[red]but[/red] the model trained here said"
    console.print(
        f"[bold green]prediction: {prediction} ({species})[/bold green]\n"
        f"  the classes of the 3 rows, {same} {expected} in this process after training"
    )


def up() -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    step("Kubernetes: a real control plane with kwok nodes (built once, then cached)")
    kubeconfig, bin_dir, cluster = cluster_kubeconfig()
    node = real_node(cluster)
    api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    core, objects = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
    install_crds(api, field_manager="modelsync-dev")
    if not any(ns.metadata.name == NAMESPACE for ns in core.list_namespace().items):
        core.create_namespace(
            kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=NAMESPACE))
        )
    # As a platform team sets up a tenant: the account that applies what git holds.
    install_tenant_role(api, bin_dir / "helm")
    make_tenant(api, NAMESPACE)
    # churn.yaml loads its model from a PersistentVolumeClaim: give it one to bind.
    storage = yaml.safe_load_all("""\
apiVersion: v1
kind: PersistentVolume
metadata: {name: demo-model-store}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadOnlyMany]
  hostPath: {path: /tmp/model-store}
  claimRef: {namespace: models, name: model-store}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: model-store, namespace: models}
spec:
  accessModes: [ReadOnlyMany]
  storageClassName: ""
  volumeName: demo-model-store
  resources: {requests: {storage: 1Gi}}
""")
    for manifest in storage:
        subprocess.run(
            [str(bin_dir / "kubectl"), "apply", "--server-side", "-f", "-"],
            input=yaml.safe_dump(manifest),
            text=True,
            check=True,
            capture_output=True,
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        )

    step("git: manifests/ of this repository, in a git repository of the demo's own")
    git_root = STATE / "git"
    shutil.rmtree(git_root, ignore_errors=True)
    git_root.mkdir(parents=True)
    repo = WorkRepo(git_root, "models")
    shutil.copytree(REPO / "manifests", repo.work / "manifests")
    predictions: list[int] = []
    if node is not None:
        step("a model trained here (scikit-learn), in an S3 store the real node reaches")
        store, predictions = object_store(api)
        console.print(f"{store.endpoint}/{BUCKET}/{REAL_MODEL}/1/model.joblib")
        repo.write(f"{PROD_OVERLAY}/{REAL_MODEL}.yaml", real_model_yaml())
        kustomization = yaml.safe_load(
            (repo.work / PROD_OVERLAY / "kustomization.yaml").read_text()
        )
        kustomization["resources"].append(f"{REAL_MODEL}.yaml")  # in prod only
        repo.write(f"{PROD_OVERLAY}/kustomization.yaml", yaml.safe_dump(kustomization))
    first = repo.commit("models from manifests/")
    url = repo.file_url
    if node is not None:
        url = f"{serve_git(git_root)}/{repo.bare.name}"
    console.print(f"{url} at {first[:12]}")

    if node is None:
        step("the operator: modelsync run (log: .cluster/demo/operator.log)")
        start_operator(kubeconfig)
    else:
        step("the operator: helm install with the image built here, on the real node")
        _kill(STATE / "operator.pid")  # a kwok demo's operator, before this one
        helm_install(node, kubeconfig, bin_dir, api)

    step(f"the ModelSyncs of {ENVIRONMENTS}: staging and prod, each applying its overlay")
    apply_environments(objects, repo, url)
    watch(
        objects,
        lambda: (
            all(synced(objects, name, first) for name in ("staging", "prod"))
            and all(
                ready_on(objects, name, md["spec"]["model"]["version"])
                for name, md in models(objects).items()
            )
        ),
        600 if node is not None else 240,  # a real model server starts in tens of seconds
        "every model of both environments Ready",
    )

    step("staging serves iris 1.1.0 healthily: modelsync promote iris --from staging --to prod")
    console.print(promote(kubeconfig, repo).strip(), markup=False)
    step("the promotion's pull request merged: prod rolls iris 1.1.0 out")
    _git("checkout", "--quiet", "main", cwd=repo.work)
    _git("merge", "--quiet", "--ff-only", "modelsync/promote/iris-1.1.0", cwd=repo.work)
    _git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=repo.work)
    watch(objects, lambda: ready_on(objects, "iris-prod", "1.1.0"), 120, "iris-prod 1.1.0 Ready")

    step("a broken version merged to staging: iris 1.2.0 never becomes ready -> rollback")
    iris = yaml.safe_load((repo.work / STAGING_IRIS).read_text())
    iris["spec"]["model"]["version"] = "1.2.0"
    iris["spec"]["model"]["uri"] = "s3://example-models/iris/1.2.0"
    iris["spec"]["rollout"] = {"progressDeadlineSeconds": 10}
    iris["spec"]["podMetadata"] = {"labels": {stages.FAULT_LABEL: stages.NEVER_READY}}
    repo.write(STAGING_IRIS, yaml.safe_dump(iris, sort_keys=False))
    repo.commit("staging: iris 1.2.0 (broken)")

    def rolled_back() -> bool:
        status = (models(objects).get("iris-staging") or {}).get("status") or {}
        return status.get("modelVersion") == "1.1.0" and conditions.is_true(
            status.get("conditions"), c.ROLLED_BACK
        )

    watch(objects, rolled_back, 120, "the rollback of iris 1.2.0 in staging")
    step("modelsync promote iris --from staging --to prod: refused, staging rolled 1.2.0 back")
    console.print(promote(kubeconfig, repo, refused=True).strip(), markup=False)

    if node is not None:
        step(f"an inference request to {REAL_MODEL}, served for real on {nodemod.NAME}")
        ask(node, api, predictions)
    else:
        step("no inference request: the models run on kwok's fake nodes (no real node here)")

    step("look around (the cluster and the operator stay up; make demo-down stops them)")
    operator_logs = (
        f"kubectl logs -n {SYSTEM_NAMESPACE} -l app.kubernetes.io/instance={RELEASE}"
        if node is not None
        else f"less {STATE / 'operator.log'}"
    )
    console.print(
        f"""\
  export KUBECONFIG={kubeconfig}
  export PATH={bin_dir}:{Path(sys.executable).parent}:$PATH
  kubectl get md -n {NAMESPACE}
  kubectl modelsync status -n {NAMESPACE}
  kubectl modelsync history iris-staging -n {NAMESPACE}
  {operator_logs}
  git -C {repo.work} log --oneline""",
        markup=False,
    )
    return 0


def apply_environments(objects: Any, repo: WorkRepo, url: str) -> None:
    """The ModelSyncs of environments.yaml, following the demo's repository."""
    for body in yaml.safe_load_all((repo.work / ENVIRONMENTS).read_text()):
        body["spec"]["repo"] = {"url": url}
        body["spec"]["interval"] = "10s"
        name = body["metadata"]["name"]
        try:
            objects.create_namespaced_custom_object(namespace=NAMESPACE, body=body, **MS)
        except kubernetes.client.ApiException as error:
            if error.status != 409:
                raise
            objects.patch_namespaced_custom_object(namespace=NAMESPACE, name=name, body=body, **MS)
        console.print(f"{NAMESPACE}/{name}: {body['spec']['path']}")


def synced(objects: Any, name: str, sha: str) -> bool:
    found = objects.get_namespaced_custom_object(namespace=NAMESPACE, name=name, **MS)
    return bool((found.get("status") or {}).get("lastAppliedRevision") == f"main@sha1:{sha}")


def promote(kubeconfig: Path, repo: WorkRepo, refused: bool = False) -> str:
    """`modelsync promote iris --from staging --to prod` in the demo's clone: its output."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "modelsync", "--kubeconfig", str(kubeconfig)),
            *("-n", NAMESPACE, "promote", "iris", "--from", "staging", "--to", "prod"),
            *("--repo-dir", str(repo.work), "--kustomize", str(ensure_renderers()["kustomize"])),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO / "controller")},
    )
    if done.returncode != (1 if refused else 0):
        raise SystemExit(f"demo: modelsync promote exited {done.returncode}: {done.stderr}")
    return done.stdout + done.stderr


def down() -> int:
    _kill(STATE / "operator.pid")
    _kill(STATE / "git-server.pid", group=True)
    _kill(STATE / "objectstore.pid", group=True)
    launcher.stop(CLUSTER_ROOT)  # the real node first, then the control plane
    left = nodemod.leftovers(CLUSTER_ROOT)
    shutil.rmtree(STATE, ignore_errors=True)
    if not left:  # no mount left under it: its containers' root filesystems (GiBs) go
        shutil.rmtree(CLUSTER_ROOT / "node", ignore_errors=True)
    if left:
        console.print(f"[red]demo stopped, but these remain:[/red] {', '.join(left)}")
        return 1
    console.print("demo stopped; nothing left behind")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["up", "down", "git-server"])
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.action == "git-server":
        raise SystemExit(git_server(Path(parsed.args[0]), int(parsed.args[1])))
    raise SystemExit(up() if parsed.action == "up" else down())
