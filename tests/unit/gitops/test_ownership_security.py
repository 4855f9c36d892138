"""Which live objects a ModelSync may apply over, and which its prune may delete."""

from __future__ import annotations

from typing import Any

from modelsync.api import constants as c
from modelsync.gitops.ownership import owner, prunable, refusal


def live(labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> Any:
    return {"metadata": {"name": "x", "labels": labels or {}, "annotations": annotations or {}}}


OURS = {c.LABEL_SYNC_NAME: "prod", c.LABEL_SYNC_NAMESPACE: "team-a"}
THEIRS = {c.LABEL_SYNC_NAME: "prod", c.LABEL_SYNC_NAMESPACE: "team-b"}


def test_security_ownership_new_and_own_objects_are_applied() -> None:
    assert refusal(None, "team-a", "prod") is None
    assert refusal(live(OURS), "team-a", "prod") is None


def test_security_ownership_another_modelsyncs_object_is_refused_even_when_adoptable() -> None:
    why = refusal(live(THEIRS, {c.ANNOTATION_ADOPT: "team-a/prod"}), "team-a", "prod")
    assert why is not None
    assert "already managed by ModelSync team-b/prod" in why
    assert refusal(live(THEIRS), "team-a", "prod", applied=True) is not None


def test_security_ownership_an_object_that_was_there_before_needs_the_annotation() -> None:
    why = refusal(live(), "team-a", "prod")
    assert why is not None
    assert f"{c.ANNOTATION_ADOPT}=team-a/prod" in why
    assert refusal(live(annotations={c.ANNOTATION_ADOPT: "team-b/prod"}), "team-a", "prod")
    assert refusal(live(annotations={c.ANNOTATION_ADOPT: "team-a/prod"}), "team-a", "prod") is None


def test_security_ownership_labels_taken_off_our_own_object_are_put_back() -> None:
    assert refusal(live(), "team-a", "prod", applied=True) is None


def test_security_ownership_prune_deletes_only_what_is_still_labelled_ours() -> None:
    assert prunable(live(OURS), "team-a", "prod")
    assert not prunable(live(THEIRS), "team-a", "prod")
    assert not prunable(live(), "team-a", "prod")
    assert not prunable(live({c.LABEL_SYNC_NAME: "prod"}), "team-a", "prod")
    assert owner(live({c.LABEL_SYNC_NAME: "prod"})) == ("", "prod")
