"""The apply plan's decisions (gitops/plan.py), without a cluster: which revision an
object carries, what differs from its live self, and what a dry run's answer makes
of it."""

from __future__ import annotations

from typing import Any

from modelsync.api import constants as c
from modelsync.api.manifest import get
from modelsync.gitops.load import LoadedObject, Source
from modelsync.gitops.plan import NEW, PlanStep, candidate, labelled, settle

OLD = "main@sha1:" + "a" * 40
NOW = "main@sha1:" + "b" * 40


def model(version: str, revision: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "iris", "namespace": "models"}
    if revision:
        meta["annotations"] = {c.ANNOTATION_REVISION: revision}
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.MODELDEPLOYMENT_KIND,
        "metadata": meta,
        "spec": {"model": {"name": "iris", "version": version}},
    }


def step(desired: dict[str, Any], live: dict[str, Any] | None) -> PlanStep:
    compared, drifted = candidate(desired, live, NOW)
    source = LoadedObject(desired, Source("models/iris.yaml", 1))
    return PlanStep(source, desired, compared, live, drifted, judgeable=bool(drifted))


def test_a_new_object_is_new_and_carries_this_revision() -> None:
    compared, drifted = candidate(model("1"), None, NOW)
    assert drifted == [NEW]
    assert get(compared, "metadata", "annotations", c.ANNOTATION_REVISION) == NOW


def test_an_unchanged_model_keeps_the_revision_that_last_changed_it() -> None:
    live = model("1", revision=OLD)
    planned = settle(step(model("1"), live), NOW, verdict=None)
    assert planned.drifted == []
    assert get(planned.desired, "metadata", "annotations", c.ANNOTATION_REVISION) == OLD


def test_a_changed_model_takes_this_revision() -> None:
    live = model("1", revision=OLD)
    planned = settle(step(model("2"), live), NOW, verdict=None)
    assert planned.drifted
    assert get(planned.desired, "metadata", "annotations", c.ANNOTATION_REVISION) == NOW
    assert get(planned.desired, "spec", "model", "version") == "2"


def test_a_dry_run_equal_to_the_live_object_is_a_change_of_form_only() -> None:
    live = model("1", revision=OLD)
    live["spec"]["resources"] = {"cpu": "500m"}
    desired = model("1")
    desired["spec"]["resources"] = {"cpu": 0.5}
    planned = settle(step(desired, live), NOW, verdict=live)
    assert planned.drifted == []


def test_a_dry_run_that_differs_from_the_live_object_is_a_change() -> None:
    live = model("1", revision=OLD)
    dry_run = model("2", revision=NOW)
    planned = settle(step(model("2"), live), NOW, verdict=dry_run)
    assert planned.drifted


def test_labels_name_the_modelsync_and_keep_the_objects_own() -> None:
    desired = model("1")
    desired["metadata"]["labels"] = {"team": "fraud"}
    labels = get(labelled(desired, "team-a", "prod"), "metadata", "labels")
    assert labels == {"team": "fraud", c.LABEL_SYNC_NAME: "prod", c.LABEL_SYNC_NAMESPACE: "team-a"}
    assert desired["metadata"]["labels"] == {"team": "fraud"}
