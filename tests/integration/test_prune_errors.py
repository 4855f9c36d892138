"""Prune errors other than 404 are counted where they happen: the ModelSync's status
(Ready=False, PruneFailed, each object and the API server's words in status.errors)
and a Warning Event, never a raised exception; what was refused stays in the
inventory and is pruned once the API server lets it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import kubernetes
import pytest
from kubernetes.client import AdmissionregistrationV1Api, CoreV1Api

from modelsync.api import constants as c
from tests.support.cluster import LocalCluster
from tests.support.kube import dict_condition, until
from tests.support.models import wait_for_event
from tests.support.syncs import Syncs, model_yaml

POLICY_SECONDS = 60.0


def config_map(name: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata: {{a: b}}\n"


def wait_policy(core: CoreV1Api, namespace: str, refusing: bool) -> None:
    """Until a dry-run delete of `probe` is refused (or allowed): the API server's policy
    informer takes a moment."""

    def refused() -> bool:
        try:
            core.delete_namespaced_config_map("probe", namespace, dry_run="All")
        except kubernetes.client.ApiException as error:
            if error.status not in (403, 422):
                raise
            return True
        return False

    until(f"the admission policy with {refusing=}", lambda: refused() == refusing, POLICY_SECONDS)


@pytest.fixture
def undeletable(local_cluster: LocalCluster, syncs: Syncs) -> Iterator[Callable[[], None]]:
    """An admission policy that refuses to delete the ConfigMaps `keep` and `probe` of
    the test's namespace, and a function that lifts it."""
    admission = AdmissionregistrationV1Api(local_cluster.api)
    core = CoreV1Api(local_cluster.api)
    name = f"keep-{syncs.namespace}"[:63]
    admission.create_validating_admission_policy(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["DELETE"],
                            "resources": ["configmaps"],
                        }
                    ],
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": syncs.namespace}
                    },
                },
                "validations": [
                    {
                        "expression": "!(oldObject.metadata.name in ['keep', 'probe'])",
                        "message": "this ConfigMap is kept by policy",
                    }
                ],
            },
        }
    )
    admission.create_validating_admission_policy_binding(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {"policyName": name, "validationActions": ["Deny"]},
        }
    )
    core.create_namespaced_config_map(
        syncs.namespace, {"metadata": {"name": "probe"}, "data": {"a": "b"}}
    )
    wait_policy(core, syncs.namespace, refusing=True)
    lifted: list[bool] = []

    def lift() -> None:
        if not lifted:
            admission.delete_validating_admission_policy_binding(name)
            admission.delete_validating_admission_policy(name)
            lifted.append(True)
        wait_policy(core, syncs.namespace, refusing=False)

    try:
        yield lift
    finally:
        if not lifted:
            lift()


def test_a_prune_the_api_server_refuses_is_in_status_and_an_event_then_done_later(
    syncs: Syncs, local_cluster: LocalCluster, undeletable: Callable[[], None]
) -> None:
    repo = syncs.repo("models")
    repo.write("iris.yaml", model_yaml("iris"))
    repo.write("keep.yaml", config_map("keep")).write("other.yaml", config_map("other"))
    first = repo.commit("a model and two ConfigMaps")
    syncs.create("prod", repo.file_url, maxPrunePercent=100)
    syncs.wait_applied("prod", f"main@sha1:{first}")

    repo.remove("keep.yaml")
    repo.remove("other.yaml")
    second = repo.commit("drop both ConfigMaps")
    token = syncs.request("prod")
    ms = syncs.wait_failed("prod", c.REASON_PRUNE_FAILED, token)
    status = ms["status"]
    # The revision is applied; what could be pruned was; the refusal is said, whole.
    assert status["lastAppliedRevision"] == f"main@sha1:{second}"
    assert [e.split(":")[0] for e in status["errors"]] == [f"ConfigMap {syncs.namespace}/keep"]
    assert "this ConfigMap is kept by policy" in status["errors"][0]
    message = (dict_condition(ms, c.READY) or {})["message"]
    assert message.endswith("1 objects not pruned (status.errors)")
    assert len(message) <= 120
    names = {entry["name"] for entry in status["inventory"]}
    assert names == {"iris", "keep"}  # tried again by the next sync
    live = {m.metadata.name for m in syncs.core.list_namespaced_config_map(syncs.namespace).items}
    assert "other" not in live
    assert "keep" in live
    wait_for_event(local_cluster, syncs.namespace, "prod", c.EVENT_SYNC_FAILED, "kept by policy")

    undeletable()  # the platform lifts its policy: the next sync prunes what was left
    ms = syncs.wait_applied("prod", f"main@sha1:{second}", syncs.request("prod"))
    assert {entry["name"] for entry in ms["status"]["inventory"]} == {"iris"}
    assert "errors" not in ms["status"]
    live = {m.metadata.name for m in syncs.core.list_namespaced_config_map(syncs.namespace).items}
    assert "keep" not in live
