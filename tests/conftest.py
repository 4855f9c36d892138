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
from pathlib import Path

import kubernetes
import pytest

from testcluster import build, launcher
from testcluster.objectstore import ObjectStore, ensure_versitygw
from tests.support.cluster import LocalCluster, RealNode, tenant_namespace
from tests.support.kube import install_tenant_role


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
