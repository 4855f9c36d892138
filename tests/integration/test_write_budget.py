"""The writes one plain model costs the cluster, counted from the API server's audit log
(every create, update, patch and delete, kopf's and the impersonated accounts' too): at
most 4 to bring it up from git (its ModelDeployment, Deployment, Service, one status)
and 3 for a version bump (ModelDeployment, Deployment, one status); an autoscaler adds
its own creation and nothing per bump. On a shared control plane writes are what 1,000
models wait on; a change that adds one fails here."""

from __future__ import annotations

from typing import Any

from modelsync.api import constants as c
from tests.support.audit import AuditLog, Write, counted, ours, table
from tests.support.cluster import LocalCluster
from tests.support.kube import dict_condition
from tests.support.models import ready_on
from tests.support.syncs import Syncs, model_yaml

COLD_BUDGET = 4
BUMP_BUDGET = 3
SYNC_WRITES = 5
MODEL = "plain"
SYNC = "budget"


def about(write: Write, name: str) -> bool:
    """A write to the object `name` or an Event about it (named `<name>.<suffix>`)."""
    return write.name == name or (write.resource == "events" and write.name.startswith(name + "."))


def model_ready(version: str) -> Any:
    check = ready_on(version)

    def ready(md: dict[str, Any] | None) -> bool:
        # Its history says so too: the promotion is in the same write as Ready.
        history = ((md or {}).get("status") or {}).get("history") or []
        return check(md) and any(h.get("modelVersion") == version for h in history)

    return ready


def autoscaled_yaml(name: str, version: str = "1") -> str:
    plain = model_yaml(name, version=version).replace("  replicas: 1\n", "")
    return plain + (
        "  autoscaling: {minReplicas: 1, maxReplicas: 3}\n  resources: {requests: {cpu: 100m}}\n"
    )


class Budget:
    """One model synced from git, then bumped: the writes each step cost, counted."""

    def __init__(self, syncs: Syncs, local_cluster: LocalCluster) -> None:
        self.syncs = syncs
        self.log = AuditLog(local_cluster.cluster.audit_log)
        assert self.log.path.exists(), f"{self.log.path}: no audit log; restart the cluster"
        self.repo = syncs.repo("budget")

    def writes_since(self, mark: int) -> tuple[list[Write], list[Write]]:
        found = [
            w
            for w in counted(self.log.since(mark))
            if w.namespace == self.syncs.namespace and ours(w)
        ]
        return [w for w in found if about(w, MODEL)], [w for w in found if about(w, SYNC)]

    def settled(self, revision: str, version: str) -> None:
        found = self.syncs.wait_applied(SYNC, revision, timeout=120)
        # The ModelSync is Ready only once its model is: the model's last write is in.
        assert (dict_condition(found, c.HEALTHY) or {}).get("status") == "True"
        md = self.syncs.models()[MODEL]
        assert model_ready(version)(md), md.get("status")

    def commit(self, text: str, version: str) -> tuple[list[Write], list[Write]]:
        """Commit the model at `version`, sync it, wait until it serves: the writes."""
        self.repo.write(f"{MODEL}.yaml", text)
        sha = self.repo.commit(f"version {version}")
        mark = self.log.mark()
        if version == "1":
            self.syncs.create(SYNC, self.repo.file_url)
        else:
            self.syncs.request(SYNC)
        self.settled(f"main@sha1:{sha}", version)
        return self.writes_since(mark)


def test_a_plain_model_costs_at_most_4_writes_cold_and_3_per_version_bump(
    syncs: Syncs, local_cluster: LocalCluster
) -> None:
    budget = Budget(syncs, local_cluster)
    model, cold_sync = budget.commit(model_yaml(MODEL), "1")
    assert len(model) <= COLD_BUDGET, (
        f"{len(model)} writes for one model cold (budget {COLD_BUDGET}):\n{table(model)}"
    )
    # What they are: the model applied as the tenant, its two objects, its status.
    kinds = sorted({w.resource for w in model})
    assert kinds == ["deployments", "modeldeployments", "modeldeployments/status", "services"], (
        table(model)
    )
    assert not [w for w in model if w.resource == "events"], table(model)

    model, sync = budget.commit(model_yaml(MODEL, version="2"), "2")
    assert len(model) <= BUMP_BUDGET, (
        f"{len(model)} writes for one version bump (budget {BUMP_BUDGET}):\n{table(model)}"
    )
    # The ModelSync's own are per sync, not per model (1,000 models share them), so not
    # in the model's budget; but bounded: its status when the sync starts, when it
    # ends, and when its models are Ready, and an Event at the end and at Ready.
    assert len(cold_sync) <= SYNC_WRITES, table(cold_sync)
    assert len(sync) <= SYNC_WRITES, table(sync)


def test_an_autoscaler_adds_one_write_cold_and_none_per_version_bump(
    syncs: Syncs, local_cluster: LocalCluster
) -> None:
    budget = Budget(syncs, local_cluster)
    model, _ = budget.commit(autoscaled_yaml(MODEL), "1")
    assert len(model) <= COLD_BUDGET + 1, table(model)
    assert "horizontalpodautoscalers" in {w.resource for w in model}, table(model)
    model, _ = budget.commit(autoscaled_yaml(MODEL, version="2"), "2")
    assert len(model) <= BUMP_BUDGET, table(model)
