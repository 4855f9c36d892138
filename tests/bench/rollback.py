"""Benchmark automatic rollbacks on a fresh local cluster (kwok's never-ready marker).

1. Detection to rollback: for each of N models in turn, a never-ready version; the
   time from the Deployment reporting ProgressDeadlineExceeded (when the failure is
   detectable) to the ModelDeployment serving its old version again, rolled back.
2. Many at once: M models get a never-ready version together; the time until all are
   rolled back and Ready on their old version.

    python -m tests.bench.rollback [--rounds 10] [--models 100]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import time
from typing import Any

import kubernetes
from kubernetes.client import AppsV1Api, CoreV1Api, CustomObjectsApi, V1Namespace, V1ObjectMeta

from modelsync.api import constants as c
from modelsync.api.conditions import of as condition
from testcluster import launcher, stages
from tests.bench.common import fresh_cluster, peak_rss, start_operator, wait_until
from tests.support.kube import install_crds
from tests.support.models import MD

DEADLINE = 5


def model(name: str) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.MODELDEPLOYMENT_KIND,
        "metadata": {"name": name},
        "spec": {
            "model": {"name": name, "version": "1", "uri": "s3://bench/model"},
            "runtime": {"name": "mlserver"},
            "replicas": 1,
            "rollout": {"progressDeadlineSeconds": DEADLINE},
        },
    }


BREAK = {
    "spec": {
        "model": {"version": "2"},
        "podMetadata": {"labels": {stages.FAULT_LABEL: stages.NEVER_READY}},
    }
}


def back_on_v1(md: dict[str, Any]) -> bool:
    return (
        condition(md, c.ROLLED_BACK).get("status") == "True"
        and condition(md, c.READY).get("status") == "True"
        and (md.get("status") or {}).get("modelVersion") == "1"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--models", type=int, default=100)
    args = parser.parse_args()
    with fresh_cluster() as cluster:
        figures = measure(cluster, args.rounds, args.models)
    print("rollback benchmark")
    rows = [
        (
            f"change -> rolled back ({args.rounds})",
            f"p50 {figures['patch_to_rolled_back_p50_s']:.1f} s (deadline {DEADLINE} s)",
        ),
        (
            f"detectable -> rolled back ({args.rounds})",
            f"p50 {figures['detect_to_rolled_back_p50_ms']:.0f} ms, "
            f"max {figures['detect_to_rolled_back_max_ms']:.0f} ms",
        ),
        ("operator peak RSS", f"{figures['rss_mib']:.0f} MiB"),
    ]
    if args.models:
        rows.append(
            (
                f"{args.models} models broken at once -> all back",
                f"{figures['many_all_back_s']:.1f} s (progressDeadlineSeconds {DEADLINE})",
            )
        )
    for label, value in rows:
        print(f"  {label:<38} {value}")
    return 0


def measure(cluster: launcher.Cluster, rounds: int = 10, models: int = 0) -> dict[str, Any]:
    api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    install_crds(api)
    CoreV1Api(api).create_namespace(V1Namespace(metadata=V1ObjectMeta(name="bench")))
    objects, apps = CustomObjectsApi(api), AppsV1Api(api)
    port = launcher.free_ports(1)[0]
    operator = start_operator(cluster.kubeconfig, port, "--workers", "4")

    def md(name: str) -> dict[str, Any]:
        found: dict[str, Any] = objects.get_namespaced_custom_object(
            namespace="bench", name=name, **MD
        )
        return found

    def deadline_passed(name: str) -> bool:
        deployment = apps.read_namespaced_deployment(name, "bench")
        return any(
            cond.type == "Progressing" and cond.reason == "ProgressDeadlineExceeded"
            for cond in deployment.status.conditions or []
        )

    try:
        reactions = []
        changes = []
        for round_ in range(rounds):
            name = f"single-{round_}"
            objects.create_namespaced_custom_object(namespace="bench", body=model(name), **MD)
            wait_until(
                f"{name} Ready",
                lambda n=name: condition(md(n), c.READY).get("status") == "True",
                60,
            )
            objects.patch_namespaced_custom_object(namespace="bench", name=name, body=BREAK, **MD)
            changed = time.monotonic()
            wait_until(
                f"{name}'s deadline",
                lambda n=name: deadline_passed(n) or back_on_v1(md(n)),
                DEADLINE + 60,
            )
            detectable = time.monotonic()
            wait_until(f"{name} rolled back", lambda n=name: back_on_v1(md(n)), 60)
            reactions.append(time.monotonic() - detectable)
            changes.append(time.monotonic() - changed)
        figures: dict[str, Any] = {
            "rounds": rounds,
            "deadline_s": DEADLINE,
            "detect_to_rolled_back_p50_ms": statistics.median(reactions) * 1000,
            "detect_to_rolled_back_max_ms": max(reactions) * 1000,
            "patch_to_rolled_back_p50_s": statistics.median(changes),
            "patch_to_rolled_back_max_s": max(changes),
        }
        if models:
            figures["many_all_back_s"] = _many(objects, models)
        figures["rss_mib"] = peak_rss(operator.pid) / 2**20
    finally:
        operator.terminate()
        operator.wait(30)
    return figures


def _many(objects: CustomObjectsApi, models: int) -> float:
    """`models` models get a never-ready version together: seconds until all are back."""
    names = [f"many-{index:03d}" for index in range(models)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(
                lambda n: objects.create_namespaced_custom_object(
                    namespace="bench", body=model(n), **MD
                ),
                names,
            )
        )

    def count(check: Any) -> int:
        items = objects.list_namespaced_custom_object(namespace="bench", **MD)["items"]
        return sum(1 for item in items if item["metadata"]["name"] in names and check(item))

    wait_until(
        "all Ready",
        lambda: count(lambda m: condition(m, c.READY).get("status") == "True") == len(names),
        600,
    )
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(
                lambda n: objects.patch_namespaced_custom_object(
                    namespace="bench", name=n, body=BREAK, **MD
                ),
                names,
            )
        )
    return wait_until("all rolled back", lambda: count(back_on_v1) == len(names), 900)


if __name__ == "__main__":
    raise SystemExit(main())
