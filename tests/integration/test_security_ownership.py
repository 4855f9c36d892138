"""A ModelSync never takes over an object it does not own, and its prune never deletes
one: two ModelSyncs listing the same object, an object that was there before, an
object relabelled to another ModelSync."""

from __future__ import annotations

import kubernetes
from kubernetes.client import CoreV1Api

from modelsync.api import constants as c
from tests.support.kube import dict_condition
from tests.support.syncs import Syncs


def config_map(name: str, value: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: {value}\n"


def live_map(syncs: Syncs, name: str) -> kubernetes.client.V1ConfigMap:
    return CoreV1Api(syncs.cluster.api).read_namespaced_config_map(name, syncs.namespace)


def test_security_two_modelsyncs_listing_the_same_object_never_take_it_from_each_other(
    syncs: Syncs,
) -> None:
    syncs.secret("git-auth", syncs.server.username, syncs.server.password)
    first = syncs.repo("first")
    first.write("shared.yaml", config_map("shared", "first"))
    first.write("a.yaml", config_map("a", "first"))
    first.write("b.yaml", config_map("b", "first"))
    first_sha = first.commit("shared, a and b")
    syncs.create("first", syncs.http_url(first), secret="git-auth")
    syncs.wait_applied("first", f"main@sha1:{first_sha}")

    second = syncs.repo("second")
    second.write("own.yaml", config_map("own", "second"))
    second.write("shared.yaml", config_map("shared", "second"))
    second.commit("own and shared")
    syncs.create("second", syncs.http_url(second), secret="git-auth")
    ms = syncs.wait_failed("second", c.REASON_OWNERSHIP_CONFLICT)
    message = "\n".join(ms["status"]["errors"])  # the Ready message names the first only
    assert f"shared.yaml:1: ConfigMap {syncs.namespace}/shared: already managed by ModelSync " in (
        message
    )
    assert f"{syncs.namespace}/first" in message
    assert (dict_condition(ms, c.STALLED) or {}).get("reason") == c.REASON_OWNERSHIP_CONFLICT
    shared = live_map(syncs, "shared")
    assert shared.data == {"value": "first"}
    assert shared.metadata.labels[c.LABEL_SYNC_NAME] == "first"
    # Rejected as a whole: nothing of the second revision was applied.
    core = CoreV1Api(syncs.cluster.api)
    assert "own" not in {
        m.metadata.name for m in core.list_namespaced_config_map(syncs.namespace).items
    }

    # The first drops it from git and prunes it: its own, so it goes.
    first.remove("shared.yaml")
    dropped = first.commit("drop shared")
    syncs.request("first")
    syncs.wait_applied("first", f"main@sha1:{dropped}")
    assert "shared" not in {
        m.metadata.name for m in core.list_namespaced_config_map(syncs.namespace).items
    }


def test_security_object_that_existed_before_is_adopted_only_with_the_annotation(
    syncs: Syncs,
) -> None:
    syncs.secret("git-auth", syncs.server.username, syncs.server.password)
    core = CoreV1Api(syncs.cluster.api)
    core.create_namespaced_config_map(
        syncs.namespace,
        kubernetes.client.V1ConfigMap(
            metadata=kubernetes.client.V1ObjectMeta(name="legacy"), data={"value": "by-hand"}
        ),
    )
    repo = syncs.repo("models")
    repo.write("legacy.yaml", config_map("legacy", "from-git"))
    sha = repo.commit("legacy")
    syncs.create("prod", syncs.http_url(repo), secret="git-auth")
    ms = syncs.wait_failed("prod", c.REASON_OWNERSHIP_CONFLICT)
    message = "\n".join(ms["status"]["errors"])  # the Ready message names the first only
    assert f"legacy.yaml:1: ConfigMap {syncs.namespace}/legacy: exists and was not created" in (
        message
    )
    assert f"{c.ANNOTATION_ADOPT}={syncs.namespace}/prod" in message
    legacy = live_map(syncs, "legacy")
    assert legacy.data == {"value": "by-hand"}
    assert c.LABEL_SYNC_NAME not in (legacy.metadata.labels or {})

    # An annotation naming another ModelSync adopts nothing.
    core.patch_namespaced_config_map(
        "legacy",
        syncs.namespace,
        {"metadata": {"annotations": {c.ANNOTATION_ADOPT: f"{syncs.namespace}/other"}}},
    )
    token = syncs.request("prod")
    syncs.wait_failed("prod", c.REASON_OWNERSHIP_CONFLICT, token)
    assert live_map(syncs, "legacy").data == {"value": "by-hand"}

    core.patch_namespaced_config_map(
        "legacy",
        syncs.namespace,
        {"metadata": {"annotations": {c.ANNOTATION_ADOPT: f"{syncs.namespace}/prod"}}},
    )
    token = syncs.request("prod")
    syncs.wait_applied("prod", f"main@sha1:{sha}", token)
    legacy = live_map(syncs, "legacy")
    assert legacy.data == {"value": "from-git"}
    assert legacy.metadata.labels[c.LABEL_SYNC_NAME] == "prod"


def test_security_prune_never_deletes_an_object_relabelled_to_another_modelsync(
    syncs: Syncs,
) -> None:
    syncs.secret("git-auth", syncs.server.username, syncs.server.password)
    repo = syncs.repo("models")
    repo.write("keep.yaml", config_map("keep", "v1"))
    repo.write("stay.yaml", config_map("stay", "v1"))
    sha = repo.commit("two maps")
    syncs.create("prod", syncs.http_url(repo), secret="git-auth")
    syncs.wait_applied("prod", f"main@sha1:{sha}")
    core = CoreV1Api(syncs.cluster.api)
    core.patch_namespaced_config_map(
        "keep", syncs.namespace, {"metadata": {"labels": {c.LABEL_SYNC_NAME: "elsewhere"}}}
    )
    repo.remove("keep.yaml")
    dropped = repo.commit("drop keep")
    token = syncs.request("prod")
    ms = syncs.wait_applied("prod", f"main@sha1:{dropped}", token)
    kept = live_map(syncs, "keep")
    assert kept.data == {"value": "v1"}
    assert kept.metadata.labels[c.LABEL_SYNC_NAME] == "elsewhere"
    message = ms["status"]["history"][0]["message"]  # whole; the Ready message is cut
    assert "0 deleted" in message
    assert f"ConfigMap {syncs.namespace}/keep (labelled for ModelSync" in message
    assert not any(entry["name"] == "keep" for entry in ms["status"]["inventory"])
