"""The pure rules of operator shards: selectors, Lease liveness, who is unserved."""

from __future__ import annotations

import datetime
from typing import Any

from modelsync.api import constants as c
from modelsync.api.manifest import Manifest, mapping
from modelsync.gitops.plan import labelled
from modelsync.runtime import shards

NOW = datetime.datetime(2026, 12, 1, 8, 0, 0, tzinfo=datetime.UTC)


def lease(shard: str | None, renewed_seconds_ago: float, duration: int = 15) -> dict[str, Any]:
    renewed = NOW - datetime.timedelta(seconds=renewed_seconds_ago)
    labels = {c.LABEL_SHARD: shard} if shard else {}
    return {
        "metadata": {"name": f"modelsync-leader-{shard}", "labels": labels},
        "spec": {
            "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "leaseDurationSeconds": duration,
        },
    }


def modelsync(name: str, shard: str | None, ready: dict[str, str] | None = None) -> dict[str, Any]:
    labels = {c.LABEL_SHARD: shard} if shard else {}
    status = {"conditions": [{"type": c.READY, **ready}]} if ready else {}
    return {"metadata": {"namespace": "team", "name": name, "labels": labels}, "status": status}


def test_selectors_pick_the_shard_or_the_unlabelled() -> None:
    assert shards.mine({"labels": {c.LABEL_SHARD: "alpha"}}, "alpha")
    assert not shards.mine({"labels": {c.LABEL_SHARD: "alpha"}}, "")
    assert not shards.mine({"labels": {c.LABEL_SHARD: "alpha"}}, "beta")
    assert shards.mine({"labels": {"app": "x"}}, "")
    assert shards.mine({}, "")
    assert not shards.mine({}, "alpha")
    assert shards.label_selector("alpha") == f"{c.LABEL_SHARD}=alpha"
    assert shards.label_selector("") == f"!{c.LABEL_SHARD}"
    assert shards.lease_name("modelsync-leader", "alpha") == "modelsync-leader-alpha"
    assert shards.lease_name("modelsync-leader", "") == "modelsync-leader"


def test_a_shard_is_live_while_its_lease_is_renewed_within_its_duration() -> None:
    leases = [
        lease("alpha", 3),
        lease("beta", 16),  # expired
        lease("gamma", 15),  # just at the edge: still live
        lease(None, 1),  # the unsharded operator's: no shard
        {"metadata": {"labels": {c.LABEL_SHARD: "delta"}}, "spec": {}},  # never renewed
        {
            "metadata": {"labels": {c.LABEL_SHARD: "eps"}},
            "spec": {"renewTime": "garbage", "leaseDurationSeconds": 5},
        },
    ]
    assert shards.live_shards(leases, NOW) == {"alpha", "gamma"}


def test_unserved_names_labelled_modelsyncs_of_dead_shards_once() -> None:
    message = shards.Unserved("team", "typo", "alhpa").message("ops", "modelsync-leader")
    assert "no operator runs shard 'alhpa'" in message
    assert "ops/modelsync-leader-alhpa" in message
    items = [
        modelsync("fine", "alpha"),
        modelsync("unlabelled", None),
        modelsync("typo", "alhpa"),
        modelsync(
            "told",
            "beta",
            {
                "status": "False",
                "reason": c.REASON_NO_SHARD,
                "message": shards.Unserved("team", "told", "beta").message(
                    "ops", "modelsync-leader"
                ),
            },
        ),
        modelsync("was-fine", "beta", {"status": "True", "reason": c.REASON_SUCCEEDED}),
    ]
    found = shards.unserved(items, {"alpha"}, "ops", "modelsync-leader")
    assert [(u.name, u.shard) for u in found] == [("typo", "alhpa"), ("was-fine", "beta")]


def test_applied_objects_carry_the_modelsyncs_shard_not_gits() -> None:
    manifest: Manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x", "labels": {c.LABEL_SHARD: "chosen-in-git", "app": "a"}},
    }
    sharded = mapping(labelled(manifest, "team", "prod", "alpha"), "metadata", "labels")
    assert sharded[c.LABEL_SHARD] == "alpha"
    assert sharded["app"] == "a"
    unsharded = mapping(labelled(manifest, "team", "prod"), "metadata", "labels")
    assert c.LABEL_SHARD not in unsharded
