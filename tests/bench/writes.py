"""Benchmark the writes one model costs, by feature (issue 23 item 2): a plain model
(fixed replicas) has a budget of 4 writes cold and 3 per version bump
(tests/integration/test_write_budget.py pins it); an autoscaler, a canary (per step)
and the readiness gate each add a number, which this states.

One fresh kwok cluster, the operator as its own process, a Prometheus query API on
loopback for the canaries' analysis (tests/support/promserver.py, every answer passing). Each
case is ROUNDS models, one after the other, each in a ModelSync of its own, synced from
git (cold), then bumped one version: the median is told, and the range (how many status
writes a rollout takes varies with when the operator sees its pods change). The writes
come from the API server's audit log (tests/support/audit.py): ours only, answered, no dry
runs, no Leases. A model's writes are those to the objects named after it (its
ModelDeployment, Deployments - the canary's too -, Service, autoscaler, pods) and its
Events; its ModelSync's are counted apart (per sync: all its models share them).

The readiness gate (spec.validation) is stated from the code, not measured: it writes
its condition on a pod (a pods/status patch) only once it has sent the samples to that
pod (serving/reconciler.py, _validate_pods -> _set_gate), and no kwok pod answers.

    python -m tests.bench.writes
"""

from __future__ import annotations

import datetime
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import AppsV1Api

from modelsync.api import constants as c
from modelsync.serving.canary import CANARY_SUFFIX
from testcluster import launcher
from tests.bench.common import Tenant, fresh_cluster, start_operator, timed, update_results
from tests.support import audit
from tests.support.models import MD, ready_on
from tests.support.promserver import PrometheusApi
from tests.support.syncs import MS, model_yaml

NAMESPACE = "bench-writes"
REPLICAS = 4  # each canary step then moves pods: 25 % is 1 of 4, 50 % 2, 75 % 3
ROUNDS = 3  # models per case, one after the other: how many writes varies with timing
QUIET_SECONDS = 2.0  # no write about the model for this long: its writes are all in
PLAIN = "plain"
GATE_NOTE = "by construction, not measured: needs the real node"


@dataclass(frozen=True)
class Case:
    name: str  # the model's; its ModelSync is "sync-<name>"
    label: str
    spec: dict[str, Any]  # set on the plain model's spec (None: taken out of it)
    steps: int = 0  # canary steps
    size: int = REPLICAS  # pods it serves with once settled (an autoscaler's minimum)


def canary(steps: int, prometheus_url: str) -> dict[str, Any]:
    """A canary of `steps` even steps (1: 50 %; 3: 25, 50, 75 %), each judged by one
    analysis query after a 1 s pause."""
    weights = [100 * (index + 1) // (steps + 1) for index in range(steps)]
    return {
        "rollout": {
            "strategy": "Canary",
            "progressDeadlineSeconds": 120,
            "steps": [{"weight": weight, "pauseSeconds": 1} for weight in weights],
            "analysis": {
                "prometheusURL": prometheus_url,
                "query": "error_rate",
                "threshold": 0.05,
                "intervalSeconds": 1,
            },
        }
    }


def autoscaled(low: int, high: int) -> dict[str, Any]:
    return {
        "replicas": None,
        "autoscaling": {"minReplicas": low, "maxReplicas": high},
        "resources": {"requests": {"cpu": "100m"}},
    }


def cases(prometheus_url: str) -> list[Case]:
    return [
        Case(PLAIN, f"plain ({REPLICAS} replicas)", {}),
        # As tests/integration/test_write_budget.py pins it, and at the plain model's size.
        Case("autoscaled-1", "autoscaler, min 1", autoscaled(1, 3), size=1),
        Case(
            f"autoscaled-{REPLICAS}",
            f"autoscaler, min {REPLICAS}",
            autoscaled(REPLICAS, 2 * REPLICAS),
        ),
        Case("canary-1-step", "canary, 1 step", canary(1, prometheus_url), steps=1),
        Case("canary-3-steps", "canary, 3 steps", canary(3, prometheus_url), steps=3),
    ]


def manifest(case: Case, name: str, version: str) -> str:
    body = yaml.safe_load(model_yaml(name, version=version, replicas=REPLICAS))
    for key, value in case.spec.items():
        if value is None:
            body["spec"].pop(key, None)
        else:
            body["spec"][key] = value
    return str(yaml.safe_dump(body, sort_keys=False))


# ---------------------------------------------------------------- the figures (pure)


def about(write: audit.Write, name: str) -> bool:
    """A write to the object `name`, to one named after it (`<name>-canary`, its pods)
    or an Event about one of those (`<name>.<suffix>`)."""
    return write.name == name or write.name.startswith((name + "-", name + "."))


def by_resource(writes: Iterable[audit.Write]) -> dict[str, int]:
    """How many, by resource (with its subresource), most first."""
    return dict(Counter(w.resource for w in writes).most_common())


def summarise(runs: list[list[audit.Write]]) -> dict[str, Any]:
    """The rounds of one phase of a case: each round's count, the median (the lower of
    the middle two), and by resource the writes of a round that had the median."""
    counts = [len(run) for run in runs]
    median = statistics.median_low(counts)
    typical = runs[counts.index(median)]
    return {
        "writes": median,
        "runs": counts,
        "by_resource": by_resource(typical),
        "table": audit.table(typical),
    }


def spread(figures: dict[str, Any]) -> str:
    """A phase's median, with the range of its rounds when they differ: "15 (14-17)"."""
    low, high = min(figures["runs"]), max(figures["runs"])
    return f"{figures['writes']}" + (f" ({low}-{high})" if low != high else "")


def difference(counts: dict[str, int], plain: dict[str, int]) -> str:
    """`counts` by resource, each with its difference to the plain model's where
    there is one: "deployments 3 (+1), services 1, events 0 (-1)"."""
    parts = []
    for resource in [*counts, *(r for r in plain if r not in counts)]:
        n, delta = counts.get(resource, 0), counts.get(resource, 0) - plain.get(resource, 0)
        parts.append(f"{resource} {n}" + (f" ({delta:+d})" if delta else ""))
    return ", ".join(parts) or "none"


def per_step(canaries: dict[int, int]) -> float | None:
    """Writes each canary step adds: the slope of bump writes over step counts (steps:
    writes), between the fewest and the most steps measured; None with one count."""
    if len(canaries) < 2:
        return None
    fewest, most = min(canaries), max(canaries)
    return (canaries[most] - canaries[fewest]) / (most - fewest)


def rows(figures: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """The summary table: (case, cold, bump, cold vs plain, bump vs plain), then the
    canary's cost per step and the readiness gate's per pod."""
    cases_ = figures["cases"]
    plain = cases_[PLAIN]
    found: list[tuple[str, str, str, str, str]] = []
    for name, case in cases_.items():
        cold, bump = case["cold"]["writes"], case["bump"]["writes"]
        same = name == PLAIN
        found.append(
            (
                case["label"],
                spread(case["cold"]),
                spread(case["bump"]),
                "" if same else f"{cold - plain['cold']['writes']:+d}",
                "" if same else f"{bump - plain['bump']['writes']:+d}",
            )
        )
    step = figures.get("canary_per_step")
    if step is not None:
        found.append(("canary, per step", "", "", "", f"{step:+.1f} per step"))
    gate = figures["gate"]
    found.append(
        (
            "readiness gate",
            "",
            "",
            f"+{gate['per_pod']} per pod",
            f"+{gate['per_pod']} per new pod",
        )
    )
    return found


def gate_figures(replicas: int) -> dict[str, Any]:
    """What spec.validation adds, from the code (serving/reconciler.py _set_gate): one
    pods/status patch per pod, when its verdict is in, the pod's condition written only
    when it says something new; one more for a pod first found unreachable."""
    return {
        "per_pod": 1,
        "cold": replicas,
        "bump": replicas,
        "write": "patch pods/status (the modelsync.io/validated condition)",
        "unreachable_first": (
            "+1 more for a pod first found unreachable (PodUnreachable, then SamplesPassed)"
        ),
        "measured": False,
        "note": GATE_NOTE,
    }


def report(figures: dict[str, Any]) -> str:
    table = [("case", "cold", "bump", "vs plain, cold", "vs plain, bump"), *rows(figures)]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    lines = [
        f"\nwrites per model ({figures['replicas']} replicas; ours, from the API server's "
        f"audit log), cold and per version bump: the median of {figures['rounds']} models "
        "(the range when they differ)",
        *(
            "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            ).rstrip()
            for row in table
        ),
    ]
    gate = figures["gate"]
    lines.append(
        f"readiness gate: {gate['write']}, +{gate['per_pod']} per pod ({gate['cold']} cold, "
        f"{gate['bump']} per bump at {figures['replicas']} replicas); "
        f"{gate['unreachable_first']} ({gate['note']})"
    )
    plain = figures["cases"][PLAIN]
    lines.append("\nby resource, a median round (difference to the plain model's):")
    for case in figures["cases"].values():
        lines.append(case["label"])
        for phase in ("cold", "bump"):
            counts, base = case[phase]["by_resource"], plain[phase]["by_resource"]
            lines.append(f"  {phase}: {difference(counts, base)}")
            lines.extend("    " + line for line in case[phase]["table"].splitlines())
        lines.append(
            f"  its ModelSync's own: cold {case['sync_cold']}, bump {case['sync_bump']} "
            "(per sync, shared by all its models)"
        )
    lines.append(f"\n{figures['seconds']:.0f} s in all (cluster start included)")
    return "\n".join(lines)


# ---------------------------------------------------------------- the measurement


class Run:
    """The tenant, the operator and the audit log of one measurement."""

    def __init__(self, tenant: Tenant, log: audit.AuditLog) -> None:
        self.tenant, self.log = tenant, log
        self.apps = AppsV1Api(tenant.api)

    def model(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.tenant.objects.get_namespaced_custom_object(
            namespace=NAMESPACE, name=name, **MD
        )
        return found

    def ours(self, mark: int) -> list[audit.Write]:
        return [
            w
            for w in audit.counted(self.log.since(mark))
            if w.namespace == NAMESPACE and audit.ours(w)
        ]

    def request(self, sync: str) -> None:
        token = datetime.datetime.now(datetime.UTC).isoformat()
        self.tenant.objects.patch_namespaced_custom_object(
            namespace=NAMESPACE,
            name=sync,
            body={"metadata": {"annotations": {c.ANNOTATION_RECONCILE_REQUESTED: token}}},
            **MS,
        )

    def settle(self, name: str, size: int, sync: str, sha: str, version: str, mark: int) -> None:
        """Until the ModelSync applied `sha` and is Ready, its model is Ready on
        `version` (promoted: in its history), no canary is left, `size` pods are
        available (an autoscaler's minimum: its controller scales a Deployment created
        at 1), and no write about the model came for QUIET_SECONDS."""
        ready = ready_on(version)

        def synced() -> bool:
            status = self.tenant.sync_status(sync)
            return status.get("lastAppliedRevision") == f"main@sha1:{sha}" and any(
                x["type"] == c.READY and x["status"] == "True"
                for x in status.get("conditions") or []
            )

        def promoted() -> bool:
            md = self.model(name)
            history = (md.get("status") or {}).get("history") or []
            return ready(md) and any(h.get("modelVersion") == version for h in history)

        timed(synced, 300, f"{sync} applied and Ready", period=0.2)
        timed(promoted, 300, f"{name} Ready on version {version}", period=0.2)
        timed(lambda: not self.canary_exists(name), 120, f"{name}'s canary gone", period=0.2)
        timed(lambda: self.available(name) >= size, 120, f"{size} pods of {name}", period=0.2)
        timed(self.quiet(name, mark), 120, f"no more writes about {name}", period=0.5)

    def canary_exists(self, name: str) -> bool:
        found = self.apps.list_namespaced_deployment(
            NAMESPACE, field_selector=f"metadata.name={name}{CANARY_SUFFIX}"
        )
        return bool(found.items)

    def available(self, name: str) -> int:
        status = self.apps.read_namespaced_deployment(name, NAMESPACE).status
        return int(status.available_replicas or 0)

    def quiet(self, name: str, mark: int) -> Callable[[], bool]:
        last = {"count": -1, "since": time.monotonic()}

        def check() -> bool:
            count = sum(1 for w in self.ours(mark) if about(w, name))
            if count != last["count"]:
                last.update(count=count, since=time.monotonic())
            return time.monotonic() - last["since"] >= QUIET_SECONDS

        return check

    def case(self, case: Case) -> dict[str, Any]:
        """ROUNDS models of `case`, one after the other, each synced and bumped once."""
        runs: dict[str, list[list[audit.Write]]] = {"cold": [], "bump": []}
        syncs: dict[str, list[int]] = {"cold": [], "bump": []}
        for round_ in range(ROUNDS):
            name = f"{case.name}-r{round_}"
            sync = f"sync-{name}"
            for phase, version in (("cold", "1"), ("bump", "2")):
                self.tenant.repo.write(f"{name}/model.yaml", manifest(case, name, version))
                sha = self.tenant.repo.commit(f"{name}: version {version}")
                mark = self.log.mark()
                if phase == "cold":
                    self.tenant.create_sync(sync, name)
                else:
                    self.request(sync)
                self.settle(name, case.size, sync, sha, version, mark)
                writes = self.ours(mark)
                runs[phase].append([w for w in writes if about(w, name)])
                syncs[phase].append(sum(1 for w in writes if about(w, sync)))
        figures: dict[str, Any] = {"label": case.label, "steps": case.steps}
        for phase in runs:
            figures[phase] = summarise(runs[phase])
            figures[f"sync_{phase}"] = statistics.median_low(syncs[phase])
        print(
            f"  {case.label}: cold {figures['cold']['runs']}, bump {figures['bump']['runs']}",
            flush=True,
        )
        return figures


def measure() -> dict[str, Any]:
    started = time.monotonic()
    prometheus = PrometheusApi().start()
    prometheus.answer = 0.01  # under every threshold: each step passes its analysis
    try:
        with (
            fresh_cluster() as cluster,
            tempfile.TemporaryDirectory(prefix="modelsync-writes-") as tmp,
        ):
            tenant = Tenant(cluster, Path(tmp), NAMESPACE)
            port = launcher.free_ports(1)[0]
            operator = start_operator(
                cluster.kubeconfig, port, "--analysis-endpoint", prometheus.url
            )
            run = Run(tenant, audit.AuditLog(cluster.audit_log))
            try:
                measured = {case.name: run.case(case) for case in cases(prometheus.url)}
            finally:
                operator.terminate()
                operator.wait(30)
                tenant.server.stop()
    finally:
        prometheus.stop()
    canaries = {f["steps"]: f["bump"]["writes"] for f in measured.values() if f["steps"]}
    return {
        "replicas": REPLICAS,
        "rounds": ROUNDS,
        "cases": measured,
        "canary_per_step": per_step(canaries),
        "gate": gate_figures(REPLICAS),
        "seconds": time.monotonic() - started,
    }


def main() -> int:
    print("[bench] writes per model, by feature", flush=True)
    figures = measure()
    update_results("writes", figures)
    print(report(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
