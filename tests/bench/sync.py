"""Benchmark GitOps: a generated repository of N ModelDeployments on a fresh cluster.

Prints: time from creating the ModelSync to all objects applied and to all
Ready; a resync with nothing changed (API writes, wall time); commit -> applied
latency of a one-model change through the webhook (p50, p95); the cost of one
idle poll (an ls-remote, no fetch).

    python -m tests.bench.sync [--models 1000] [--commits 20]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client import CoreV1Api, CustomObjectsApi, V1Namespace, V1ObjectMeta, V1Secret

from modelsync import constants as c
from modelsync.fetch import GitFetcher, Ref
from tests.bench.common import (
    fresh_cluster,
    install_crds,
    peak_rss,
    scrape,
    start_operator,
    wait_until,
    writes_between,
)
from tests.cluster import launcher
from tests.gitserver import WorkRepo
from tests.models import MD
from tests.syncs import MS, model_yaml

REPO = Path(__file__).resolve().parents[2]
TOKEN = "bench-token"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--commits", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    with fresh_cluster() as cluster, tempfile.TemporaryDirectory(prefix="modelsync-git-") as tmp:
        return run(cluster, Path(tmp), args)


def run(cluster: launcher.Cluster, tmp: Path, args: argparse.Namespace) -> int:
    api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    install_crds(api)
    core = CoreV1Api(api)
    core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name="bench")))
    core.create_namespaced_secret(
        "bench", V1Secret(metadata=V1ObjectMeta(name="hook"), string_data={"token": TOKEN})
    )

    (tmp / "git").mkdir()
    repo = WorkRepo(tmp / "git", "models")
    for index in range(args.models):
        repo.write(f"models/model-{index:04d}.yaml", model_yaml(f"model-{index:04d}"))
    first = repo.commit("generated models")

    port = launcher.free_ports(1)[0]
    operator = start_operator(cluster.kubeconfig, port, "--workers", str(args.workers))
    objects = CustomObjectsApi(api)
    try:
        started = time.monotonic()
        objects.create_namespaced_custom_object(
            namespace="bench",
            body={
                "apiVersion": c.API_VERSION,
                "kind": c.MODELSYNC_KIND,
                "metadata": {"name": "bench"},
                "spec": {
                    "repo": {"url": repo.file_url},
                    "path": "models",
                    "interval": "1h",
                    "webhookSecretRef": {"name": "hook"},
                },
            },
            **MS,
        )

        def sync() -> dict[str, Any]:
            found: dict[str, Any] = objects.get_namespaced_custom_object(
                namespace="bench", name="bench", **MS
            )
            return found

        wait_until(
            "the first sync",
            lambda: sync().get("status", {}).get("lastAppliedRevision") == f"main@sha1:{first}",
            900,
        )
        applied = time.monotonic() - started

        def ready() -> int:
            items = objects.list_namespaced_custom_object(namespace="bench", **MD)["items"]
            return sum(
                1
                for md in items
                if any(
                    x["type"] == c.READY and x["status"] == "True"
                    for x in (md.get("status") or {}).get("conditions") or []
                )
            )

        wait_until("all models Ready", lambda: ready() == args.models, 1800)
        all_ready = time.monotonic() - started

        # A resync with nothing changed: the interval's own (no request annotation,
        # which would itself be acknowledged in status). Count writes, time the sync.
        time.sleep(5)
        before = scrape(port)
        objects.patch_namespaced_custom_object(
            namespace="bench", name="bench", body={"spec": {"interval": "5s"}}, **MS
        )
        wait_until(
            "two interval syncs",
            lambda: (
                scrape(port).get("modelsync_syncs_total", 0)
                >= before.get("modelsync_syncs_total", 0) + 3
            ),
            120,
        )
        middle = scrape(port)  # the spec change itself was acknowledged: count from here
        wait_until(
            "an interval resync",
            lambda: (
                scrape(port).get("modelsync_syncs_total", 0)
                >= middle.get("modelsync_syncs_total", 0) + 1
            ),
            60,
        )
        after = scrape(port)
        resync_seconds = (
            after["modelsync_sync_duration_seconds_sum"]
            - middle["modelsync_sync_duration_seconds_sum"]
        )
        resync_writes = writes_between(middle, after)
        objects.patch_namespaced_custom_object(
            namespace="bench", name="bench", body={"spec": {"interval": "1h"}}, **MS
        )

        # Commit -> applied through the webhook, one model at a time.
        latencies = []
        for number in range(args.commits):
            repo.write("models/model-0000.yaml", model_yaml("model-0000", version=f"2.{number}"))
            sha = repo.commit(f"bump {number}")
            began = time.monotonic()
            body = json.dumps(
                {"ref": "refs/heads/main", "repository": {"clone_url": repo.file_url}}
            ).encode()
            signature = hmac.new(TOKEN.encode(), body, hashlib.sha256).hexdigest()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/hooks/github",
                data=body,
                method="POST",
                headers={"X-Hub-Signature-256": f"sha256={signature}"},
            )
            urllib.request.urlopen(request, timeout=10).close()  # noqa: S310
            wait_until(
                "the pushed commit",
                lambda s=sha: (
                    sync().get("status", {}).get("lastAppliedRevision") == f"main@sha1:{s}"
                ),
                120,
            )
            latencies.append(time.monotonic() - began)
        rss = peak_rss(operator.pid)
    finally:
        operator.terminate()
        operator.wait(30)

    fetcher = GitFetcher(tmp / "poll-cache")
    polls = []
    for _ in range(10):
        began = time.monotonic()
        fetcher.resolve(repo.file_url, Ref(branch="main"))
        polls.append(time.monotonic() - began)

    latencies.sort()
    p95 = latencies[max(0, int(len(latencies) * 0.95) - 1)]
    rows = [
        ("models in the repository", f"{args.models}"),
        ("ModelSync created -> all applied", f"{applied:.1f} s"),
        ("ModelSync created -> all Ready", f"{all_ready:.1f} s"),
        ("resync, nothing changed", f"{resync_seconds:.2f} s, API writes: {resync_writes}"),
        (
            f"webhook commit -> applied ({args.commits})",
            f"p50 {statistics.median(latencies) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms",
        ),
        ("idle poll (one ls-remote)", f"median {statistics.median(polls) * 1000:.0f} ms"),
        ("operator peak RSS", f"{rss / 2**20:.0f} MiB"),
    ]
    print("sync benchmark")
    for label, value in rows:
        print(f"  {label:<38} {value}")
    return 0 if resync_writes == "0" else 1


if __name__ == "__main__":
    raise SystemExit(main())
