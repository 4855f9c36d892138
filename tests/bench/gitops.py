"""Benchmark GitOps with modelsync: a generated repository of N ModelDeployments,
served over smart HTTP, synced by the operator running as its own process.

Figures: ModelSync created -> all applied, -> all Ready (every model, and the
ModelSync); API requests by verb; peak RSS; writes per model from the API server's
audit log, cold and for a version bump of BUMP models in one commit. With
`latencies`: a resync with nothing changed (writes, reads, wall time); commit ->
applied through the webhook and through polling; drift reverted; one idle poll (git
requests, CPU time). `python -m tests.bench.suite` runs it; alone:

    python -m tests.bench.gitops [--models 1000] [--commits 20]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes.client import AppsV1Api
from prometheus_client.parser import text_string_to_metric_families

from modelsync.api import constants as c
from testcluster import launcher
from tests.bench.common import (
    Tenant,
    fresh_cluster,
    get,
    peak_rss,
    start_operator,
    summary,
    timed,
)
from tests.support import audit
from tests.support.models import MD
from tests.support.syncs import MS, model_yaml

TOKEN = "bench-token"
BUMP = 100  # models a version-bump commit changes (all of them when fewer)
NAMESPACE = "bench"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(port: int) -> Samples:
    text = (get(port, "/metrics") or b"").decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(found: Samples, name: str, **match: str) -> float:
    return sum(
        value
        for (metric, labels), value in found.items()
        if metric == name and set(match.items()) <= labels
    )


def by_label(found: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (metric, labels), value in found.items():
        if metric == name:
            key = dict(labels).get(label, "")
            out[key] = out.get(key, 0.0) + value
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Bench(Tenant):
    """One operator, one ModelSync of N models, on one cluster."""

    def __init__(self, cluster: launcher.Cluster, tmp: Path, n: int) -> None:
        super().__init__(cluster, tmp, NAMESPACE)
        self.apps = AppsV1Api(self.api)
        self.n = n
        self.secret("hook", "Opaque", {"token": TOKEN})
        self.port = launcher.free_ports(1)[0]
        self.operator: Any = None

    def start(self) -> None:
        # BENCH_OPERATOR_ARGS: extra `modelsync run` flags, e.g. "--kube-qps 200".
        extra = os.environ.get("BENCH_OPERATOR_ARGS", "").split()
        self.operator = start_operator(self.cluster.kubeconfig, self.port, *extra)

    def stop(self) -> None:
        if self.operator is not None:
            self.operator.terminate()
            self.operator.wait(30)
        self.server.stop()

    def status(self) -> dict[str, Any]:
        found: dict[str, Any] = (
            self.objects.get_namespaced_custom_object(namespace=NAMESPACE, name="bench", **MS).get(
                "status"
            )
            or {}
        )
        return found

    def applied(self, sha: str) -> bool:
        return self.status().get("lastAppliedRevision") == f"main@sha1:{sha}"

    def ready_count(self, version: str | None = None) -> int:
        """Models Ready (on `version`, for its current spec, when given)."""
        items = self.objects.list_namespaced_custom_object(namespace=NAMESPACE, **MD)["items"]

        def ready(md: dict[str, Any]) -> bool:
            status = md.get("status") or {}
            if version is not None and (
                status.get("modelVersion") != version
                or status.get("observedGeneration") != md["metadata"]["generation"]
            ):
                return False
            return any(
                x["type"] == c.READY and x["status"] == "True"
                for x in status.get("conditions") or []
            )

        return sum(1 for md in items if ready(md))

    def sync_ready(self, sha: str) -> bool:
        """The ModelSync applied `sha` and says its models are Ready (Flux's wait: true)."""
        status = self.status()
        return status.get("lastAppliedRevision") == f"main@sha1:{sha}" and any(
            x["type"] == c.READY and x["status"] == "True" for x in status.get("conditions") or []
        )

    def available_count(self) -> int:
        items = self.apps.list_namespaced_deployment(NAMESPACE).items

        def available(d: Any) -> int:
            if isinstance(d, dict):  # the client leaves some objects unparsed
                return int((d.get("status") or {}).get("availableReplicas") or 0)
            return int(d.status.available_replicas or 0)

        return sum(1 for d in items if available(d) >= 1)

    def set_interval(self, interval: str) -> None:
        self.objects.patch_namespaced_custom_object(
            namespace=NAMESPACE, name="bench", body={"spec": {"interval": interval}}, **MS
        )

    def push_hook(self) -> None:
        body = json.dumps(
            {"ref": "refs/heads/main", "repository": {"clone_url": self.url}}
        ).encode()
        signature = hmac.new(TOKEN.encode(), body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/hooks/github/{NAMESPACE}/bench",
            data=body,
            method="POST",
            headers={"X-Hub-Signature-256": f"sha256={signature}", "X-GitHub-Event": "push"},
        )
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310


def measure(
    cluster: launcher.Cluster, tmp: Path, n: int, commits: int = 20, latencies: bool = True
) -> dict[str, Any]:
    bench = Bench(cluster, tmp, n)
    for index in range(n):
        bench.repo.write(f"models/model-{index:05d}.yaml", model_yaml(f"model-{index:05d}"))
    first = bench.repo.commit("generated models")
    bench.start()
    result: dict[str, Any] = {"models": n}
    log = audit.AuditLog(cluster.audit_log)
    try:
        before = samples(bench.port)
        mark = log.mark()
        started = time.monotonic()
        bench.create_sync("bench", "models", webhookSecretRef={"name": "hook"})
        # Polls scale with N: each GET returns the status with its N-entry inventory, and
        # each list N objects, which would load the API server the benchmark measures.
        scale = max(1.0, n / 1000)
        timed(lambda: bench.applied(first), 1800, "the first sync", period=0.1 * scale)
        result["applied_s"] = time.monotonic() - started
        result["rss_mib_applied"] = peak_rss(bench.operator.pid) / 2**20
        print(
            f"  applied {result['applied_s']:.1f} s (operator peak RSS so far "
            f"{result['rss_mib_applied']:.0f} MiB)",
            flush=True,
        )

        # When the control plane had every Deployment available, and when every model
        # said Ready: the gap is the operator's; the rest is the cluster's.
        def all_ready() -> bool:
            if "deployments_available_s" not in result and bench.available_count() == n:
                result["deployments_available_s"] = time.monotonic() - started
            return bench.ready_count() == n

        timed(all_ready, 3600, "all models Ready", period=2.0 * scale)
        result["ready_s"] = time.monotonic() - started
        timed(lambda: bench.sync_ready(first), 600, "the ModelSync Ready", period=0.5 * scale)
        result["sync_ready_s"] = time.monotonic() - started
        result["operator_cpu_s_to_ready"] = cpu_seconds(bench.operator.pid)
        result.setdefault("deployments_available_s", result["ready_s"])
        after = samples(bench.port)
        requests = by_label(after, "modelsync_api_requests_total", "verb")
        earlier = by_label(before, "modelsync_api_requests_total", "verb")
        result["api_requests"] = {v: requests[v] - earlier.get(v, 0.0) for v in requests}
        result["api_throttled_s"] = total(after, "modelsync_api_throttled_seconds_total") - total(
            before, "modelsync_api_throttled_seconds_total"
        )
        result["rss_mib"] = peak_rss(bench.operator.pid) / 2**20
        print(
            f"  all Ready {result['ready_s']:.1f} s (Deployments available "
            f"{result['deployments_available_s']:.1f} s, ModelSync Ready "
            f"{result['sync_ready_s']:.1f} s)",
            flush=True,
        )
        result["control_plane"] = control_plane(cluster)
        print(f"  control plane: {result['control_plane']}", flush=True)
        time.sleep(5)  # the last status writes of the Ready wave land in the log first
        result["writes_cold"] = audit.per_model(log.since(mark), n)
        print(f"  cold: {audit.describe(result['writes_cold'])}", flush=True)
        if log.lost:  # at 10,000 models the log outgrows its two 200 MB files
            result["writes_cold"]["undercounted"] = True
            print("  (the audit log rotated twice: writes rotated away are not counted)")
        result.update(bump(bench, log, min(n, BUMP)))
        if latencies:
            result.update(resync_and_idle_poll(bench))
            result.update(webhook(bench, commits))
            result.update(polling(bench, max(5, commits // 4)))
            result.update(drift(bench, commits))
            result["rss_mib_end"] = peak_rss(bench.operator.pid) / 2**20
    finally:
        bench.stop()
    return result


def control_plane(cluster: launcher.Cluster) -> dict[str, dict[str, float]]:
    """CPU seconds and peak RSS of the API server and etcd so far, from /proc."""
    return {
        name: {
            "cpu_s": round(cpu_seconds(cluster.pids[name]), 1),
            "peak_rss_mib": round(peak_rss(cluster.pids[name]) / 2**20),
        }
        for name in ("kube-apiserver", "etcd")
    }


def bump(bench: Bench, log: audit.AuditLog, k: int) -> dict[str, Any]:
    """One commit bumps the version of `k` models: the time until they are Ready on it
    (and the ModelSync with them), and the writes it cost per bumped model."""
    for index in range(k):
        name = f"model-{index:05d}"
        bench.repo.write(f"models/{name}.yaml", model_yaml(name, version="2"))
    sha = bench.repo.commit(f"bump {k} models")
    mark = log.mark()
    started = time.monotonic()
    bench.push_hook()
    timed(lambda: bench.ready_count("2") == k, 1800, f"{k} bumped models Ready", period=0.5)
    figures: dict[str, Any] = {"bump_models": k, "bump_ready_s": time.monotonic() - started}
    timed(lambda: bench.sync_ready(sha), 600, "the ModelSync Ready after the bump", 0.5)
    figures["bump_sync_ready_s"] = time.monotonic() - started
    time.sleep(5)
    figures["writes_bump"] = audit.per_model(log.since(mark), k)
    print(
        f"  bump of {k}: Ready {figures['bump_ready_s']:.1f} s; "
        f"{audit.describe(figures['writes_bump'])}",
        flush=True,
    )
    return figures


def resync_and_idle_poll(bench: Bench, polls: int = 6) -> dict[str, float]:
    """The interval's own syncs with nothing changed (no request annotation, which
    would itself be acknowledged in status): writes, reads, wall and CPU time."""
    time.sleep(5)  # let the Ready wave's status writes settle
    bench.set_interval("5s")

    def count() -> float:
        return total(samples(bench.port), "modelsync_syncs_total")

    base = count()
    timed(lambda: count() >= base + 2, 120, "the interval syncs to start", period=1.0)
    before, cpu_before = samples(bench.port), cpu_seconds(bench.operator.pid)
    start = total(before, "modelsync_syncs_total")
    # Waiting, not polling /metrics: a scrape of 1,000 models' series costs CPU too.
    time.sleep(polls * 5 + 2)
    after, cpu_after = samples(bench.port), cpu_seconds(bench.operator.pid)
    bench.set_interval("1h")
    done = total(after, "modelsync_syncs_total") - start

    def delta(name: str, **match: str) -> float:
        return (total(after, name, **match) - total(before, name, **match)) / done

    wall = delta("modelsync_sync_duration_seconds_sum")
    return {
        "resync_s": wall,
        "resync_writes": delta("modelsync_api_writes_total"),
        "resync_reads": delta("modelsync_api_requests_total", verb="get"),
        "idle_poll_git_requests": delta("modelsync_git_requests_total"),
        "idle_poll_cpu_ms": (cpu_after - cpu_before) / done * 1000,
        "idle_poll_wall_ms": wall * 1000,
    }


def webhook(bench: Bench, commits: int) -> dict[str, Any]:
    latencies = []
    for number in range(commits):
        bench.repo.write(
            "models/model-00000.yaml", model_yaml("model-00000", version=f"2.{number}")
        )
        sha = bench.repo.commit(f"bump {number}")
        began = time.monotonic()
        bench.push_hook()
        timed(lambda: bench.applied(sha), 120, "the pushed commit", period=0.02)  # noqa: B023
        latencies.append(time.monotonic() - began)
    p50, p95 = summary(latencies)
    return {"webhook_count": commits, "webhook_p50_s": p50, "webhook_p95_s": p95}


def polling(bench: Bench, commits: int, interval: int = 10) -> dict[str, Any]:
    """No webhook: the interval finds the commit (expect about interval / 2)."""
    bench.set_interval(f"{interval}s")
    latencies = []
    try:
        for number in range(commits):
            bench.repo.write(
                "models/model-00001.yaml", model_yaml("model-00001", version=f"3.{number}")
            )
            sha = bench.repo.commit(f"polled {number}")
            began = time.monotonic()
            timed(lambda: bench.applied(sha), interval * 3 + 60, "the polled commit", 0.05)  # noqa: B023
            latencies.append(time.monotonic() - began)
            time.sleep((number * 3.7) % interval)  # commits land at varied points of the cycle
    finally:
        bench.set_interval("1h")
    p50, p95 = summary(latencies)
    return {
        "polling_count": commits,
        "polling_interval_s": interval,
        "polling_p50_s": p50,
        "polling_p95_s": p95,
    }


def drift(bench: Bench, rounds: int) -> dict[str, Any]:
    """Someone scales a Deployment by hand; time until the operator has put it back."""
    latencies = []
    for number in range(rounds):
        name = f"model-{number + 2:05d}"
        bench.apps.patch_namespaced_deployment(
            name, NAMESPACE, {"spec": {"replicas": 3}}, field_manager="bench-drift"
        )
        began = time.monotonic()
        timed(
            lambda: bench.apps.read_namespaced_deployment(name, NAMESPACE).spec.replicas == 1,  # noqa: B023
            60,
            "the drift to be reverted",
            period=0.02,
        )
        latencies.append(time.monotonic() - began)
    p50, p95 = summary(latencies)
    return {"drift_count": rounds, "drift_p50_s": p50, "drift_p95_s": p95}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--commits", type=int, default=20)
    parser.add_argument("--no-latencies", action="store_true", help="cold sync figures only")
    args = parser.parse_args()
    with (
        fresh_cluster(args.models) as cluster,
        tempfile.TemporaryDirectory(prefix="modelsync-git-") as tmp,
    ):
        figures = measure(
            cluster, Path(tmp), args.models, args.commits, latencies=not args.no_latencies
        )
    print(json.dumps(figures, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
