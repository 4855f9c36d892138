from __future__ import annotations

from modelsync.gitops.prune import plan


def entries(*names: str) -> list[dict[str, str]]:
    return [
        {
            "apiVersion": "modelsync.io/v1alpha1",
            "kind": "ModelDeployment",
            "namespace": "ns",
            "name": name,
        }
        for name in names
    ]


def test_what_left_git_is_deleted() -> None:
    result = plan(
        entries("a", "b", "c"), entries("a", "b"), enabled=True, allow_empty=False, max_percent=50
    )
    assert result.delete == entries("c")
    assert result.refusal is None


def test_an_empty_revision_never_prunes_unless_allowed() -> None:
    refused = plan(entries("a"), [], enabled=True, allow_empty=False, max_percent=100)
    assert refused.delete == []
    assert refused.keep == entries("a")
    assert refused.refusal is not None
    assert "spec.allowEmpty" in refused.refusal
    allowed = plan(entries("a"), [], enabled=True, allow_empty=True, max_percent=100)
    assert allowed.delete == entries("a")


def test_deleting_more_than_the_share_needs_an_opt_in() -> None:
    refused = plan(
        entries("a", "b", "c", "d"), entries("d"), enabled=True, allow_empty=False, max_percent=50
    )
    assert refused.refusal is not None
    assert "3 of 4" in refused.refusal
    allowed = plan(
        entries("a", "b", "c", "d"), entries("d"), enabled=True, allow_empty=False, max_percent=75
    )
    assert len(allowed.delete) == 3


def test_prune_off_deletes_nothing_and_forgets() -> None:
    result = plan(entries("a", "b"), entries("a"), enabled=False, allow_empty=False, max_percent=50)
    assert (result.delete, result.keep, result.refusal) == ([], [], None)


def test_the_same_object_under_another_api_version_is_not_pruned() -> None:
    old = [
        {
            "apiVersion": "autoscaling/v1",
            "kind": "HorizontalPodAutoscaler",
            "namespace": "ns",
            "name": "a",
        }
    ]
    new = [
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "namespace": "ns",
            "name": "a",
        }
    ]
    assert plan(old, new, enabled=True, allow_empty=False, max_percent=50).delete == []
