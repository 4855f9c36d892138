"""Every integration test runs against the local cluster: mark them so
`pytest -m "not cluster"` (or `make unit`) leaves them out. The operator's
tests share one operator, run in this process against that cluster."""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from modelsync.runtime import operator
from modelsync.runtime.settings import OperatorSettings
from testcluster import addresses, modelimages, wheels
from testcluster.gitea import Gitea, ensure_gitea
from testcluster.launcher import free_ports
from testcluster.objectstore import ObjectStore, ensure_versitygw
from testcluster.renderers import ensure_renderers
from tests.support.cluster import LocalCluster, RealNode, tenant_namespace
from tests.support.gitserver import GitHttpServer, GitSshServer
from tests.support.kube import TENANT_ACCOUNT, install_crds, until
from tests.support.models import Models, train_iris
from tests.support.syncs import Syncs

OWN_OPERATOR_PREFIX = "own-operator-"
# Namespaces the shared operator's platform settings let write elsewhere and write
# cluster-scoped objects (the `granted_namespace` fixture); no other test namespace may.
GRANTED_PREFIX = "granted-"
# The shared operator's limit on one render: tests of the limit wait this long. Helm
# takes ~10s on a loaded 2-core machine to render the 200 MiB chart whose output the
# size limit stops: four times that, so it is the size limit that stops it.
RENDER_TIMEOUT_SECONDS = 45.0
# Address space of a render: above the 2 GiB default, so that the 200 MiB chart meets
# the output limit (what its test is about) before the memory limit.
RENDER_MEMORY_BYTES = 4 << 30
# The real node's object store: on the host's end of the node's veth, where pods reach it.
STORE_HOST = addresses.HOST_IP
BUCKET = "models"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def crds(local_cluster: LocalCluster) -> list[str]:
    """Install every CRD in crds/ (the very files users install) and wait until served."""
    return install_crds(local_cluster.api)


@pytest.fixture(scope="session")
def analysis_ports() -> tuple[int, int]:
    """Loopback ports the shared operator's canary analysis may query: the first for a
    test's Prometheus API, the second never listened on (an unreachable endpoint)."""
    first, second = free_ports(2)
    return first, second


@pytest.fixture(scope="session")
def commit_status_ports() -> tuple[int, int]:
    """Loopback ports whose APIs the shared operator lets a spec.notify.apiURL name
    (--commit-status-api-url): for a test's GitHub- or GitLab-like API, and a silent one."""
    first, second = free_ports(2)
    return first, second


@pytest.fixture(scope="session")
def notify_ports() -> tuple[int, int]:
    """Loopback ports the shared operator may post notifications to
    (--notification-endpoint): for a test's receiver, and a silent one."""
    first, second = free_ports(2)
    return first, second


@pytest.fixture(scope="session")
def renderers() -> dict[str, Path]:
    """kustomize and helm, standalone, as the operator image and the CLI get them."""
    return ensure_renderers()


@pytest.fixture(scope="session")
def running_operator(
    local_cluster: LocalCluster,
    crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
    analysis_ports: tuple[int, int],
    commit_status_ports: tuple[int, int],
    notify_ports: tuple[int, int],
    renderers: dict[str, Path],
) -> Iterator[operator.Operator]:
    """The operator, cluster-wide, in a thread of this process."""
    settings = OperatorSettings(
        # Every namespace but those where a test runs an operator process of its own.
        namespaces=(f"*,!{OWN_OPERATOR_PREFIX}*",),
        git_cache_dir=str(tmp_path_factory.mktemp("git-cache")),
        kubeconfig=str(local_cluster.kubeconfig),
        http_host="127.0.0.1",
        http_port=free_ports(1)[0],  # /metrics, /healthz, /readyz and the webhooks
        resync_seconds=3600,  # tests trigger resyncs themselves
        retry_seconds=1,
        # Watch streams restart each minute here: a stream gone silent costs a test a
        # minute, not the default five.
        watch_server_timeout=60,
        # And a ModelSync the watch never delivered is listed within 20 s, not 5 min.
        relist_seconds=20,
        analysis_endpoints=tuple(f"http://127.0.0.1:{port}" for port in analysis_ports),
        commit_status_api_urls=tuple(f"http://127.0.0.1:{port}" for port in commit_status_ports),
        notification_endpoints=tuple(f"http://127.0.0.1:{port}" for port in notify_ports),
        # Locked down, as a platform team runs it: git content is applied as each test
        # namespace's tenant account; only granted-* namespaces may write elsewhere.
        default_service_account=TENANT_ACCOUNT,
        allow_other_namespaces=(f"{GRANTED_PREFIX}*",),
        allow_cluster_scoped=(f"{GRANTED_PREFIX}*",),
        allow_file_urls=True,  # most tests serve their repositories as file://
        # Built from their wrapper modules (testcluster/renderers.py), cached by version.
        kustomize=str(renderers["kustomize"]),
        helm=str(renderers["helm"]),
        render_timeout_seconds=RENDER_TIMEOUT_SECONDS,
        render_memory_bytes=RENDER_MEMORY_BYTES,
    )
    runtime = operator.Operator(settings)
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=operator.run, args=(settings, stop, ready, runtime), name="operator", daemon=True
    )
    thread.start()
    assert ready.wait(60), "the operator did not start within 60s"
    yield runtime
    stop.set()
    thread.join(30)
    assert not thread.is_alive(), "the operator did not stop within 30s"


@pytest.fixture
def own_namespace(local_cluster: LocalCluster, tenant_role: dict[str, object]) -> Iterator[str]:
    """A namespace the shared operator leaves alone, for an operator process of a test's own."""
    name = tenant_namespace(local_cluster, f"{OWN_OPERATOR_PREFIX}{secrets.token_hex(4)}")
    yield name
    kubernetes.client.CoreV1Api(local_cluster.api).delete_namespace(
        name, propagation_policy="Background"
    )


@pytest.fixture
def granted_namespace(local_cluster: LocalCluster, tenant_role: dict[str, object]) -> Iterator[str]:
    """A tenant namespace the platform lets write into other namespaces and write
    cluster-scoped objects (the shared operator's settings); RBAC still bounds it."""
    name = tenant_namespace(local_cluster, f"{GRANTED_PREFIX}{secrets.token_hex(4)}")
    yield name
    kubernetes.client.CoreV1Api(local_cluster.api).delete_namespace(
        name, propagation_policy="Background"
    )


@pytest.fixture(scope="session")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHttpServer]:
    server = GitHttpServer(tmp_path_factory.mktemp("git")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gitea(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gitea]:
    """A real Gitea on loopback (built once from its Go module, then cached), with an
    admin and its token; each test makes repositories of its own in it."""
    server = Gitea(ensure_gitea(), tmp_path_factory.mktemp("gitea")).start()
    yield server
    server.stop()


@pytest.fixture
def syncs(
    running_operator: operator.Operator,
    local_cluster: LocalCluster,
    namespace: str,
    git_server: GitHttpServer,
) -> Syncs:
    return Syncs(local_cluster, namespace, git_server)


@pytest.fixture(scope="session")
def ssh_server(
    git_server: GitHttpServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GitSshServer]:
    """sshd on loopback serving the same repositories as `git_server`, key auth only."""
    if not Path(GitSshServer.SSHD).exists():
        pytest.fail("OpenSSH's sshd is missing: `make test` installs openssh-server")
    server = GitSshServer(git_server.root, tmp_path_factory.mktemp("sshd"), free_ports(1)[0])
    server.start()

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
        except OSError:
            return False
        return True

    try:
        until("sshd to listen", listening, 15, explain=lambda: str(server.state / "sshd.log"))
    except AssertionError:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture
def models(
    running_operator: operator.Operator, local_cluster: LocalCluster, namespace: str
) -> Models:
    """The ModelDeployments of this test's namespace, served by the shared operator."""
    return Models(local_cluster, namespace)


# ------------------------------------------------------------------ models on the real node


@pytest.fixture(scope="module")
def node_images(real_node_session: RealNode) -> dict[str, str]:
    """The model images, built (or cached) and imported into the node's containerd."""
    node = real_node_session.ensure().node
    assert node is not None
    return modelimages.import_model_images(node.ctr())


@pytest.fixture(scope="module")
def node_store(
    node_images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ObjectStore]:
    """The object store where pods reach it (the node's veth exists only once it runs)."""
    store = ObjectStore(
        ensure_versitygw(), tmp_path_factory.mktemp("node-store") / "data", host=STORE_HOST
    )
    store.start()
    try:
        store.create_bucket(BUCKET)
        yield store
    finally:
        store.stop()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bytes, list[int]]]:
    """Version -> (model.joblib, its predictions for ROWS): v1 and v2 answer differently."""
    python = wheels.ensure_host_venv("mlserver")
    where = tmp_path_factory.mktemp("trained")
    versions: dict[str, tuple[bytes, list[int]]] = {}
    for version, shift in (("1", 0), ("2", 1)):
        path = where / f"v{version}.joblib"
        predictions = train_iris(python, path, shift)
        versions[version] = (path.read_bytes(), predictions)
    assert versions["1"][1] != versions["2"][1]
    return versions
