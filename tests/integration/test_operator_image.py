"""The operator image built here (testcluster/operator_image.py), run without a node:
its layers unpacked into a root filesystem, its entrypoint started the way the chart's
pod starts it (root read-only, /tmp and HOME fresh writable mounts, user 10001, only
the image's environment), by the image's own Debian python3."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes
import pytest
import yaml

from modelsync.gitops import render as rendering
from testcluster import operator_image
from testcluster.launcher import free_ports
from tests.integration.test_operability import get
from tests.support.cluster import LocalCluster
from tests.support.kube import until
from tests.support.models import Models, manifest, ready_on

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def archive() -> Path:
    started = time.monotonic()
    built, reference = operator_image.operator_image()
    print(f"{reference}: {time.monotonic() - started:.1f}s {operator_image.TIMINGS}")
    return built


@pytest.fixture(scope="module")
def image_root(
    archive: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The image built (or found cached) and unpacked; its root and its config."""
    root = tmp_path_factory.mktemp("operator-image") / "rootfs"
    config = operator_image.unpack_archive(archive, root)
    yield root, config
    shutil.rmtree(root, ignore_errors=True)


def test_operator_image_last_layer_holds_only_our_wheel(archive: Path) -> None:
    """A commit rebuilds one small layer: our package, its dist-info and its two scripts."""
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        digest = index["manifests"][0]["digest"].removeprefix("sha256:")
        manifest = json.load(tar.extractfile(f"blobs/sha256/{digest}"))  # type: ignore[arg-type]
        assert len(manifest["layers"]) == 4
        last = manifest["layers"][-1]
        assert last["size"] < 4 * 2**20
        blob = tar.extractfile(f"blobs/sha256/{last['digest'].removeprefix('sha256:')}")
        with tarfile.open(fileobj=blob) as layer:
            names = [member.name.rstrip("/") for member in layer.getmembers()]
    site = "venv/lib/python3.11/site-packages"
    ours = [name for name in names if name.startswith((f"{site}/modelsync/", f"{site}/modelsync-"))]
    assert f"{site}/modelsync/cli/main.py" in ours
    scripts = {"venv/bin/modelsync", "venv/bin/kubectl-modelsync"}
    parents = {"venv", "venv/bin", "venv/lib", "venv/lib/python3.11", site}
    assert set(names) - set(ours) == scripts | parents | {f"{site}/modelsync"}


def test_operator_image_runs_modelsync_as_10001_on_a_read_only_root(
    image_root: tuple[Path, dict[str, Any]],
) -> None:
    root, config = image_root
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["/venv/bin/modelsync"]
    assert config["Cmd"] == ["run"]
    # The venv's Python is Debian's 3.11, not the host's.
    python = operator_image.run_confined(
        root,
        {**config, "Entrypoint": ["/venv/bin/python", "-c"]},
        ["import sys; print(sys.base_prefix, sys.version_info[:2])"],
    )
    assert python.stdout.split() == ["/usr", "(3,", "11)"], python.stderr
    version = operator_image.run_confined(root, config, ["--version"])
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == "modelsync 0.1.0"
    help_text = operator_image.run_confined(root, config, ["run", "--help"])
    assert help_text.returncode == 0, help_text.stderr
    assert "--leader-elect" in help_text.stdout
    # What the operator shells out to is in the image, and runs there.
    tools = operator_image.run_confined(
        root, {**config, "Entrypoint": ["sh", "-c"]}, ["git --version && ssh -V && prlimit -V"]
    )
    assert tools.returncode == 0, tools.stderr
    # Nothing but /tmp and HOME is writable, as under the chart's readOnlyRootFilesystem.
    probe = "touch /venv/x 2>/dev/null && echo venv; touch /tmp/x $HOME/x && echo tmp-home"
    writable = operator_image.run_confined(root, {**config, "Entrypoint": ["sh", "-c"]}, [probe])
    assert writable.stdout.split() == ["tmp-home"], writable.stderr


def test_operator_image_holds_kustomize_and_helm_source_renderers(
    image_root: tuple[Path, dict[str, Any]],
) -> None:
    """The versions rendering.py names, on the operator's PATH (its default settings)."""
    root, config = image_root
    versions = operator_image.run_confined(
        root,
        {**config, "Entrypoint": ["sh", "-c"]},
        ["kustomize version && HOME=/tmp helm version --short"],
    )
    assert versions.returncode == 0, versions.stderr
    kustomize, helm = versions.stdout.split()
    assert kustomize == rendering.KUSTOMIZE_VERSION
    assert helm.startswith(rendering.HELM_VERSION), helm


def test_operator_image_serves_a_model_with_in_cluster_config(
    image_root: tuple[Path, dict[str, Any]],
    local_cluster: LocalCluster,
    crds: list[str],
    own_namespace: str,
    tmp_path: Path,
) -> None:
    """`modelsync run` from the image with the chart's arguments, configured as in a pod:
    KUBERNETES_SERVICE_HOST/PORT and a ServiceAccount token, CA and namespace mounted
    read-only at the path the kubelet uses; it leads and brings a model to Ready. (No
    POD_NAME: there is no pod for the leader to label.)"""
    root, config = image_root
    core = kubernetes.client.CoreV1Api(local_cluster.api)
    rbac = kubernetes.client.RbacAuthorizationV1Api(local_cluster.api)
    account = "modelsync"
    core.create_namespaced_service_account(own_namespace, {"metadata": {"name": account}})
    binding = f"operator-image-{secrets.token_hex(4)}"
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": binding},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": own_namespace}],
        }
    )
    kubeconfig = yaml.safe_load(local_cluster.kubeconfig.read_text())
    cluster = kubeconfig["clusters"][0]["cluster"]
    secrets_dir = tmp_path / "serviceaccount"
    secrets_dir.mkdir()
    (secrets_dir / "ca.crt").write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    (secrets_dir / "namespace").write_text(own_namespace)
    token = core.create_namespaced_service_account_token(
        account, own_namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    (secrets_dir / "token").write_text(token)
    for file in secrets_dir.iterdir():
        file.chmod(0o644)  # the kubelet's projected volume is readable by the pod's user
    server = urlsplit(cluster["server"])
    port = free_ports(1)[0]
    args = [
        "run",
        f"--namespace={own_namespace}",
        "--http-port",
        str(port),
        "--git-cache-dir=/var/cache/modelsync",
        "--leader-elect",  # in the namespace of $POD_NAMESPACE, as the chart's pods
        "--default-service-account=modelsync-tenant",
    ]
    env = [
        f"KUBERNETES_SERVICE_HOST={server.hostname}",
        f"KUBERNETES_SERVICE_PORT={server.port}",
        f"POD_NAMESPACE={own_namespace}",
    ]
    command, host_env = operator_image.confined_command(
        root, config, args, env=env, binds=[(secrets_dir, SA_DIR)]
    )
    log = (tmp_path / "operator.log").open("wb")
    process = subprocess.Popen(command, env=host_env, stdout=log, stderr=log)
    try:

        def leading() -> bool:
            assert process.poll() is None, (tmp_path / "operator.log").read_text()[-3000:]
            return get(port, "/readyz") == (200, "ok: leading")

        until(
            "the image's operator to lead",
            leading,
            60,
            interval=0.2,
            explain=lambda: (tmp_path / "operator.log").read_text()[-3000:],
        )
        models = Models(local_cluster, own_namespace)
        models.create(manifest("iris"))
        models.wait("iris", ready_on("1"), describe="the image's operator to serve it")
        lease = kubernetes.client.CoordinationV1Api(local_cluster.api).read_namespaced_lease(
            "modelsync-leader", own_namespace
        )
        assert lease.spec.holder_identity.endswith(f"_{process.pid}")
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()
        rbac.delete_cluster_role_binding(binding)
    print((tmp_path / "operator.log").read_text()[-1500:], file=sys.stderr)
