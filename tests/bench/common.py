"""What the benchmarks share: CRDs on a fresh cluster, a tenant's namespace with a git
repository, the operator as its own process, its metrics, and waiting with a deadline."""

from __future__ import annotations

import contextlib
import io
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client import CoreV1Api, CustomObjectsApi, V1Namespace, V1ObjectMeta, V1Secret

from modelsync.api import constants as c
from testcluster import build, launcher
from tests.support.gitserver import GitHttpServer, WorkRepo
from tests.support.kube import install_crds, install_tenant_role, make_tenant
from tests.support.operatorproc import spawn_operator
from tests.support.syncs import MS

RESULTS = Path(__file__).resolve().parents[2] / "bench-results.json"


@contextlib.contextmanager
def fresh_cluster(models: int = 0) -> Iterator[launcher.Cluster]:
    """A local cluster of its own, in a temporary directory, for one benchmark; with
    fake nodes enough for `models` pods (a node's 64 CPUs hold 640 of a model's 100m):
    400 a node, so a version bump's surge pods fit too, however the scheduler spreads."""
    binaries = build.ensure_binaries()
    nodes = max(2, math.ceil(models / 400))
    with (
        tempfile.TemporaryDirectory(prefix="modelsync-bench-") as tmp,
        launcher.running(
            Path(tmp) / "cluster", binaries, nodes=nodes, log=io.StringIO(), die_with_parent=True
        ) as cluster,
    ):
        yield cluster


class Tenant:
    """A tenant's namespace on a benchmark's cluster, as a platform sets one up: the
    CRDs, the tenant's ServiceAccount bound to the chart's tenant role, a git server on
    loopback with one repository ("models"), and the Secret "git" to fetch it with."""

    def __init__(self, cluster: launcher.Cluster, tmp: Path, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
        install_crds(self.api)
        self.core, self.objects = CoreV1Api(self.api), CustomObjectsApi(self.api)
        (tmp / "served").mkdir()
        self.server = GitHttpServer(tmp / "served").start()
        self.repo = WorkRepo(self.server.root, "models")
        self.url = self.server.url(self.repo.bare.name)
        self.core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=namespace)))
        install_tenant_role(self.api, build.ensure_binaries().path("helm"))
        make_tenant(self.api, namespace)
        credentials = {"username": self.server.username, "password": self.server.password}
        self.secret("git", c.SECRET_TYPE_GIT, credentials)

    def secret(self, name: str, kind: str, data: dict[str, str]) -> None:
        self.core.create_namespaced_secret(
            self.namespace, V1Secret(metadata=V1ObjectMeta(name=name), type=kind, string_data=data)
        )

    def create_sync(
        self, name: str, path: str, labels: dict[str, str] | None = None, **spec: Any
    ) -> None:
        """A ModelSync of `path` in the repository, polled hourly (the benchmark says
        when to sync); `spec` adds to its spec."""
        self.objects.create_namespaced_custom_object(
            namespace=self.namespace,
            body={
                "apiVersion": c.API_VERSION,
                "kind": c.MODELSYNC_KIND,
                "metadata": {"name": name, "labels": labels or {}},
                "spec": {
                    "repo": {"url": self.url, "secretRef": {"name": "git"}},
                    "path": path,
                    "interval": "1h",
                    **spec,
                },
            },
            **MS,
        )

    def sync_status(self, name: str) -> dict[str, Any]:
        found = self.objects.get_namespaced_custom_object(namespace=self.namespace, name=name, **MS)
        return dict(found.get("status") or {})


def wait_until(what: str, check: Any, timeout: float) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - started


def start_operator(kubeconfig: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    """`modelsync run` as its own process (so its memory is its own), ready to serve."""
    process = spawn_operator(
        kubeconfig, "--http-port", str(port), "--log-level", "WARNING", *extra, log=None
    )
    try:
        wait_until("the operator", lambda: get(port, "/readyz") == b"ok: leading", 60)
    except SystemExit:
        process.kill()
        raise
    return process


def get(port: int, path: str) -> bytes | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            body: bytes = response.read()
            return body
    except OSError:
        return None


def scrape(port: int) -> dict[str, float]:
    """Sum of each metric family (over labels) from the operator's /metrics; reconcile
    counts with result="unchanged" also appear under '<name>:unchanged'."""
    totals: dict[str, float] = {}
    for line in (get(port, "/metrics") or b"").decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name_labels, value = line.rsplit(" ", 1)
        name = name_labels.split("{", 1)[0]
        if 'result="unchanged"' in name_labels:
            name += ":unchanged"
        totals[name] = totals.get(name, 0.0) + float(value)
        if name == "modelsync_api_writes_total":
            totals[name_labels] = float(value)  # also by verb and kind
    return totals


def writes_between(before: dict[str, float], after: dict[str, float]) -> str:
    """The API writes between two scrapes, by verb and kind: '0', or what they were."""
    prefix = "modelsync_api_writes_total{"
    parts = [
        f"{after[key] - before.get(key, 0.0):.0f} {key.removeprefix(prefix).rstrip('}')}"
        for key in sorted(after)
        if key.startswith(prefix) and after[key] != before.get(key, 0.0)
    ]
    return ", ".join(parts) or "0"


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (p95 of 20 values is the 19th)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), percentile(values, 0.95)


def timed(check: Callable[[], bool], timeout: float, what: str, period: float = 0.05) -> float:
    """Seconds until `check()` holds (polled every `period`); exits on the deadline."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            print(f"timed out after {timeout:.0f}s waiting for {what}", file=sys.stderr)
            raise SystemExit(1)
        time.sleep(period)
    return time.monotonic() - started


def update_results(key: str, figures: Any) -> None:
    """Set `key` of bench-results.json, keeping what the other benchmarks wrote there."""
    try:
        results = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        results = {}
    results[key] = figures
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
