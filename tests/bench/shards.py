"""Benchmark operator shards: N models in two ModelSyncs of N/2 each, synced by one
operator, then (on a fresh cluster) by two shards (`--shard a`, `--shard b`), each
ModelSync labelled for one. Figures per layout: ModelSyncs created -> both applied, ->
every model Ready; a full resync with nothing changed (each ModelSync asked to sync
again) -> both done; each operator's CPU seconds and peak RSS.

The shards run on the same machine as the control plane (2 cores here): what sharding
buys is a split of the work and of each process's memory, not more cores.

    BENCH_SHARDS_N=2000 python -m tests.bench.shards
"""

from __future__ import annotations

import datetime
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from modelsync.api import constants as c
from testcluster import launcher
from tests.bench.common import (
    Tenant,
    fresh_cluster,
    peak_rss,
    start_operator,
    timed,
    update_results,
)
from tests.bench.gitops import cpu_seconds
from tests.support.models import MD
from tests.support.syncs import MS, model_yaml

NAMESPACE = "bench-shards"
HALVES = ("a", "b")
LAYOUTS = {"one operator": False, "two shards": True}


def count() -> int:
    text = os.environ.get("BENCH_SHARDS_N", "2000")
    try:
        n = int(text)
    except ValueError:
        raise SystemExit(f"BENCH_SHARDS_N={text!r}: expected a model count") from None
    if n < 2:
        raise SystemExit(f"BENCH_SHARDS_N={text!r}: expected at least 2 models")
    return n


class Layout(Tenant):
    """One cluster, one repository of n models in two halves, and the operators."""

    def __init__(self, cluster: launcher.Cluster, tmp: Path, n: int) -> None:
        super().__init__(cluster, tmp, NAMESPACE)
        self.n = n
        for index in range(n):
            name = f"model-{index:05d}"
            self.repo.write(f"models/{HALVES[index % 2]}/{name}.yaml", model_yaml(name))
        self.sha = self.repo.commit("generated models")
        self.operators: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, sharded: bool) -> None:
        for shard in HALVES if sharded else ("",):
            args = ["--shard", shard, "--lease-namespace", NAMESPACE] if shard else []
            port = launcher.free_ports(1)[0]
            extra = os.environ.get("BENCH_OPERATOR_ARGS", "").split()
            self.operators[shard or "unsharded"] = start_operator(
                self.cluster.kubeconfig, port, *args, *extra
            )

    def stop(self) -> None:
        for process in self.operators.values():
            process.terminate()
            process.wait(30)
        self.server.stop()

    def create(self, sharded: bool) -> None:
        for half in HALVES:
            labels = {c.LABEL_SHARD: half} if sharded else {}
            self.create_sync(half, f"models/{half}", labels)

    def status(self, half: str) -> dict[str, Any]:
        found = self.objects.get_namespaced_custom_object(namespace=NAMESPACE, name=half, **MS)
        return dict(found.get("status") or {})

    def applied(self, token: str = "") -> bool:
        for half in HALVES:
            status = self.status(half)
            if status.get("lastAppliedRevision") != f"main@sha1:{self.sha}":
                return False
            if token and status.get("lastHandledReconcileAt") != token:
                return False
        return True

    def ready(self) -> bool:
        items = self.objects.list_namespaced_custom_object(namespace=NAMESPACE, **MD)["items"]
        return self.n == sum(
            1
            for md in items
            if any(
                x["type"] == c.READY and x["status"] == "True"
                for x in (md.get("status") or {}).get("conditions") or []
            )
        )

    def request(self) -> str:
        token = datetime.datetime.now(datetime.UTC).isoformat()
        for half in HALVES:
            self.objects.patch_namespaced_custom_object(
                namespace=NAMESPACE,
                name=half,
                body={"metadata": {"annotations": {c.ANNOTATION_RECONCILE_REQUESTED: token}}},
                **MS,
            )
        return token

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(p.pid) for name, p in self.operators.items()}


def measure(n: int, sharded: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"models": n}
    with fresh_cluster(n) as cluster, tempfile.TemporaryDirectory() as tmp:
        layout = Layout(cluster, Path(tmp), n)
        try:
            layout.start(sharded)
            started = time.monotonic()
            layout.create(sharded)
            scale = max(1.0, n / 1000)
            timed(layout.applied, 3600, "both ModelSyncs applied", period=0.2 * scale)
            result["applied_s"] = time.monotonic() - started
            timed(layout.ready, 3600, "every model Ready", period=2.0 * scale)
            result["ready_s"] = time.monotonic() - started
            result["cpu_s_to_ready"] = layout.cpu()
            before = layout.cpu()
            resync = time.monotonic()
            token = layout.request()
            timed(lambda: layout.applied(token), 1800, "a resync", period=0.2 * scale)
            result["resync_s"] = time.monotonic() - resync
            after = layout.cpu()
            result["resync_cpu_s"] = {k: after[k] - before[k] for k in after}
            result["rss_mib"] = {
                name: peak_rss(p.pid) / 2**20 for name, p in layout.operators.items()
            }
        finally:
            layout.stop()
    return result


def main() -> int:
    n = count()
    results: dict[str, Any] = {}
    for label, sharded in LAYOUTS.items():
        print(f"[bench] shards: {label}, {n} models in two ModelSyncs", flush=True)
        results[label] = measure(n, sharded)
        update_results("shards", results)
    print_table(results)
    return 0


def print_table(results: dict[str, Any]) -> None:
    print(f"\n{'layout':<14} {'applied':>9} {'all Ready':>10} {'resync':>8} "
          f"{'CPU to Ready (s)':>22} {'peak RSS (MiB)':>20}")  # fmt: skip
    for label, r in results.items():
        cpu = " + ".join(f"{v:.0f}" for v in r["cpu_s_to_ready"].values())
        rss = " + ".join(f"{v:.0f}" for v in r["rss_mib"].values())
        print(
            f"{label:<14} {r['applied_s']:>8.1f}s {r['ready_s']:>9.1f}s {r['resync_s']:>7.1f}s "
            f"{cpu:>22} {rss:>20}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
