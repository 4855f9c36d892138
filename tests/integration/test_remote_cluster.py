"""Remote clusters (spec.kubeConfig): a management operator applies one repository to its
own cluster and, through a tenant's kubeconfig, to a second local cluster (kwok only, its
own ports and 198.18 ranges), where an operator run with `--controllers serving` serves
the models. An unreachable remote is reported without holding up other ModelSyncs;
kubeconfigs that would make the operator run a program, read its own files or connect
where the platform did not allow are refused; so is a namespace the platform did not
allow.

The module runs its own two operators in threads (in own-operator-* namespaces, which
the session's shared operator leaves alone): the management operator's platform settings
allow remote clusters from own-operator-rca-* namespaces only, and the second cluster's
API server (plus one reserved address nothing listens on)."""

from __future__ import annotations

import base64
import secrets
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from modelsync.api import constants as c
from modelsync.runtime import operator
from modelsync.runtime.settings import OperatorSettings
from testcluster import addresses, build, launcher
from tests.integration.conftest import OWN_OPERATOR_PREFIX
from tests.integration.test_kustomize import overlay
from tests.support.cluster import LocalCluster, tenant_namespace
from tests.support.gitserver import WorkRepo
from tests.support.kube import (
    TENANT_ACCOUNT,
    dict_condition,
    install_crds,
    install_tenant_role,
    make_tenant,
    wait_for,
)
from tests.support.models import MD, ready_on
from tests.support.syncs import MS, model_yaml

PREFIX = f"{OWN_OPERATOR_PREFIX}rc"  # not hex: no other test's own-operator namespace
ALLOWED = f"{PREFIX}a-"  # the management operator allows remote clusters from these
REFUSED = f"{PREFIX}b-"
UNREACHABLE_SERVER = f"https://{addresses.UNREACHABLE_API}:6443"
# What a remote kubeconfig's user needs besides the tenant role: to see its namespace.
NAMESPACE_READER = "modelsync-test-namespace-reader"


@dataclass(frozen=True)
class Remote:
    """The second cluster: its state, an admin client, and the ModelSyncs' view of it."""

    cluster: launcher.Cluster
    api: kubernetes.client.ApiClient
    helm: Path

    @property
    def server(self) -> str:
        return self.cluster.server

    def tenant_kubeconfig(self, namespace: str) -> dict[str, Any]:
        """A kubeconfig for the tenant's ServiceAccount in `namespace` of this cluster (a
        token, as the README advises, not an admin certificate): RBAC there bounds it."""
        core = kubernetes.client.CoreV1Api(self.api)
        try:
            core.create_namespace(kubernetes.client.V1Namespace(metadata={"name": namespace}))
        except kubernetes.client.ApiException as error:
            if error.status != 409:
                raise
        make_tenant(self.api, namespace)
        rbac = kubernetes.client.RbacAuthorizationV1Api(self.api)
        rbac.create_namespaced_role_binding(
            namespace,
            kubernetes.client.V1RoleBinding(
                metadata=kubernetes.client.V1ObjectMeta(name=NAMESPACE_READER),
                role_ref=kubernetes.client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io",
                    kind="ClusterRole",
                    name=NAMESPACE_READER,
                ),
                subjects=[
                    kubernetes.client.RbacV1Subject(
                        kind="ServiceAccount", name=TENANT_ACCOUNT, namespace=namespace
                    )
                ],
            ),
        )
        token = core.create_namespaced_service_account_token(
            TENANT_ACCOUNT,
            namespace,
            kubernetes.client.AuthenticationV1TokenRequest(
                spec=kubernetes.client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
            ),
        ).status.token
        config = yaml.safe_load(self.cluster.kubeconfig.read_text())
        config["users"] = [{"name": "tenant", "user": {"token": token}}]
        config["contexts"][0]["context"]["user"] = "tenant"
        return dict(config)

    def models(self, namespace: str) -> dict[str, dict[str, Any]]:
        items = kubernetes.client.CustomObjectsApi(self.api).list_namespaced_custom_object(
            namespace=namespace, **MD
        )["items"]
        return {md["metadata"]["name"]: md for md in items}


def _run_operator(settings: OperatorSettings) -> tuple[threading.Event, threading.Thread]:
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=operator.run,
        args=(settings, stop, ready, operator.Operator(settings)),
        name=f"operator-{settings.controllers}",
        daemon=True,
    )
    thread.start()
    assert ready.wait(60), "an operator did not start within 60s"
    return stop, thread


def _stop(stop: threading.Event, thread: threading.Thread) -> None:
    stop.set()
    thread.join(30)
    assert not thread.is_alive(), "an operator did not stop within 30s"


@pytest.fixture(scope="module")
def remote(binaries: build.Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    """A second local cluster (kwok, one node, addresses.SECOND) with our CRDs and an
    operator that only serves (`--controllers serving`), as a remote cluster runs it."""
    root = tmp_path_factory.mktemp("remote-cluster")
    with launcher.running(
        root, binaries, nodes=1, ranges=addresses.SECOND, die_with_parent=True
    ) as cluster:
        api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
        install_crds(api)
        install_tenant_role(api, binaries.path("helm"))
        kubernetes.client.RbacAuthorizationV1Api(api).create_cluster_role(
            kubernetes.client.V1ClusterRole(
                metadata=kubernetes.client.V1ObjectMeta(name=NAMESPACE_READER),
                rules=[
                    kubernetes.client.V1PolicyRule(
                        api_groups=[""], resources=["namespaces"], verbs=["get"]
                    )
                ],
            )
        )
        stop, thread = _run_operator(
            OperatorSettings(
                kubeconfig=str(cluster.kubeconfig),
                controllers=(c.CONTROLLER_SERVING,),
                http_port=0,
                resync_seconds=3600,
                retry_seconds=1,
                watch_server_timeout=60,
            )
        )
        yield Remote(cluster, api, binaries.path("helm"))
        _stop(stop, thread)


@pytest.fixture(scope="module")
def blackholed() -> Iterator[str]:
    """The unreachable remote's address, routed nowhere for the module. Without the real
    node's link, 198.18.0.0/15 follows the default route off this machine (something there
    once answered TLS): a test's traffic must never leave it."""
    prefix = f"{addresses.UNREACHABLE_API}/32"
    subprocess.run(["ip", "route", "replace", "blackhole", prefix], check=True)
    try:
        yield addresses.UNREACHABLE_API
    finally:
        subprocess.run(["ip", "route", "del", "blackhole", prefix], check=False)


@pytest.fixture(scope="module")
def management(
    blackholed: str,
    local_cluster: LocalCluster,
    crds: list[str],
    renderers: dict[str, Path],
    remote: Remote,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """The management operator: this module's namespaces only; remote clusters allowed
    from ALLOWED namespaces, to the second cluster and to the unreachable address."""
    stop, thread = _run_operator(
        OperatorSettings(
            namespaces=(f"{PREFIX}*",),
            kubeconfig=str(local_cluster.kubeconfig),
            git_cache_dir=str(tmp_path_factory.mktemp("remote-git-cache")),
            http_port=0,
            resync_seconds=3600,
            retry_seconds=1,
            watch_server_timeout=60,
            # Two workers: an unreachable remote holding one leaves one for the rest.
            workers=2,
            default_service_account=TENANT_ACCOUNT,
            allow_file_urls=True,
            kustomize=str(renderers["kustomize"]),
            helm=str(renderers["helm"]),
            allow_remote_clusters=(f"{ALLOWED}*",),
            remote_cluster_servers=(remote.server, UNREACHABLE_SERVER),
        )
    )
    yield
    _stop(stop, thread)


def _namespace(local_cluster: LocalCluster, prefix: str) -> Iterator[str]:
    name = tenant_namespace(local_cluster, f"{prefix}{secrets.token_hex(4)}")
    yield name
    kubernetes.client.CoreV1Api(local_cluster.api).delete_namespace(
        name, propagation_policy="Background"
    )


@pytest.fixture
def allowed(local_cluster: LocalCluster, tenant_role: dict[str, object]) -> Iterator[str]:
    yield from _namespace(local_cluster, ALLOWED)


@pytest.fixture
def refused(local_cluster: LocalCluster, tenant_role: dict[str, object]) -> Iterator[str]:
    yield from _namespace(local_cluster, REFUSED)


class Tenant:
    """One namespace of the management cluster: its Secrets and ModelSyncs."""

    def __init__(self, local: LocalCluster, namespace: str, tmp: Path) -> None:
        self.namespace, self.tmp = namespace, tmp
        self.core = kubernetes.client.CoreV1Api(local.api)
        self.api = kubernetes.client.CustomObjectsApi(local.api)

    def kubeconfig_secret(
        self, name: str, config: dict[str, Any] | str, kind: str = c.SECRET_TYPE_KUBECONFIG
    ) -> None:
        text = config if isinstance(config, str) else yaml.safe_dump(config)
        self.core.create_namespaced_secret(
            self.namespace,
            kubernetes.client.V1Secret(
                metadata=kubernetes.client.V1ObjectMeta(name=name),
                type=kind,
                data={c.KUBECONFIG_KEY: base64.b64encode(text.encode()).decode()},
            ),
        )

    def sync(self, name: str, repo: WorkRepo, path: str, kubeconfig: str | None = None) -> None:
        spec: dict[str, Any] = {"repo": {"url": repo.file_url}, "path": path, "interval": "1h"}
        if kubeconfig:
            spec["kubeConfig"] = {"secretRef": {"name": kubeconfig}}
        self.api.create_namespaced_custom_object(
            namespace=self.namespace,
            body={
                "apiVersion": c.API_VERSION,
                "kind": c.MODELSYNC_KIND,
                "metadata": {"name": name},
                "spec": spec,
            },
            **MS,
        )

    def request(self, name: str) -> None:
        self.api.patch_namespaced_custom_object(
            name=name,
            namespace=self.namespace,
            body={"metadata": {"annotations": {c.ANNOTATION_RECONCILE_REQUESTED: name + "-2"}}},
            **MS,
        )

    def wait(self, name: str, reason: str, revision: str = "", timeout: float = 90) -> Any:
        def reached(ms: dict[str, Any] | None) -> bool:
            ready = dict_condition(ms, c.READY) or {}
            applied = ((ms or {}).get("status") or {}).get("lastAppliedRevision")
            return ready.get("reason") == reason and (not revision or applied == revision)

        return wait_for(
            lambda **kw: self.api.list_namespaced_custom_object(**MS, **kw),
            name,
            reached,
            namespace=self.namespace,
            timeout=timeout,
            describe=f"ModelSync {name} to be {reason} {revision}",
        )

    def models(self) -> dict[str, dict[str, Any]]:
        items = self.api.list_namespaced_custom_object(namespace=self.namespace, **MD)["items"]
        return {md["metadata"]["name"]: md for md in items}


def said(ms: dict[str, Any]) -> tuple[str, str]:
    """What a ModelSync says: its Ready condition's short message, and the whole one (the
    newest entry of its history, as `kubectl describe` shows it)."""
    headline = str((dict_condition(ms, c.READY) or {}).get("message") or "")
    history = (ms.get("status") or {}).get("history") or [{}]
    return headline, str(history[0].get("message") or "")


def environments(root: Path, name: str) -> WorkRepo:
    """A base and an overlay per cluster (as teams write them: see test_kustomize)."""
    repo = WorkRepo(root, name)
    repo.write("base/iris.yaml", model_yaml("iris"))
    repo.write("base/kustomization.yaml", "resources: [iris.yaml]\n")
    repo.write("overlays/local/kustomization.yaml", overlay("local", "1", 1))
    repo.write("overlays/remote/kustomization.yaml", overlay("remote", "1", 1))
    return repo


def test_remote_cluster_one_commit_reaches_both_clusters(
    management: None,
    remote: Remote,
    local_cluster: LocalCluster,
    allowed: str,
    tmp_path: Path,
) -> None:
    tenant = Tenant(local_cluster, allowed, tmp_path)
    repo = environments(tmp_path, "envs")
    first = f"main@sha1:{repo.commit('iris in both clusters')}"
    tenant.kubeconfig_secret("remote-cluster", remote.tenant_kubeconfig(allowed))
    # A ModelSync in the remote cluster itself: its serving-only operator syncs none.
    there_api = kubernetes.client.CustomObjectsApi(remote.api)
    body = {"apiVersion": c.API_VERSION, "kind": c.MODELSYNC_KIND, "metadata": {"name": "there"},
            "spec": {"repo": {"url": repo.file_url}, "path": "overlays/remote"}}  # fmt: skip
    there_api.create_namespaced_custom_object(namespace=allowed, body=body, **MS)
    tenant.sync("local", repo, "overlays/local")
    tenant.sync("remote", repo, "overlays/remote", kubeconfig="remote-cluster")

    # Ready means the models serve: the remote one served by the remote cluster's operator.
    tenant.wait("local", c.REASON_SUCCEEDED, first)
    ms = tenant.wait("remote", c.REASON_SUCCEEDED, first)
    assert ms["status"]["inventory"] == [
        {"apiVersion": c.API_VERSION, "kind": c.MODELDEPLOYMENT_KIND, "name": "iris-remote",
         "namespace": allowed},
    ]  # fmt: skip
    assert (dict_condition(ms, c.HEALTHY) or {}).get("status") == "True"  # read there
    assert not ms["status"].get("modelsNotReady")
    there = remote.models(allowed)
    assert set(there) == {"iris-remote"}
    assert ready_on("1")(there["iris-remote"])
    assert there["iris-remote"]["metadata"]["labels"][c.LABEL_SYNC_NAME] == "remote"
    assert set(tenant.models()) == {"iris-local"}  # nothing of the remote overlay here
    # Served there (Ready above) by the operator that left the remote ModelSync alone.
    there_ms = there_api.get_namespaced_custom_object(namespace=allowed, name="there", **MS)
    assert not there_ms.get("status")

    # One commit: a second model in the base reaches both clusters.
    repo.write("base/fraud.yaml", model_yaml("fraud"))
    repo.write("base/kustomization.yaml", "resources: [iris.yaml, fraud.yaml]\n")
    second = f"main@sha1:{repo.commit('and fraud')}"
    tenant.request("local")
    tenant.request("remote")
    tenant.wait("local", c.REASON_SUCCEEDED, second)
    tenant.wait("remote", c.REASON_SUCCEEDED, second)
    assert set(remote.models(allowed)) == {"iris-remote", "fraud-remote"}
    assert set(tenant.models()) == {"iris-local", "fraud-local"}


def test_remote_cluster_unreachable_is_reported_without_delaying_the_other(
    management: None,
    remote: Remote,
    local_cluster: LocalCluster,
    allowed: str,
    tmp_path: Path,
) -> None:
    tenant = Tenant(local_cluster, allowed, tmp_path)
    repo = environments(tmp_path, "envs")
    revision = f"main@sha1:{repo.commit('iris')}"
    config = remote.tenant_kubeconfig(allowed)
    config["clusters"][0]["cluster"]["server"] = UNREACHABLE_SERVER  # nothing listens there
    tenant.kubeconfig_secret("gone", config)
    tenant.sync("gone", repo, "overlays/remote", kubeconfig="gone")
    tenant.sync("local", repo, "overlays/local")

    tenant.wait("local", c.REASON_SUCCEEDED, revision)
    ms = tenant.wait("gone", c.REASON_CLUSTER_UNREACHABLE)
    headline, message = said(ms)
    assert f"cluster {UNREACHABLE_SERVER} does not answer" in headline
    assert "Secret 'gone'" in message
    assert not ms["status"].get("lastAppliedRevision")
    assert remote.models(allowed) == {}


# Each form a kubeconfig may not take, and the words its refusal must hold. The `exec`
# one would leave a file behind if it ever ran.
REFUSED_FORMS: dict[str, tuple[str, str]] = {
    "exec": ("user", "exec is refused: runs a program"),
    "auth-provider": ("user", "auth-provider is refused"),
    "token-file": ("user", "tokenFile is refused"),
    "certificate-file": ("user", "client-certificate is refused"),
    "skip-tls": ("cluster", "insecure-skip-tls-verify is refused"),
    "ca-file": ("cluster", "certificate-authority is refused"),
    "proxy": ("cluster", "proxy-url is refused"),
    "server-not-listed": ("cluster", "is not allowed"),
}


def _refused_form(form: str, config: dict[str, Any], marker: Path) -> dict[str, Any]:
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    if form == "exec":
        user["exec"] = {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "/bin/sh",
            "args": ["-c", f"touch {marker}; echo '{{}}'"],
        }
    elif form == "auth-provider":
        user["auth-provider"] = {"name": "oidc", "config": {"id-token": "x"}}
    elif form == "token-file":
        user["tokenFile"] = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    elif form == "certificate-file":
        user["client-certificate"], user["client-key"] = "/etc/ssl/a.crt", "/etc/ssl/a.key"
    elif form == "skip-tls":
        cluster["insecure-skip-tls-verify"] = True
    elif form == "ca-file":
        cluster["certificate-authority"] = "/etc/ssl/certs/ca-certificates.crt"
    elif form == "proxy":
        cluster["proxy-url"] = f"http://{addresses.UNREACHABLE_API}:3128"
    elif form == "server-not-listed":
        cluster["server"] = "https://127.0.0.1:1"
    return config


def test_remote_cluster_refused_kubeconfigs_each_with_a_clear_message(
    management: None,
    remote: Remote,
    local_cluster: LocalCluster,
    allowed: str,
    tmp_path: Path,
) -> None:
    tenant = Tenant(local_cluster, allowed, tmp_path)
    repo = environments(tmp_path, "envs")
    repo.commit("iris")
    marker = tmp_path / "exec-ran"
    base = remote.tenant_kubeconfig(allowed)
    for form in REFUSED_FORMS:
        config = _refused_form(form, yaml.safe_load(yaml.safe_dump(base)), marker)
        tenant.kubeconfig_secret(form, config)
        tenant.sync(form, repo, "overlays/remote", kubeconfig=form)
    # A good kubeconfig in a Secret not made for one is not read at all.
    tenant.kubeconfig_secret("opaque", base, kind="Opaque")
    tenant.sync("opaque", repo, "overlays/remote", kubeconfig="opaque")

    for form, (part, words) in REFUSED_FORMS.items():
        headline, message = said(tenant.wait(form, c.REASON_KUBECONFIG_INVALID))
        assert headline.startswith(f"Secret {form!r}: kubeconfig refused: {part} '"), headline
        assert words in headline, headline
        assert message.startswith(f"Secret {allowed}/{form} (spec.kubeConfig.secretRef)")
        assert words in message, message
    _, message = said(tenant.wait("opaque", c.REASON_KUBECONFIG_INVALID))
    assert "has type 'Opaque'; only Secrets of type 'modelsync.io/kubeconfig'" in message
    assert not marker.exists(), "the kubeconfig's exec command ran in the operator"
    assert remote.models(allowed) == {}


def test_remote_cluster_modelsync_in_a_namespace_not_allowed_is_refused(
    management: None,
    remote: Remote,
    local_cluster: LocalCluster,
    refused: str,
    tmp_path: Path,
) -> None:
    tenant = Tenant(local_cluster, refused, tmp_path)
    repo = environments(tmp_path, "envs")
    repo.commit("iris")
    tenant.kubeconfig_secret("remote-cluster", remote.tenant_kubeconfig(refused))
    tenant.sync("remote", repo, "overlays/remote", kubeconfig="remote-cluster")

    ms = tenant.wait("remote", c.REASON_REMOTE_CLUSTER_NOT_ALLOWED)
    headline, message = said(ms)
    assert f"namespace {refused!r} may not apply to another cluster" in headline
    assert "--allow-remote-clusters" in message
    assert (dict_condition(ms, c.STALLED) or {}).get("status") == "True"
    assert remote.models(refused) == {}
