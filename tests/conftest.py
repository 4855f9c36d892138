"""Fixtures shared by every test: the local cluster, API clients, a namespace per test.

The cluster is started once per test session from the cached binaries (built on
first use) and stopped at the end. To reuse one started with `make cluster-up`
while iterating, set MODELSYNC_TEST_CLUSTER to its state directory (`.cluster`).
The real node (`real_node`) starts the first time a test asks for it, so a run
without such tests never needs root or containerd.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import kubernetes
import pytest

from tests.cluster import build, launcher
from tests.cluster import node as nodemod
from tests.cluster.objectstore import ObjectStore, ensure_versitygw
from tests.kube import install_tenant_role, make_tenant

NAMESPACE_LABEL = "modelsync.io/test"


@dataclass(frozen=True)
class LocalCluster:
    """What a test needs to reach the cluster: its state, binaries and an API client."""

    cluster: launcher.Cluster
    binaries: build.Binaries
    api: kubernetes.client.ApiClient

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    def env(self) -> dict[str, str]:
        """An environment in which kubectl, helm and our CLI talk to this cluster."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.binaries.directory}{os.pathsep}{env.get('PATH', '')}"
        # helm keeps caches and repositories here; keep them out of the user's home.
        env.setdefault("HELM_CACHE_HOME", str(self.cluster.root / "helm" / "cache"))
        env.setdefault("HELM_CONFIG_HOME", str(self.cluster.root / "helm" / "config"))
        env.setdefault("HELM_DATA_HOME", str(self.cluster.root / "helm" / "data"))
        return env

    def run(
        self, program: str, *args: str, cwd: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run one of the cluster's programs (kubectl, helm) against it."""
        return subprocess.run(
            [str(self.binaries.path(program)), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
            cwd=cwd,
        )


@pytest.fixture(scope="session")
def binaries() -> build.Binaries:
    return build.ensure_binaries()


@pytest.fixture(scope="session")
def local_cluster(
    binaries: build.Binaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    reuse = os.environ.get("MODELSYNC_TEST_CLUSTER")
    if reuse:
        cluster = launcher.status(Path(reuse).resolve())
        if cluster is None:
            pytest.fail(f"MODELSYNC_TEST_CLUSTER={reuse}: no cluster runs there (make cluster-up)")
        yield _connect(cluster, binaries)
        return
    root = tmp_path_factory.mktemp("cluster")
    with launcher.running(root, binaries, die_with_parent=True) as cluster:
        yield _connect(cluster, binaries)


def _connect(cluster: launcher.Cluster, binaries: build.Binaries) -> LocalCluster:
    api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    return LocalCluster(cluster=cluster, binaries=binaries, api=api)


@pytest.fixture(scope="session")
def tenant_role(local_cluster: LocalCluster) -> dict[str, object]:
    """The chart's ClusterRole for tenants, which every test namespace's account gets."""
    return install_tenant_role(local_cluster.api, local_cluster.binaries.path("helm"))


def tenant_namespace(local_cluster: LocalCluster, name: str) -> str:
    """Namespace `name` as a platform team sets one up for a tenant: the account that
    applies its git content, bound to the chart's tenant ClusterRole."""
    core = kubernetes.client.CoreV1Api(local_cluster.api)
    core.create_namespace(
        kubernetes.client.V1Namespace(
            metadata=kubernetes.client.V1ObjectMeta(name=name, labels={NAMESPACE_LABEL: "true"})
        )
    )
    make_tenant(local_cluster.api, name)
    return name


@pytest.fixture
def namespace(
    local_cluster: LocalCluster, tenant_role: dict[str, object], request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh tenant namespace named after the test, deleted afterwards."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = tenant_namespace(local_cluster, f"{slug}-{secrets.token_hex(3)}")
    yield name
    kubernetes.client.CoreV1Api(local_cluster.api).delete_namespace(
        name, propagation_policy="Background"
    )


@pytest.fixture
def kubectl(local_cluster: LocalCluster) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the cluster's own kubectl against it: kubectl("get", "nodes")."""

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return local_cluster.run("kubectl", *args, check=check)

    return run


# Where the object store listens: loopback until the real node lands; then the host's
# end of the node's veth (198.18.0.1), which pods reach.
OBJECTSTORE_HOST = "127.0.0.1"


@pytest.fixture(scope="session")
def objectstore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """A real S3 store (versitygw over a directory) with its own credentials."""
    store = ObjectStore(
        ensure_versitygw(), tmp_path_factory.mktemp("objectstore") / "data", host=OBJECTSTORE_HOST
    )
    store.start()
    try:
        yield store
    finally:
        store.stop()


class RealNode:
    """The session's real node (kubelet, kube-proxy, containerd in a network namespace),
    started on first use and again after a test stopped it."""

    def __init__(self, local: LocalCluster) -> None:
        self.local = local
        self.node: nodemod.Node | None = None

    def ensure(self) -> RealNode:
        reason = nodemod.why_not(self.local.binaries)
        if reason is not None:
            message = f"the real node cannot start here: {reason}"
            # CI must run these tests: a machine that cannot is a failure there.
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        if self.node is None:
            try:
                self.node = nodemod.start(
                    self.local.cluster, self.local.binaries, die_with_parent=True
                )
            except nodemod.NodeError as error:
                pytest.fail(str(error))
            # kubectl lists it beside the kwok nodes.
            self.local.cluster.nodes.append(nodemod.NAME)
        return self

    def stop(self) -> None:
        nodemod.stop(self.local.cluster.root)
        if nodemod.NAME in self.local.cluster.nodes:
            self.local.cluster.nodes.remove(nodemod.NAME)
        self.node = None

    @property
    def name(self) -> str:
        return nodemod.NAME

    def in_netns(self, *command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run `command` in the node's network namespace (where Service IPs work)."""
        assert self.node is not None
        return subprocess.run(
            self.node.netns_exec(*command),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )

    def log_tails(self, lines: int = 20) -> str:
        """The last lines of each component's log, for failure messages."""
        logs = self.local.cluster.root / "node" / "logs"
        return "\n".join(
            f"--- {path.name}:\n{launcher._log_tail(path, lines)}"
            for path in sorted(logs.glob("*.log"))
        )


@pytest.fixture(scope="session")
def real_node_session(local_cluster: LocalCluster) -> Iterator[RealNode]:
    handle = RealNode(local_cluster)
    yield handle
    if handle.node is not None and not os.environ.get("MODELSYNC_TEST_CLUSTER"):
        handle.stop()


@pytest.fixture
def real_node(real_node_session: RealNode) -> RealNode:
    """The real node, Ready. Pods land on it with `nodemod.NODE_SELECTOR`, the
    `nodemod.TOLERATION` and an image imported there (`imagePullPolicy: Never`)."""
    return real_node_session.ensure()
