"""A ModelSync is Ready only once the models its revision applied are Ready (Flux's
`wait: true`); its Healthy condition names those that are not, and it follows their
Ready changes from the cache, without another fetch or sync."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import CoreV1Api

from modelsync.api import constants as c
from modelsync.telemetry import metrics
from tests.integration.test_cli import modelsync
from tests.support.cluster import LocalCluster
from tests.support.kube import dict_condition
from tests.support.metrics import total
from tests.support.syncs import Syncs, model_yaml

FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"


@pytest.fixture
def node_label(local_cluster: LocalCluster, syncs: Syncs) -> Iterator[tuple[str, Any]]:
    """A node label no node has yet, and a function that puts it on the fake nodes."""
    core = CoreV1Api(local_cluster.api)
    key = f"modelsync-test/health-{secrets.token_hex(4)}"
    labelled: list[str] = []

    def label_fake_nodes() -> None:
        for node in core.list_node().items:
            if FAKE_NODE_ANNOTATION in (node.metadata.annotations or {}):
                core.patch_node(node.metadata.name, {"metadata": {"labels": {key: "yes"}}})
                labelled.append(node.metadata.name)

    yield key, label_fake_nodes
    for name in labelled:
        core.patch_node(name, {"metadata": {"labels": {key: None}}})


def test_modelsync_is_ready_only_when_its_models_are_and_follows_them_without_a_sync(
    syncs: Syncs, local_cluster: LocalCluster, node_label: tuple[str, Any]
) -> None:
    key, label_fake_nodes = node_label
    repo = syncs.repo("models")
    repo.write("iris.yaml", model_yaml("iris"))
    # No node carries the label yet: the model's pods stay Pending, it is not Ready.
    waiting = model_yaml("waiting") + f'  nodeSelector:\n    {key}: "yes"\n'
    repo.write("waiting.yaml", waiting)
    sha = repo.commit("two models, one not schedulable yet")
    revision = f"main@sha1:{sha}"
    syncs.create("prod", repo.file_url)

    def not_ready(ms: dict[str, Any] | None) -> bool:
        ready = dict_condition(ms, c.READY) or {}
        healthy = dict_condition(ms, c.HEALTHY) or {}
        return (
            (ms or {}).get("status", {}).get("lastAppliedRevision") == revision
            and ready.get("reason") == c.REASON_MODELS_NOT_READY
            and healthy.get("status") == "False"
            and "iris" not in healthy.get("message", "")  # iris came up: only one is named
        )

    ms = syncs.wait("prod", not_ready, "prod applied, waiting for its models", timeout=120)
    ready, healthy = dict_condition(ms, c.READY) or {}, dict_condition(ms, c.HEALTHY) or {}
    assert ready["status"] == "False"
    assert f"{syncs.namespace}/waiting" in healthy["message"]
    assert healthy["message"].startswith("1 of 2 models not Ready")
    assert [line.split(":")[0] for line in ms["status"]["modelsNotReady"]] == [
        f"{syncs.namespace}/waiting"
    ]
    assert len(ready["message"]) <= 120
    assert len(healthy["message"]) <= 120

    # `modelsync sync --wait` waits for the models too, and says which it gave up on.
    result = modelsync(
        local_cluster, "sync", "prod", "-n", syncs.namespace, "--wait", "--timeout", "5"
    )
    assert result.returncode != 0
    assert "models were not Ready" in result.stderr
    assert "waiting" in result.stderr
    ms = syncs.wait_failed("prod", c.REASON_MODELS_NOT_READY)
    history = ms["status"]["history"]
    runs = total(metrics.SYNCS, namespace=syncs.namespace, name="prod")

    # The pods can now be scheduled: the model becomes Ready, and so does its ModelSync,
    # from the model's Ready change alone: no sync runs (git has not changed).
    label_fake_nodes()

    def ready_again(ms: dict[str, Any] | None) -> bool:
        return (dict_condition(ms, c.READY) or {}).get("status") == "True"

    ms = syncs.wait("prod", ready_again, "prod Ready once its models are", timeout=120)
    assert (dict_condition(ms, c.HEALTHY) or {})["status"] == "True"
    assert "modelsNotReady" not in ms["status"]
    assert ms["status"]["history"] == history
    assert total(metrics.SYNCS, namespace=syncs.namespace, name="prod") == runs
    # The message is the one the applying sync would have written had they been Ready.
    assert (dict_condition(ms, c.READY) or {})["message"] == (
        f"applied revision {revision}: 2 created, 0 configured, 0 unchanged, 0 deleted"
    )
    result = modelsync(
        local_cluster, "sync", "prod", "-n", syncs.namespace, "--wait", "--timeout", "60"
    )
    assert result.returncode == 0, result.stderr


def test_modelsync_without_models_is_ready_once_applied(syncs: Syncs) -> None:
    repo = syncs.repo("config")
    repo.write("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n")
    sha = repo.commit("no models")
    syncs.create("prod", repo.file_url)
    ms = syncs.wait_applied("prod", f"main@sha1:{sha}")
    healthy = dict_condition(ms, c.HEALTHY) or {}
    assert (healthy.get("status"), healthy.get("message")) == ("True", "no models to wait for")
