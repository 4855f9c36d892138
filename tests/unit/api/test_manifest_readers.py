"""api/manifest.py: the readers of foreign objects narrow to one type and never raise;
what is absent, null or of another type reads as the default."""

from __future__ import annotations

import pytest

from modelsync.api import manifest as m

DEPLOYMENT: dict[str, object] = {
    "metadata": {"name": "iris", "labels": {"a": "1", "b": 2}, "generation": 3},
    "spec": {"replicas": 2.0, "paused": True},
    "status": {"conditions": [{"type": "Progressing"}, "not an object", None]},
}


def test_a_path_reads_through_nested_objects() -> None:
    assert m.text(DEPLOYMENT, "metadata", "name") == "iris"
    assert m.integer(DEPLOYMENT, "metadata", "generation") == 3
    assert m.mapping(DEPLOYMENT, "spec") == {"replicas": 2.0, "paused": True}
    assert m.get(DEPLOYMENT, "spec", "paused") is True


def test_what_is_missing_or_of_another_type_reads_as_the_default() -> None:
    assert m.text(DEPLOYMENT, "metadata", "namespace") == ""
    assert m.text(DEPLOYMENT, "metadata", "generation", default="x") == "x"
    assert m.text(None, "metadata") == ""
    assert m.mapping(DEPLOYMENT, "metadata", "name") == {}
    assert m.mapping(DEPLOYMENT, "metadata", "name", "deeper") == {}
    assert m.items(DEPLOYMENT, "spec") == []
    assert m.integer(DEPLOYMENT, "metadata", "name", default=7) == 7
    assert m.get(DEPLOYMENT, "nothing", "here") is None


def test_integers_take_whole_floats_but_not_booleans() -> None:
    assert m.integer(DEPLOYMENT, "spec", "replicas") == 2
    assert m.integer(DEPLOYMENT, "spec", "paused", default=1) == 1


def test_lists_and_maps_keep_only_entries_of_their_type() -> None:
    assert m.items(DEPLOYMENT, "status", "conditions") == [{"type": "Progressing"}]
    assert m.labels(DEPLOYMENT, "metadata", "labels") == {"a": "1"}


def test_json_value_copies_plain_data_and_refuses_the_rest() -> None:
    source = {"a": (1, 2.5, None), "b": {"c": [True, "x"]}}
    copied = m.json_value(source)
    assert copied == {"a": [1, 2.5, None], "b": {"c": [True, "x"]}}
    assert copied is not source
    with pytest.raises(ValueError, match="set is not JSON"):
        m.json_value({"a": {1, 2}})


def test_child_finds_or_makes_the_object_to_write_into() -> None:
    built: m.Manifest = {"spec": {"template": {"metadata": {"labels": {"a": "1"}}}}, "kind": 1}
    m.child(built, "spec", "template", "metadata", "labels")["b"] = "2"
    m.child(built, "metadata", "annotations")["c"] = "3"
    m.child(built, "kind")["replaced"] = True
    assert built == {
        "spec": {"template": {"metadata": {"labels": {"a": "1", "b": "2"}}}},
        "metadata": {"annotations": {"c": "3"}},
        "kind": {"replaced": True},
    }
