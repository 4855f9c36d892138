"""`make demo`: modelsync end to end on this machine.

Brings up the local cluster (or uses the one $KUBECONFIG names, and says so),
installs the CRDs, serves `manifests/` from a git repository of its own, runs the
operator, applies a ModelSync and shows the models becoming Ready; then commits a
version bump and shows it rolling out, commits a broken version and shows the
automatic rollback. Everything stays up to look around; `make demo-down` stops it.
"""

from __future__ import annotations

import argparse
import contextlib
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
from tests.cluster import build, launcher, stages
from tests.gitserver import WorkRepo
from tests.kube import install_crds, install_tenant_role, make_tenant
from tests.models import MD
from tests.operatorproc import spawn_operator
from tests.syncs import MS

REPO = Path(__file__).resolve().parents[1]
STATE = REPO / ".cluster" / "demo"
NAMESPACE = "models"
console = Console(highlight=False)


def step(text: str) -> None:
    console.print(f"\n[bold cyan]==>[/bold cyan] [bold]{text}[/bold]")


def cluster_kubeconfig() -> tuple[Path, Path]:
    """(kubeconfig, directory of kubectl & co.): the user's cluster, or the local one."""
    binaries = build.ensure_binaries()
    existing = os.environ.get("KUBECONFIG")
    if (
        existing
        and Path(existing).exists()
        and Path(existing).resolve() != (REPO / ".cluster" / "kubeconfig").resolve()
    ):
        console.print(f"using the cluster of KUBECONFIG={existing} (unset it for a local one)")
        return Path(existing), binaries.directory
    cluster = launcher.start(REPO / ".cluster", binaries)
    return cluster.kubeconfig, binaries.directory


def table(objects: Any) -> Table:
    view = Table(title=f"ModelDeployments in {NAMESPACE}", title_justify="left")
    for column in ("NAME", "VERSION", "READY", "REVISION", "MESSAGE"):
        view.add_column(column, overflow="fold")
    items = objects.list_namespaced_custom_object(namespace=NAMESPACE, **MD)["items"]
    for md in sorted(items, key=lambda m: m["metadata"]["name"]):
        status = md.get("status") or {}
        ready = conditions.of(md, c.READY)
        rolled = (
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


def start_operator(kubeconfig: Path) -> None:
    pid_file = STATE / "operator.pid"
    if pid_file.exists():  # a demo run twice: one operator, not two
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
    log = (STATE / "operator.log").open("ab")
    process = spawn_operator(
        kubeconfig,
        "--http-port",
        "0",
        "--git-cache-dir",
        str(STATE / "git-cache"),
        "--allow-file-urls",  # the demo's repository is a directory on this machine
        log=log,
        detach=True,
    )
    pid_file.write_text(str(process.pid))


def up() -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    step("Kubernetes: a real control plane with kwok nodes (built once, then cached)")
    kubeconfig, bin_dir = cluster_kubeconfig()
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
    first = repo.commit("models from manifests/")
    console.print(f"{repo.file_url} at {first[:12]}")

    step("the operator: modelsync run (log: .cluster/demo/operator.log)")
    start_operator(kubeconfig)

    step("a ModelSync: this repository's manifests/models is the desired state of 'models'")
    body = {
        "apiVersion": c.API_VERSION,
        "kind": c.MODELSYNC_KIND,
        "metadata": {"name": "demo", "namespace": NAMESPACE},
        "spec": {"repo": {"url": repo.file_url}, "path": "manifests/models", "interval": "10s"},
    }
    try:
        objects.create_namespaced_custom_object(namespace=NAMESPACE, body=body, **MS)
    except kubernetes.client.ApiException as error:
        if error.status != 409:
            raise
        objects.patch_namespaced_custom_object(namespace=NAMESPACE, name="demo", body=body, **MS)
    names = sorted(p.stem for p in (REPO / "manifests" / "models").glob("*.yaml"))
    watch(
        objects,
        lambda: all(
            ready_on(
                objects,
                n,
                models(objects).get(n, {}).get("spec", {}).get("model", {}).get("version", "?"),
            )
            for n in names
        ),
        240,
        "every model Ready",
    )

    step("a pull request merged: iris 1.0.0 -> 1.1.0")
    iris = yaml.safe_load((repo.work / "manifests/models/iris.yaml").read_text())
    iris["spec"]["model"]["version"] = "1.1.0"
    iris["spec"]["model"]["uri"] = "s3://example-models/iris/1.1.0"
    repo.write("manifests/models/iris.yaml", yaml.safe_dump(iris, sort_keys=False))
    repo.commit("iris 1.1.0")
    watch(objects, lambda: ready_on(objects, "iris", "1.1.0"), 120, "iris 1.1.0 Ready")

    step("a broken version merged: iris 1.2.0 never becomes ready -> automatic rollback")
    iris["spec"]["model"]["version"] = "1.2.0"
    iris["spec"]["rollout"] = {"progressDeadlineSeconds": 10}
    iris["spec"]["podMetadata"] = {"labels": {stages.FAULT_LABEL: stages.NEVER_READY}}
    repo.write("manifests/models/iris.yaml", yaml.safe_dump(iris, sort_keys=False))
    repo.commit("iris 1.2.0 (broken)")

    def rolled_back() -> bool:
        status = (models(objects).get("iris") or {}).get("status") or {}
        return status.get("modelVersion") == "1.1.0" and conditions.is_true(
            status.get("conditions"), c.ROLLED_BACK
        )

    watch(objects, rolled_back, 120, "the rollback of iris 1.2.0")

    step("look around (the cluster and the operator stay up; make demo-down stops them)")
    console.print(
        f"""\
  export KUBECONFIG={kubeconfig}
  export PATH={bin_dir}:{Path(sys.executable).parent}:$PATH
  kubectl get md -n {NAMESPACE}
  kubectl modelsync status -n {NAMESPACE}
  kubectl modelsync history iris -n {NAMESPACE}
  git -C {repo.work} log --oneline""",
        markup=False,
    )
    return 0


def down() -> int:
    pid_file = STATE / "operator.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        pid_file.unlink()
    launcher.stop(REPO / ".cluster")
    shutil.rmtree(STATE, ignore_errors=True)
    console.print("demo stopped")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["up", "down"])
    raise SystemExit(up() if parser.parse_args().action == "up" else down())
