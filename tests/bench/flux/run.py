"""Flux on the same 1,000-model repository: source-controller and kustomize-controller,
built from their Go modules, on a fresh local cluster, syncing plain manifests.

Each model is the Deployment and Service our operator would create for it, rendered
by `modelsync.serving.render` from the same ModelDeployment the sync benchmark commits
(`tests.support.syncs.model_yaml`), less the owner reference (there is no ModelDeployment
here, and the garbage collector would delete objects owned by a missing one).

The Kustomization waits for what it applied (`wait: true`: Ready only once every
Deployment is available, as a ModelSync is Ready only once its models are), and the
controllers reconcile as many objects at once (`--concurrent`) as our operator has
workers.

Prints and returns: seconds from creating the GitRepository and Kustomization to all
Deployments and Services existing, to all Deployments available, and to the
Kustomization reporting the revision applied and healthy; a forced reconcile with
nothing changed (wall time, objects whose resourceVersion moved); the writes per
model from the API server's audit log, cold and for a version bump of BUMP models in
one commit; each controller's peak RSS.

    python -m tests.bench.flux [--models 1000] [--build-only]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import kubernetes
import yaml
from kubernetes.client import AppsV1Api, CoreV1Api, CustomObjectsApi, V1Namespace, V1ObjectMeta

from modelsync.api.manifest import child
from modelsync.runtime.settings import OperatorSettings
from modelsync.serving.render import render
from testcluster import launcher
from tests.bench.common import fresh_cluster, peak_rss
from tests.bench.flux import build
from tests.support import audit
from tests.support.gitserver import GitHttpServer, WorkRepo
from tests.support.kube import install_crds
from tests.support.syncs import model_yaml

FLUX_NAMESPACE = "flux-system"
NAMESPACE = "bench"  # where the models go, as in tests/bench/sync.py
NAME = "models"
GIT_SECRET = "git-auth"
GITREPOSITORY = {"group": "source.toolkit.fluxcd.io", "version": "v1", "plural": "gitrepositories"}
KUSTOMIZATION = {
    "group": "kustomize.toolkit.fluxcd.io",
    "version": "v1",
    "plural": "kustomizations",
}
# Ready=False reasons of a Kustomization that no retry within the benchmark would clear.
FAILED = {"ReconciliationFailed", "BuildFailed", "HealthCheckFailed", "PruneFailed"}
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
# The controllers' client-side API rate limit unless told otherwise (fluxcd/pkg/runtime).
FLUX_QPS, FLUX_BURST = 50.0, 300
POLL = 0.5  # seconds between lists of up to 1,000 objects: frequent, yet light on the API
BUMP = 100  # models a version-bump commit changes, as tests/bench/gitops.py


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--build-only", action="store_true", help="build (or find) and exit")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument(
        "--kube-qps", type=float, help=f"both controllers' API rate limit (default {FLUX_QPS})"
    )
    parser.add_argument("--kube-burst", type=int, help=f"their burst above it ({FLUX_BURST})")
    args = parser.parse_args()
    if args.build_only:
        print(build.ensure_binaries().directory)
        return 0
    figures = run_flux(args.models, kube_qps=args.kube_qps, kube_burst=args.kube_burst)
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0


def run_flux(
    n: int,
    log: TextIO = sys.stderr,
    *,
    kube_qps: float | None = None,
    kube_burst: int | None = None,
) -> dict[str, Any]:
    """Sync `n` models with Flux on a fresh cluster; the figures, by name, in seconds or
    bytes (`*_seconds`, `*_bytes`), plus `models` and `resync_changed_objects`.
    `kube_qps`/`kube_burst` set both controllers' client-side API rate limit (Flux's
    defaults, 50 and 300, when None), e.g. to match our operator's."""
    limits = [f"--kube-api-qps={kube_qps}"] if kube_qps is not None else []
    limits += [f"--kube-api-burst={kube_burst}"] if kube_burst is not None else []
    # As many at once as our operator's workers (kustomize-controller's default is 4).
    limits.append(f"--concurrent={OperatorSettings.workers}")
    binaries = build.ensure_binaries(log)  # before the cluster: a first build takes minutes
    with fresh_cluster(n) as cluster, tempfile.TemporaryDirectory(prefix="modelsync-flux-") as tmp:
        figures = measure(cluster, binaries, Path(tmp), n, limits, log)
    figures["kube_api_qps"] = FLUX_QPS if kube_qps is None else kube_qps
    figures["kube_api_burst"] = FLUX_BURST if kube_burst is None else kube_burst
    report(figures, binaries)
    return figures


# --------------------------------------------------------------------------- the repository


class _QuotingDumper(yaml.SafeDumper):
    """Quotes every string that starts like a number. PyYAML writes YAML 1.1, where a
    hex digest such as `5278077987999e20` is a string and so stays bare; Go's YAML 1.2
    reads it as a float, and the API server then rejects the label."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = '"' if text[:1] in set("0123456789+-.") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_QuotingDumper.add_representer(str, _represent_str)


def model_manifests(name: str, version: str = "1") -> str:
    """The Service and Deployment our operator renders for one model, as plain YAML."""
    md = yaml.safe_load(model_yaml(name, version=version))
    md["metadata"].update(namespace=NAMESPACE, uid="")
    objects = render(md).objects
    for obj in objects:
        child(obj, "metadata").pop("ownerReferences")
    return yaml.dump_all(objects, Dumper=_QuotingDumper, sort_keys=False)


def write_repo(root: Path, n: int) -> WorkRepo:
    root.mkdir()
    repo = WorkRepo(root, NAME)
    for index in range(n):
        name = f"model-{index:04d}"
        repo.write(f"models/{name}.yaml", model_manifests(name))
    repo.commit("generated models")
    return repo


# --------------------------------------------------------------------------- the controllers


@dataclass
class Controller:
    name: str
    process: subprocess.Popen[bytes]
    health_port: int
    log_path: Path

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise SystemExit(f"{self.name} exited ({self.process.returncode}):\n{self.log_tail()}")
        try:
            url = f"http://127.0.0.1:{self.health_port}/readyz"
            with urllib.request.urlopen(url, timeout=5) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the benchmark dies, so none is left behind."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def spawn(binary: Path, kubeconfig: Path, tmp: Path, *args: str) -> Controller:
    metrics, health = launcher.free_ports(2)
    log_path = tmp / f"{binary.name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(binary),
                f"--metrics-addr=127.0.0.1:{metrics}",
                f"--health-addr=127.0.0.1:{health}",
                "--enable-leader-election=false",
                "--watch-all-namespaces=true",
                "--log-level=info",
                *args,
            ],
            # controller-runtime's GetConfig reads KUBECONFIG; RUNTIME_NAMESPACE is where
            # the controllers would run as pods (their events and defaults refer to it).
            env={**os.environ, "KUBECONFIG": str(kubeconfig), "RUNTIME_NAMESPACE": FLUX_NAMESPACE},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    return Controller(binary.name, process, health, log_path)


@contextlib.contextmanager
def running_controllers(
    binaries: build.FluxBinaries, kubeconfig: Path, tmp: Path, extra: list[str]
) -> Iterator[tuple[Controller, Controller]]:
    storage = tmp / "storage"
    storage.mkdir()
    address = f"127.0.0.1:{launcher.free_ports(1)[0]}"
    source = spawn(
        binaries.source_controller,
        kubeconfig,
        tmp,
        f"--storage-path={storage}",
        f"--storage-addr={address}",
        f"--storage-adv-addr={address}",  # kustomize-controller fetches artifacts from here
        *extra,
    )
    kustomize = spawn(
        binaries.kustomize_controller, kubeconfig, tmp, "--no-remote-bases=true", *extra
    )
    try:
        poll("the Flux controllers", lambda: source.ready() and kustomize.ready(), 120)
        yield source, kustomize
    finally:
        for controller in (kustomize, source):
            controller.stop()


# --------------------------------------------------------------------------- the cluster


def prepare_namespaces(api: kubernetes.client.ApiClient, server: GitHttpServer) -> None:
    core = CoreV1Api(api)
    for namespace in (FLUX_NAMESPACE, NAMESPACE):
        core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=namespace)))
    core.create_namespaced_secret(
        FLUX_NAMESPACE,
        kubernetes.client.V1Secret(
            metadata=V1ObjectMeta(name=GIT_SECRET),
            string_data={"username": server.username, "password": server.password},
        ),
    )


def create_sync(api: kubernetes.client.ApiClient, url: str) -> None:
    """A GitRepository polled each minute and a Kustomization of the whole tree, pruning,
    with health checks (`wait: true`), as a ModelSync waits for its models."""
    objects = CustomObjectsApi(api)
    objects.create_namespaced_custom_object(
        namespace=FLUX_NAMESPACE,
        body={
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": NAME},
            "spec": {
                "interval": "1m",
                "url": url,
                "ref": {"branch": "main"},
                "secretRef": {"name": GIT_SECRET},
            },
        },
        **GITREPOSITORY,
    )
    objects.create_namespaced_custom_object(
        namespace=FLUX_NAMESPACE,
        body={
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": NAME},
            "spec": {
                # Like the ModelSync of tests/bench/sync.py: no periodic run while measuring.
                "interval": "1h",
                "sourceRef": {"kind": "GitRepository", "name": NAME},
                "path": "./",
                "prune": True,
                "wait": True,
                # Health checks give up after this; 1,000 models come up well within.
                "timeout": "30m",
            },
        },
        **KUSTOMIZATION,
    )


# --------------------------------------------------------------------------- observing


def poll(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(POLL)


def list_items(call: Callable[..., Any]) -> list[dict[str, Any]]:
    """A namespaced list as plain JSON: building the client's models for 1,000
    Deployments would take longer than the apply it is timing."""
    response = call(NAMESPACE, _preload_content=False)
    items: list[dict[str, Any]] = json.loads(response.data)["items"]
    return items


def available(deployment: dict[str, Any]) -> bool:
    wanted = deployment["spec"].get("replicas", 1)
    status = deployment.get("status") or {}
    return bool(
        status.get("observedGeneration") == deployment["metadata"]["generation"]
        and status.get("updatedReplicas", 0) == wanted
        and status.get("availableReplicas", 0) == wanted
    )


def resource_versions(api: kubernetes.client.ApiClient) -> dict[str, str]:
    found = {}
    for kind, call in (
        ("Deployment", AppsV1Api(api).list_namespaced_deployment),
        ("Service", CoreV1Api(api).list_namespaced_service),
    ):
        for item in list_items(call):
            found[f"{kind}/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
    return found


def kustomization(api: kubernetes.client.ApiClient) -> dict[str, Any]:
    found: dict[str, Any] = CustomObjectsApi(api).get_namespaced_custom_object(
        namespace=FLUX_NAMESPACE, name=NAME, **KUSTOMIZATION
    )
    return found


def fail_on_error(status: dict[str, Any]) -> None:
    """Stop at a failed apply: the Kustomization would only try again after its interval."""
    for condition in status.get("conditions") or []:
        if condition["type"] == "Ready" and condition.get("reason") in FAILED:
            raise SystemExit(f"the Kustomization failed: {condition.get('message')}")


def gitrepository_ready(api: kubernetes.client.ApiClient) -> bool:
    found = CustomObjectsApi(api).get_namespaced_custom_object(
        namespace=FLUX_NAMESPACE, name=NAME, **GITREPOSITORY
    )
    return bool((found.get("status") or {}).get("artifact"))


# --------------------------------------------------------------------------- the benchmark


def measure(
    cluster: launcher.Cluster,
    binaries: build.FluxBinaries,
    tmp: Path,
    n: int,
    extra: list[str],
    log: TextIO,
) -> dict[str, Any]:
    api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    # Flux's CRDs as its releases ship them, from the module cache.
    install_crds(api, paths=build.crd_files(binaries), field_manager="modelsync-bench")
    repo = write_repo(tmp / "git", n)
    server = GitHttpServer(tmp / "git").start()
    try:
        prepare_namespaces(api, server)
        with running_controllers(binaries, cluster.kubeconfig, tmp, extra) as controllers:
            source, kustomize = controllers
            print(f"[flux] controllers up; syncing {n} models", file=log, flush=True)
            writes = audit.AuditLog(cluster.audit_log)
            mark = writes.mark()
            figures: dict[str, Any] = first_sync(
                api, server.url(repo.bare.name), f"main@sha1:{repo.head()}", n
            )
            time.sleep(5)  # the last writes of the wave land in the log first
            figures["writes_cold"] = audit.per_model(writes.since(mark), n, audit.FLUX_AGENTS)
            print(f"[flux] cold: {audit.describe(figures['writes_cold'])}", file=log, flush=True)
            figures.update(bump(api, repo, writes, min(n, BUMP), log))
            figures.update(resync(api))
            figures["source_controller_peak_rss_bytes"] = peak_rss(source.process.pid)
            figures["kustomize_controller_peak_rss_bytes"] = peak_rss(kustomize.process.pid)
    finally:
        server.stop()
    return {"models": n, **figures}


def request_reconcile(api: kubernetes.client.ApiClient) -> str:
    """Fetch and apply now (as `flux reconcile kustomization --with-source`)."""
    token = str(time.time())
    for name, resource in ((NAME, GITREPOSITORY), (NAME, KUSTOMIZATION)):
        CustomObjectsApi(api).patch_namespaced_custom_object(
            namespace=FLUX_NAMESPACE,
            name=name,
            body={"metadata": {"annotations": {REQUESTED_AT: token}}},
            **resource,
        )
    return token


def bump(
    api: kubernetes.client.ApiClient, repo: WorkRepo, writes: audit.AuditLog, k: int, log: TextIO
) -> dict[str, Any]:
    """One commit bumps the version of `k` models: the time until the Kustomization has
    applied it and found it healthy, and the writes it cost per bumped model."""
    for index in range(k):
        name = f"model-{index:04d}"
        repo.write(f"models/{name}.yaml", model_manifests(name, version="2"))
    revision = f"main@sha1:{repo.commit(f'bump {k} models')}"
    mark = writes.mark()
    started = time.monotonic()
    request_reconcile(api)

    def healthy() -> bool:
        status = kustomization(api).get("status") or {}
        fail_on_error(status)
        return status.get("lastAppliedRevision") == revision and any(
            x["type"] == "Ready" and x["status"] == "True" for x in status.get("conditions") or []
        )

    poll(f"the bump of {k} models applied and healthy", healthy, 1800)
    figures: dict[str, Any] = {"bump_models": k, "bump_ready_seconds": time.monotonic() - started}
    time.sleep(5)
    figures["writes_bump"] = audit.per_model(writes.since(mark), k, audit.FLUX_AGENTS)
    print(
        f"[flux] bump of {k}: healthy {figures['bump_ready_seconds']:.1f} s; "
        f"{audit.describe(figures['writes_bump'])}",
        file=log,
        flush=True,
    )
    return figures


def first_sync(
    api: kubernetes.client.ApiClient, url: str, revision: str, n: int
) -> dict[str, float]:
    apps, core = AppsV1Api(api), CoreV1Api(api)
    started = time.monotonic()
    create_sync(api, url)
    figures: dict[str, float] = {}

    def note(name: str, done: bool) -> bool:
        if done and name not in figures:
            figures[name] = time.monotonic() - started
        return name in figures

    def applied() -> bool:
        note("artifact_seconds", gitrepository_ready(api))
        status = kustomization(api).get("status") or {}
        fail_on_error(status)
        reported = note(
            "kustomization_applied_seconds", status.get("lastAppliedRevision") == revision
        )
        deployments = len(list_items(apps.list_namespaced_deployment))
        services = len(list_items(core.list_namespaced_service))
        listed = note("applied_seconds", deployments == n and services == n)
        return reported and listed

    poll(f"{n} Deployments and Services applied", applied, 900)

    def ready() -> bool:
        return sum(map(available, list_items(apps.list_namespaced_deployment))) == n

    poll(f"{n} Deployments available", ready, 1800)
    figures["ready_seconds"] = time.monotonic() - started

    def healthy() -> bool:
        status = kustomization(api).get("status") or {}
        fail_on_error(status)
        return any(
            x["type"] == "Ready" and x["status"] == "True" for x in status.get("conditions") or []
        )

    poll("the Kustomization Ready (its health checks passed)", healthy, 1800)
    figures["kustomization_ready_seconds"] = time.monotonic() - started
    return figures


def resync(api: kubernetes.client.ApiClient) -> dict[str, float]:
    """A reconcile on request with nothing changed: the wall time until the controller
    says it handled the request, and how many objects it touched meanwhile."""
    time.sleep(5)  # let the last status updates of Deployments land first
    before = resource_versions(api)
    token = str(time.time())
    started = time.monotonic()
    CustomObjectsApi(api).patch_namespaced_custom_object(
        namespace=FLUX_NAMESPACE,
        name=NAME,
        body={"metadata": {"annotations": {REQUESTED_AT: token}}},
        **KUSTOMIZATION,
    )
    poll(
        "the requested reconcile",
        lambda: (kustomization(api).get("status") or {}).get("lastHandledReconcileAt") == token,
        600,
    )
    seconds = time.monotonic() - started
    after = resource_versions(api)
    changed = sum(1 for key, version in after.items() if before.get(key) != version)
    return {"resync_seconds": seconds, "resync_changed_objects": changed}


def report(figures: dict[str, Any], binaries: build.FluxBinaries) -> None:
    mib = 2**20
    versions = ", ".join(f"{name} {version}" for name, version in binaries.versions.items())
    rows = [
        ("models", f"{figures['models']:.0f}"),
        (
            "API rate limit (qps/burst)",
            f"{figures['kube_api_qps']:g}/{figures['kube_api_burst']:g}",
        ),
        ("GitRepository artifact ready", f"{figures['artifact_seconds']:.1f} s"),
        ("all Deployments+Services exist", f"{figures['applied_seconds']:.1f} s"),
        ("Kustomization reports applied", f"{figures['kustomization_applied_seconds']:.1f} s"),
        ("all Deployments available", f"{figures['ready_seconds']:.1f} s"),
        ("Kustomization Ready (wait: true)", f"{figures['kustomization_ready_seconds']:.1f} s"),
        ("writes per model, cold", f"{figures['writes_cold']['writes_per_model']:.2f}"),
        (
            f"writes per model, bump of {figures['bump_models']}",
            f"{figures['writes_bump']['writes_per_model']:.2f}",
        ),
        ("resync, nothing changed", f"{figures['resync_seconds']:.1f} s"),
        ("resync, objects changed", f"{figures['resync_changed_objects']:.0f}"),
        (
            "source-controller peak RSS",
            f"{figures['source_controller_peak_rss_bytes'] / mib:.0f} MiB",
        ),
        (
            "kustomize-controller peak RSS",
            f"{figures['kustomize_controller_peak_rss_bytes'] / mib:.0f} MiB",
        ),
    ]
    print(f"Flux ({versions}):")
    for label, value in rows:
        print(f"  {label:<34} {value}")


if __name__ == "__main__":
    raise SystemExit(main())
