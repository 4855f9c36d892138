"""Benchmark the serving operator: N ModelDeployments created at once on a fresh
local cluster; time until all are Ready, the operator's peak RSS, and the API
writes of a full resync when nothing changed (target: 0).

    python -m tests.bench.serving [--models 100] [--workers 4]

The operator runs as its own process (`modelsync run`), so its memory is its own.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import time
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client import CoreV1Api, CustomObjectsApi, V1Namespace, V1ObjectMeta

from modelsync.api import constants as c
from testcluster import launcher
from tests.bench.common import (
    fresh_cluster,
    peak_rss,
    scrape,
    start_operator,
    wait_until,
)
from tests.support.kube import install_crds
from tests.support.models import MD

REPO = Path(__file__).resolve().parents[2]


def model(index: int) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.MODELDEPLOYMENT_KIND,
        "metadata": {"name": f"model-{index:03d}"},
        "spec": {
            "model": {"name": f"model-{index:03d}", "version": "1", "uri": "s3://bench/model"},
            "runtime": {"name": "mlserver"},
            "replicas": 1,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--resync-seconds", type=float, default=20.0)
    args = parser.parse_args()

    with fresh_cluster() as cluster:
        return run(cluster, args)


def run(cluster: launcher.Cluster, args: argparse.Namespace) -> int:
    api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    install_crds(api)
    CoreV1Api(api).create_namespace(V1Namespace(metadata=V1ObjectMeta(name="bench")))

    port = launcher.free_ports(1)[0]
    operator = start_operator(
        cluster.kubeconfig,
        port,
        "--workers",
        str(args.workers),
        "--resync-seconds",
        str(args.resync_seconds),
    )
    try:
        objects = CustomObjectsApi(api)
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            list(
                pool.map(
                    lambda i: objects.create_namespaced_custom_object(
                        namespace="bench", body=model(i), **MD
                    ),
                    range(args.models),
                )
            )
        created = time.monotonic() - started

        def ready_count() -> int:
            items = objects.list_namespaced_custom_object(namespace="bench", **MD)["items"]
            return sum(1 for md in items if _is_ready(md))

        wait_until(f"{args.models} Ready", lambda: ready_count() == args.models, 600)
        all_ready = time.monotonic() - started

        # Let the last status updates land, then watch one full resync go by.
        time.sleep(3)
        before = scrape(port)
        unchanged = "modelsync_reconciles_total:unchanged"
        wait_until(
            "a full resync",
            lambda: scrape(port).get(unchanged, 0) >= before.get(unchanged, 0) + args.models,
            args.resync_seconds * 3 + 30,
        )
        after = scrape(port)
        writes = after["modelsync_api_writes_total"] - before["modelsync_api_writes_total"]
        rss = peak_rss(operator.pid)
        reconcile_sum = after.get("modelsync_reconcile_duration_seconds_sum", 0.0)
        reconcile_count = after.get("modelsync_reconcile_duration_seconds_count", 1.0)
    finally:
        operator.terminate()
        operator.wait(30)

    print("serving benchmark")
    rows = [
        ("ModelDeployments", f"{args.models} (1 replica each), {args.workers} workers"),
        ("created in", f"{created:.1f} s"),
        ("all Ready after", f"{all_ready:.1f} s (from the first create)"),
        ("operator peak RSS", f"{rss / 2**20:.0f} MiB"),
        ("API writes in a full resync", f"{writes:.0f}"),
        ("mean reconcile time", f"{1000 * reconcile_sum / max(reconcile_count, 1):.1f} ms"),
    ]
    for label, value in rows:
        print(f"  {label:<30} {value}")
    return 0 if writes == 0 else 1


def _is_ready(md: dict[str, Any]) -> bool:
    status = md.get("status") or {}
    ready = any(
        cond.get("type") == c.READY and cond.get("status") == "True"
        for cond in status.get("conditions") or []
    )
    return ready and status.get("observedGeneration") == md["metadata"]["generation"]


if __name__ == "__main__":
    raise SystemExit(main())
