"""The periodic list under kopf's watch: which listed objects it takes as missed."""

from __future__ import annotations

from typing import Any

from modelsync.api import constants as c
from modelsync.api.namespaces import named_outright
from modelsync.runtime.operator import missed

MD = c.MODELDEPLOYMENT_KIND


def listed(name: str, version: str, **meta: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "team", "name": name, "resourceVersion": version, **meta}}


def test_an_object_the_watch_never_delivered_is_missed() -> None:
    assert missed([listed("lost", "12")], {}, MD) == [("team", "lost")]


def test_an_object_delivered_at_an_older_version_is_missed() -> None:
    delivered = {(MD, "team", "stale"): "11"}
    assert missed([listed("stale", "12")], delivered, MD) == [("team", "stale")]


def test_an_object_delivered_at_its_version_or_a_newer_one_is_not() -> None:
    # Newer: the list was read before an event the watch has since delivered.
    delivered = {(MD, "team", "same"): "12", (MD, "team", "ahead"): "15"}
    assert missed([listed("same", "12"), listed("ahead", "13")], delivered, MD) == []


def test_the_kind_is_part_of_what_was_delivered() -> None:
    delivered = {(c.MODELSYNC_KIND, "team", "prod"): "12"}
    assert missed([listed("prod", "12")], delivered, MD) == [("team", "prod")]


def test_an_object_being_deleted_is_not_brought_back() -> None:
    going = listed("going", "20", deletionTimestamp="2026-12-01T00:00:00Z")
    assert missed([going], {}, MD) == []


def test_only_plain_names_are_watched_namespace_by_namespace() -> None:
    # Plain names: one watch per namespace (a Role in each may be all the operator has).
    assert named_outright(("team-a", "team-b"))
    # Anything else is watched cluster-wide and filtered: kopf would otherwise start a
    # watch per namespace and kind as namespaces appear.
    assert not named_outright(())
    assert not named_outright(("team-*",))
    assert not named_outright(("*,!kube-*",))
    assert not named_outright(("team-a,team-b",))
    assert not named_outright(("team-a", "!team-b"))
