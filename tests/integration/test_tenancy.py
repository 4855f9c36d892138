"""Multi-tenancy: git content is applied as the tenant's ServiceAccount, and where it may
write is the platform's to grant (the operator's settings), never the ModelSync's own.

The shared operator runs as a locked-down platform would: --default-service-account
modelsync-tenant (every test namespace has that account, bound to the chart's tenant
ClusterRole), and only granted-* namespaces may write elsewhere or cluster-scoped."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client import RbacAuthorizationV1Api

from modelsync.api import constants as c
from tests.support.cluster import LocalCluster
from tests.support.gitserver import GitHttpServer
from tests.support.kube import TENANT_ACCOUNT, TENANT_ROLE, dict_condition
from tests.support.operatorproc import spawn_operator
from tests.support.syncs import Syncs, model_yaml


def message_of(ms: dict[str, Any]) -> str:
    return str((dict_condition(ms, c.READY) or {}).get("message", ""))


def errors_of(ms: dict[str, Any]) -> str:
    """Every error of the rejected revision: the Ready message names only the first."""
    return "\n".join(ms["status"].get("errors") or [])


def configmap(name: str, namespace: str | None = None) -> str:
    where = f"\n  namespace: {namespace}" if namespace else ""
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}{where}\ndata: {{a: b}}\n"


def configmaps(api: kubernetes.client.ApiClient, namespace: str) -> set[str]:
    items = kubernetes.client.CoreV1Api(api).list_namespaced_config_map(namespace).items
    return {cm.metadata.name for cm in items if cm.metadata.name != "kube-root-ca.crt"}


def test_tenant_modelsync_naming_a_missing_account_applies_nothing_until_it_exists(
    syncs: Syncs, local_cluster: LocalCluster
) -> None:
    repo = syncs.repo("models")
    sha = repo.write("iris.yaml", model_yaml("iris")).commit("one model")
    syncs.create("prod", repo.file_url, serviceAccountName="deployer")
    ms = syncs.wait_failed("prod", c.REASON_SERVICE_ACCOUNT_NOT_FOUND)
    assert f"ServiceAccount {syncs.namespace}/deployer (spec.serviceAccountName)" in message_of(ms)
    assert syncs.models() == {}
    # Never a fallback to the operator: the account appearing is what lets it apply.
    syncs.core.create_namespaced_service_account(
        syncs.namespace, kubernetes.client.V1ServiceAccount(metadata={"name": "deployer"})
    )
    _bind(local_cluster.api, syncs.namespace, "deployer", TENANT_ROLE, "ClusterRole")
    syncs.wait_applied("prod", f"main@sha1:{sha}")
    assert set(syncs.models()) == {"iris"}


def test_tenant_modelsync_with_no_account_and_no_default_applies_nothing(
    local_cluster: LocalCluster, own_namespace: str, git_server: GitHttpServer, tmp_path: Path
) -> None:
    syncs = Syncs(local_cluster, own_namespace, git_server)
    repo = syncs.repo("models")
    repo.write("iris.yaml", model_yaml("iris")).commit("one model")
    log = (tmp_path / "operator.log").open("wb")
    process = spawn_operator(
        local_cluster.kubeconfig,
        "-n",
        own_namespace,
        "--default-service-account=",  # no platform default
        "--http-port",
        "0",
        "--git-cache-dir",
        str(tmp_path / "cache"),
        log=log,
        die_with_parent=True,
    )
    try:
        syncs.create("prod", repo.file_url)
        ms = syncs.wait_failed("prod", c.REASON_SERVICE_ACCOUNT_NOT_FOUND)
        assert "no spec.serviceAccountName" in message_of(ms)
        assert "--default-service-account" in message_of(ms)
        assert syncs.models() == {}
    finally:
        process.terminate()
        process.wait(10)


def test_tenant_cannot_write_outside_its_namespace_whatever_its_spec_says(
    syncs: Syncs, local_cluster: LocalCluster, granted_namespace: str
) -> None:
    repo = syncs.repo("models")
    repo.write("iris.yaml", model_yaml("iris"))
    repo.write("elsewhere.yaml", configmap("planted", granted_namespace))
    repo.write("cluster.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: planted}\n")
    sha = repo.commit("reach out")
    syncs.create("prod", repo.file_url)
    ms = syncs.wait_failed("prod", c.REASON_VALIDATION_FAILED)
    message = errors_of(ms)
    assert ms["status"]["lastAttemptedRevision"] == f"main@sha1:{sha}"
    assert message_of(ms).startswith("rejected, nothing applied")
    assert f"elsewhere.yaml:1: ConfigMap {granted_namespace}/planted: namespace" in message
    assert "cluster.yaml:1: Namespace planted: Namespace is cluster-scoped" in message
    assert "--allow-other-namespaces" in message
    assert "--allow-cluster-scoped" in message
    # Asking for another namespace in the spec is refused before anything is fetched.
    syncs.create("aimed", repo.file_url, targetNamespace=granted_namespace)
    ms = syncs.wait_failed("aimed", c.REASON_TARGET_NAMESPACE_NOT_ALLOWED)
    assert f"spec.targetNamespace {granted_namespace!r} is another namespace" in message_of(ms)
    assert syncs.models() == {}
    assert configmaps(local_cluster.api, granted_namespace) == set()
    names = {ns.metadata.name for ns in syncs.core.list_namespace().items}
    assert "planted" not in names


def test_tenant_modelsync_in_git_aimed_at_another_namespace_is_refused(syncs: Syncs) -> None:
    repo = syncs.repo("models")
    repo.write("iris.yaml", model_yaml("iris"))
    repo.write(
        "child.yaml",
        "apiVersion: modelsync.io/v1alpha1\nkind: ModelSync\nmetadata: {name: child}\n"
        "spec:\n  repo: {url: 'https://git.example.com/x.git'}\n  targetNamespace: kube-system\n",
    )
    repo.commit("a ModelSync for kube-system")
    syncs.create("prod", repo.file_url)
    message = errors_of(syncs.wait_failed("prod", c.REASON_VALIDATION_FAILED))
    assert "child.yaml:1: ModelSync" in message
    assert "spec.targetNamespace 'kube-system' is another namespace" in message
    assert syncs.models() == {}


def test_tenant_content_its_account_may_not_write_is_retried_until_a_rolebinding_allows_it(
    syncs: Syncs, local_cluster: LocalCluster
) -> None:
    """A 403 is about the account, not the revision: reported as Forbidden, not Stalled,
    and retried with backoff, so a RoleBinding made afterwards mends it with no commit."""
    repo = syncs.repo("models")
    repo.write("iris.yaml", model_yaml("iris"))
    repo.write(
        "budget.yaml",
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: iris}\n"
        "spec:\n  maxUnavailable: 1\n  selector: {matchLabels: {app: iris}}\n",
    )
    sha = repo.commit("a model and its disruption budget")
    syncs.create("prod", repo.file_url)
    ms = syncs.wait_failed("prod", c.REASON_FORBIDDEN)
    message = errors_of(ms)
    assert f"budget.yaml:1: PodDisruptionBudget {syncs.namespace}/iris" in message
    assert f"system:serviceaccount:{syncs.namespace}:{TENANT_ACCOUNT}" in message
    assert "grant the account that applies this ModelSync" in message
    assert dict_condition(ms, c.STALLED) is None
    assert syncs.models() == {}

    rbac = RbacAuthorizationV1Api(local_cluster.api)
    rbac.create_namespaced_role(
        syncs.namespace,
        kubernetes.client.V1Role(
            metadata=kubernetes.client.V1ObjectMeta(name="disruption-budgets"),
            rules=[
                kubernetes.client.V1PolicyRule(
                    api_groups=["policy"],
                    resources=["poddisruptionbudgets"],
                    verbs=["get", "list", "watch", "create", "update", "patch", "delete"],
                )
            ],
        ),
    )
    _bind(local_cluster.api, syncs.namespace, TENANT_ACCOUNT, "disruption-budgets", "Role")
    syncs.wait_applied("prod", f"main@sha1:{sha}")
    assert set(syncs.models()) == {"iris"}


@pytest.fixture
def priority_classes(local_cluster: LocalCluster, granted_namespace: str) -> Iterator[str]:
    """The granted tenant's account may manage PriorityClasses (a harmless cluster-scoped
    kind); the one it creates is removed afterwards."""
    rbac = RbacAuthorizationV1Api(local_cluster.api)
    name = f"{granted_namespace}-priorities"
    rbac.create_cluster_role(
        kubernetes.client.V1ClusterRole(
            metadata=kubernetes.client.V1ObjectMeta(name=name),
            rules=[
                kubernetes.client.V1PolicyRule(
                    api_groups=["scheduling.k8s.io"], resources=["priorityclasses"], verbs=["*"]
                )
            ],
        )
    )
    _bind(local_cluster.api, None, TENANT_ACCOUNT, name, "ClusterRole", granted_namespace)
    yield granted_namespace
    scheduling = kubernetes.client.SchedulingV1Api(local_cluster.api)
    with contextlib.suppress(kubernetes.client.ApiException):
        scheduling.delete_priority_class(granted_namespace)
    rbac.delete_cluster_role_binding(name)
    rbac.delete_cluster_role(name)


def test_tenant_with_the_platforms_grant_writes_elsewhere_within_its_rbac(
    local_cluster: LocalCluster,
    git_server: GitHttpServer,
    priority_classes: str,
    namespace: str,
    running_operator: Any,
) -> None:
    granted, other = priority_classes, namespace
    # The granted account may write into `other` (a RoleBinding there), nowhere else.
    _bind(local_cluster.api, other, TENANT_ACCOUNT, TENANT_ROLE, "ClusterRole", granted)
    syncs = Syncs(local_cluster, granted, git_server)
    repo = syncs.repo("models")
    repo.write("iris.yaml", model_yaml("iris"))
    repo.write("elsewhere.yaml", configmap("shared", other))
    repo.write(
        "priority.yaml",
        f"apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {{name: {granted}}}\n"
        "value: 1000\n",
    )
    # The grant widens where objects may go, not what the account may do.
    repo.write(
        "escalate.yaml",
        f"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n"
        f"metadata: {{name: {granted}-escalate}}\n"
        "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\n"
        f"subjects: [{{kind: ServiceAccount, name: {TENANT_ACCOUNT}, namespace: {granted}}}]\n",
    )
    repo.commit("reach out, and try to escalate")
    syncs.create("prod", repo.file_url)
    message = errors_of(syncs.wait_failed("prod", c.REASON_FORBIDDEN))
    assert "escalate.yaml:1: ClusterRoleBinding" in message
    assert f"system:serviceaccount:{granted}:{TENANT_ACCOUNT}" in message
    assert "forbidden" in message
    bindings = RbacAuthorizationV1Api(local_cluster.api).list_cluster_role_binding().items
    assert f"{granted}-escalate" not in {b.metadata.name for b in bindings}
    assert syncs.models() == {}

    sha = repo.remove("escalate.yaml").commit("within its rights")
    syncs.request("prod")
    syncs.wait_applied("prod", f"main@sha1:{sha}")
    assert configmaps(local_cluster.api, other) == {"shared"}
    scheduling = kubernetes.client.SchedulingV1Api(local_cluster.api)
    assert scheduling.read_priority_class(granted).value == 1000
    assert set(syncs.models()) == {"iris"}


def _bind(
    api: kubernetes.client.ApiClient,
    namespace: str | None,
    account: str,
    role: str,
    role_kind: str,
    account_namespace: str | None = None,
) -> None:
    """Bind `account` (of `account_namespace`, default `namespace`) to `role`: in
    `namespace` with a RoleBinding, or cluster-wide when `namespace` is None."""
    rbac = RbacAuthorizationV1Api(api)
    subject = kubernetes.client.RbacV1Subject(
        kind="ServiceAccount", name=account, namespace=account_namespace or namespace
    )
    ref = kubernetes.client.V1RoleRef(
        api_group="rbac.authorization.k8s.io", kind=role_kind, name=role
    )
    if namespace is None:
        rbac.create_cluster_role_binding(
            kubernetes.client.V1ClusterRoleBinding(
                metadata=kubernetes.client.V1ObjectMeta(name=role), role_ref=ref, subjects=[subject]
            )
        )
        return
    rbac.create_namespaced_role_binding(
        namespace,
        kubernetes.client.V1RoleBinding(
            metadata=kubernetes.client.V1ObjectMeta(name=f"{account}-{account_namespace or 'own'}"),
            role_ref=ref,
            subjects=[subject],
        ),
    )
