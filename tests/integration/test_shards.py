"""Operator shards: `modelsync run --shard NAME` reconciles only the ModelSyncs labelled for
it and what they apply; the unsharded operator leaves those alone and marks a ModelSync
whose shard runs nowhere `NoShard`; a webhook reaching the wrong shard is handed over.

Each test runs operator processes of its own in an own-operator-* namespace (the shared
operator leaves those alone), with 5 s Leases so a dead shard shows within seconds."""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from modelsync.api import constants as c
from testcluster.launcher import free_ports
from tests.integration.test_webhook import TOKEN, github_push, post_to, signature
from tests.support.cluster import LocalCluster
from tests.support.gitserver import GitHttpServer
from tests.support.kube import dict_condition
from tests.support.models import Models, ready_on
from tests.support.operatorproc import spawn_operator
from tests.support.syncs import Syncs, model_yaml

LEASE_SECONDS = "5"


class Operators:
    """Operator processes of one test, each named by its shard ("" for the unsharded)."""

    def __init__(self, cluster: LocalCluster, namespace: str, logs: Path) -> None:
        self.cluster, self.namespace, self.logs = cluster, namespace, logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    def start(self, shard: str) -> int:
        port = free_ports(1)[0]
        args = ["--shard", shard] if shard else []
        self.processes[shard] = spawn_operator(
            self.cluster.kubeconfig,
            "-n",
            self.namespace,
            "--http-port",
            str(port),
            "--lease-namespace",
            self.namespace,
            "--lease-seconds",
            LEASE_SECONDS,
            "--git-cache-dir",
            str(self.logs / f"cache-{shard or 'unsharded'}"),
            "--log-level",
            "INFO",
            "--allow-file-urls",
            *args,
            log=(self.logs / f"operator-{shard or 'unsharded'}.log").open("ab"),
            die_with_parent=True,
        )
        self.ports[shard] = port
        return port

    def kill(self, shard: str) -> None:
        process = self.processes.pop(shard)
        process.kill()
        process.wait(10)

    def stop_all(self) -> None:
        for shard in list(self.processes):
            process = self.processes.pop(shard)
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(15)
            if process.poll() is None:
                process.kill()
                process.wait(5)


@pytest.fixture
def operators(
    local_cluster: LocalCluster, crds: list[str], own_namespace: str, tmp_path: Path
) -> Iterator[Operators]:
    running = Operators(local_cluster, own_namespace, tmp_path)
    yield running
    running.stop_all()


@pytest.fixture
def shard_syncs(
    local_cluster: LocalCluster, own_namespace: str, git_server: GitHttpServer
) -> Syncs:
    return Syncs(local_cluster, own_namespace, git_server)


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def _serving(syncs: Syncs, name: str, version: str) -> None:
    Models(syncs.cluster, syncs.namespace).wait(
        name, ready_on(version), describe=f"{name} to serve version {version}"
    )


def test_shards_split_the_work_and_a_dead_shard_leaves_the_other_serving(
    operators: Operators, shard_syncs: Syncs, local_cluster: LocalCluster
) -> None:
    syncs = shard_syncs
    for shard in ("", "alpha", "beta"):
        operators.start(shard)
    repos = {}
    for shard in ("alpha", "beta"):
        repo = syncs.repo(shard)
        repo.write(f"{shard}.yaml", model_yaml(f"{shard}-model")).commit("one model")
        repos[shard] = repo
        syncs.create(shard, repo.file_url, labels={c.LABEL_SHARD: shard})
    for shard, repo in repos.items():
        syncs.wait_applied(shard, f"main@sha1:{repo.head()}")
        _serving(syncs, f"{shard}-model", "1")
    # What a shard applies carries its label, down to the Deployment its model serves by.
    apps = kubernetes.client.AppsV1Api(local_cluster.api)
    for shard in ("alpha", "beta"):
        assert _labels(syncs.models()[f"{shard}-model"])[c.LABEL_SHARD] == shard
        deployment = apps.read_namespaced_deployment(f"{shard}-model", syncs.namespace)
        assert deployment.metadata.labels[c.LABEL_SHARD] == shard
        assert deployment.spec.template.metadata.labels[c.LABEL_SHARD] == shard

    # beta's operator dies: alpha goes on, and no other operator takes beta's work —
    # not alpha, not the unsharded one, which reports beta's ModelSync NoShard instead.
    operators.kill("beta")
    for shard, repo in repos.items():
        repo.write(f"{shard}.yaml", model_yaml(f"{shard}-model", version="2")).commit("v2")
    syncs.request("alpha")
    syncs.wait_applied("alpha", f"main@sha1:{repos['alpha'].head()}")
    _serving(syncs, "alpha-model", "2")
    syncs.request("beta")
    ms = syncs.wait_failed("beta", c.REASON_NO_SHARD)
    message = (dict_condition(ms, c.READY) or {}).get("message", "")
    assert f"no operator runs shard 'beta' (label {c.LABEL_SHARD})" in message
    assert f"{syncs.namespace}/modelsync-leader-beta" in message
    assert ms["status"]["lastAppliedRevision"] != f"main@sha1:{repos['beta'].head()}"
    assert syncs.models()["beta-model"]["spec"]["model"]["version"] == "1"

    # beta back: it picks up its own ModelSync and the commit it missed.
    operators.start("beta")
    syncs.wait_applied("beta", f"main@sha1:{repos['beta'].head()}", timeout=90)
    _serving(syncs, "beta-model", "2")

    # Moving a ModelSync to another shard is relabelling it: with alpha gone, beta takes
    # alpha's ModelSync, and what it applies (down to the pods) is relabelled.
    # (The commit first: beta syncs once when the relabelled ModelSync reaches it, and the
    # interval is an hour.)
    operators.kill("alpha")
    sha = repos["alpha"].write("alpha.yaml", model_yaml("alpha-model", version="3")).commit("v3")
    syncs.patch("alpha", {"metadata": {"labels": {c.LABEL_SHARD: "beta"}}})
    syncs.wait_applied("alpha", f"main@sha1:{sha}")
    _serving(syncs, "alpha-model", "3")
    assert _labels(syncs.models()["alpha-model"])[c.LABEL_SHARD] == "beta"
    deployment = apps.read_namespaced_deployment("alpha-model", syncs.namespace)
    assert deployment.spec.template.metadata.labels[c.LABEL_SHARD] == "beta"


def test_shard_label_typo_is_reported_no_shard_and_nothing_applied(
    operators: Operators, shard_syncs: Syncs
) -> None:
    syncs = shard_syncs
    operators.start("")
    operators.start("alpha")
    repo = syncs.repo("typo")
    repo.write("iris.yaml", model_yaml("iris")).commit("one model")
    syncs.create("typo", repo.file_url, labels={c.LABEL_SHARD: "alhpa"})
    ms = syncs.wait_failed("typo", c.REASON_NO_SHARD)
    message = (dict_condition(ms, c.READY) or {}).get("message", "")
    assert "no operator runs shard 'alhpa'" in message
    assert "fix the label or deploy that shard" in message
    assert "lastAttemptedRevision" not in (ms.get("status") or {})
    assert syncs.models() == {}

    # Fixing the label is all it takes.
    syncs.patch("typo", {"metadata": {"labels": {c.LABEL_SHARD: "alpha"}}})
    syncs.wait_applied("typo", f"main@sha1:{repo.head()}")
    assert _labels(syncs.models()["iris"])[c.LABEL_SHARD] == "alpha"


def test_shard_webhook_reaching_another_shard_is_handed_over(
    operators: Operators, shard_syncs: Syncs
) -> None:
    syncs = shard_syncs
    unsharded = operators.start("")
    operators.start("beta")
    repo = syncs.repo("hooked")
    repo.write("iris.yaml", model_yaml("iris")).commit("one model")
    syncs.core.create_namespaced_secret(
        syncs.namespace,
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name="hook"),
            data={"token": base64.b64encode(TOKEN.encode()).decode()},
        ),
    )
    url = repo.file_url
    syncs.create("hooked", url, labels={c.LABEL_SHARD: "beta"}, webhookSecretRef={"name": "hook"})
    syncs.wait_applied("hooked", f"main@sha1:{repo.head()}")

    sha = repo.write("iris.yaml", model_yaml("iris", version="2")).commit("v2")
    body = github_push(url)
    route = f"github/{syncs.namespace}/hooked"
    # Wrongly signed: refused by the operator it reached, nothing handed over.
    code, _ = post_to(unsharded, route, body, _github_headers(signature(body, "wrong")))
    assert code == 401
    # Signed: the unsharded operator that received it hands it to beta, which syncs.
    code, answer = post_to(unsharded, route, body, _github_headers(signature(body)))
    assert (code, answer.get("shard")) == (202, "beta"), json.dumps(answer)
    syncs.wait_applied("hooked", f"main@sha1:{sha}")


def _github_headers(digest: str) -> dict[str, str]:
    return {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={digest}"}
