"""Benchmark the serving operator: N ModelDeployments created at once on a fresh
local cluster; time until all are Ready, the operator's peak RSS, and the API
writes of a full resync when nothing changed (target: 0).

    python -m tests.bench.serving [--models 100] [--workers 4]

The operator runs as its own process (`modelsync run`), so its memory is its own.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from kubernetes.client import CoreV1Api, CustomObjectsApi, V1Namespace, V1ObjectMeta
from kubernetes.dynamic import DynamicClient

from modelsync import constants as c
from tests.cluster import build, launcher

REPO = Path(__file__).resolve().parents[2]
MD = {"group": c.GROUP, "version": c.VERSION, "plural": c.MODELDEPLOYMENT_PLURAL}


def scrape(port: int) -> dict[str, float]:
    """Sum of each metric family (over labels) from the operator's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name_labels, value = line.rsplit(" ", 1)
        name = name_labels.split("{", 1)[0]
        if 'result="unchanged"' in name_labels:
            name += ":unchanged"
        totals[name] = totals.get(name, 0.0) + float(value)
    return totals


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def wait_until(what: str, check: Any, timeout: float) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - started


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

    binaries = build.ensure_binaries()
    with tempfile.TemporaryDirectory(prefix="modelsync-bench-") as tmp:
        root = Path(tmp) / "cluster"
        with launcher.running(root, binaries, log=io.StringIO(), die_with_parent=True) as cluster:
            return run(cluster, args)


def run(cluster: launcher.Cluster, args: argparse.Namespace) -> int:
    api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    definitions = DynamicClient(api).resources.get(
        api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition"
    )
    crd = yaml.safe_load((REPO / "crds" / "modeldeployment.yaml").read_text())
    definitions.server_side_apply(body=crd, name=crd["metadata"]["name"], field_manager="bench")
    wait_until("the CRD", lambda: _established(definitions, crd["metadata"]["name"]), 60)
    CoreV1Api(api).create_namespace(V1Namespace(metadata=V1ObjectMeta(name="bench")))

    port = launcher.free_ports(1)[0]
    operator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelsync",
            "run",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--http-port",
            str(port),
            "--workers",
            str(args.workers),
            "--resync-seconds",
            str(args.resync_seconds),
            "--log-level",
            "WARNING",
        ],
        env={**os.environ, "PYTHONPATH": str(REPO / "controller")},
    )
    try:
        wait_until("the operator", lambda: _ready(port), 60)
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


def _established(definitions: Any, name: str) -> bool:
    conditions = definitions.get(name=name).to_dict().get("status", {}).get("conditions") or []
    return any(cond["type"] == "Established" and cond["status"] == "True" for cond in conditions)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _is_ready(md: dict[str, Any]) -> bool:
    status = md.get("status") or {}
    ready = any(
        cond.get("type") == c.READY and cond.get("status") == "True"
        for cond in status.get("conditions") or []
    )
    return ready and status.get("observedGeneration") == md["metadata"]["generation"]


if __name__ == "__main__":
    raise SystemExit(main())
