"""What a tenant cannot make another tenant's ModelSync do, and what no ModelSync can make
the operator do: be marked rolled back (and push with its credentials) by a
ModelDeployment it never applied; poll its git host without pause."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator

import kubernetes
import pytest

from modelsync.api import constants as c
from tests.integration.test_rollback import DEADLINE, broken_v2, rolled_back
from tests.support.cluster import NAMESPACE_LABEL, LocalCluster
from tests.support.gitserver import GitHttpServer
from tests.support.kube import dict_condition
from tests.support.models import Models, manifest, ready_on
from tests.support.syncs import Syncs, model_yaml


@pytest.fixture
def other_namespace(local_cluster: LocalCluster) -> Iterator[str]:
    """A second tenant's namespace."""
    name = f"other-tenant-{secrets.token_hex(3)}"
    core = kubernetes.client.CoreV1Api(local_cluster.api)
    core.create_namespace(
        kubernetes.client.V1Namespace(
            metadata=kubernetes.client.V1ObjectMeta(name=name, labels={NAMESPACE_LABEL: "true"})
        )
    )
    yield name
    core.delete_namespace(name, propagation_policy="Background")


def test_security_interval_below_the_floor_is_refused(syncs: Syncs) -> None:
    with pytest.raises(kubernetes.client.ApiException) as refused:
        syncs.create("busy", "https://git.example.com/x.git", interval="0s")
    assert refused.value.status == 422
    assert "interval must be at least 5s" in str(refused.value.body)


def test_security_spoofed_modeldeployment_cannot_mark_another_tenants_sync_rolled_back(
    syncs: Syncs, git_server: GitHttpServer, local_cluster: LocalCluster, other_namespace: str
) -> None:
    syncs.secret("git-auth", git_server.username, git_server.password)
    repo = syncs.repo("models")
    repo.write("iris.yaml", model_yaml("iris", version="1"))
    first = repo.commit("iris 1")
    syncs.create("prod", syncs.http_url(repo), secret="git-auth", rollbackWriteBack=True)
    syncs.wait_applied("prod", f"main@sha1:{first}")
    repo.write("iris.yaml", model_yaml("iris", version="2"))
    second = repo.commit("iris 2")
    syncs.request("prod")
    syncs.wait_applied("prod", f"main@sha1:{second}")
    Models(syncs.cluster, syncs.namespace).wait("iris", ready_on("2"))

    # Another tenant labels its own ModelDeployment as the victim's, with the victim's
    # revisions, and makes its version 2 fail.
    spoof = Models(local_cluster, other_namespace)
    body = manifest("iris", version="1")
    body["metadata"]["labels"] = {
        c.LABEL_SYNC_NAME: "prod",
        c.LABEL_SYNC_NAMESPACE: syncs.namespace,
    }
    body["metadata"]["annotations"] = {c.ANNOTATION_REVISION: f"main@sha1:{first}"}
    body["spec"]["rollout"] = {"progressDeadlineSeconds": DEADLINE}
    spoof.create(body)
    spoof.wait("iris", ready_on("1"))
    spoof.patch(
        "iris",
        {
            **broken_v2(),
            "metadata": {"annotations": {c.ANNOTATION_REVISION: f"main@sha1:{second}"}},
        },
    )
    spoof.wait("iris", rolled_back, timeout=DEADLINE + 30, describe="the spoof rolled back")

    token = syncs.request("prod")
    ms = syncs.wait_applied("prod", f"main@sha1:{second}", token)
    ready = dict_condition(ms, c.READY) or {}
    assert ready["reason"] == c.REASON_SUCCEEDED, ready
    assert "writeBacks" not in ms["status"]
    assert dict_condition(ms, c.WRITE_BACK) is None
    pushed = subprocess.run(
        ["git", "ls-remote", str(repo.bare), "refs/heads/modelsync/*"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert pushed == "", f"a branch was pushed to the victim's repository: {pushed}"
