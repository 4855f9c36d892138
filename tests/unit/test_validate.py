from __future__ import annotations

from typing import Any

from modelsync.load import LoadedObject, Source
from modelsync.validate import Policy, check

SCOPES = {
    ("v1", "ConfigMap"): True,
    ("v1", "Namespace"): False,
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): False,
}


def scope(api_version: str, kind: str) -> bool | None:
    return SCOPES.get((api_version, kind))


def obj(
    kind: str, name: str, namespace: str | None = None, api: str = "v1", line: int = 1, **extra: Any
) -> LoadedObject:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return LoadedObject(
        {"apiVersion": api, "kind": kind, "metadata": meta, **extra}, Source("m.yaml", line)
    )


def messages(objects: list[LoadedObject], **policy: Any) -> list[str]:
    return [str(e) for e in check(objects, Policy("team", **policy), scope)]


def test_namespaced_objects_land_in_the_target_namespace() -> None:
    objects = [obj("ConfigMap", "a")]
    assert messages(objects) == []
    assert objects[0].manifest["metadata"]["namespace"] == "team"


def test_other_namespaces_need_an_opt_in() -> None:
    assert messages([obj("ConfigMap", "a", "kube-system")]) == [
        "m.yaml:1: ConfigMap kube-system/a: namespace 'kube-system' is not this ModelSync's "
        "('team'); remove metadata.namespace, or set spec.allowOtherNamespaces"
    ]
    assert messages([obj("ConfigMap", "a", "kube-system")], allow_other_namespaces=True) == []


def test_cluster_scoped_objects_need_an_opt_in() -> None:
    assert "is cluster-scoped" in messages([obj("Namespace", "x")])[0]
    assert messages([obj("Namespace", "x")], allow_cluster_scoped=True) == []


def test_duplicates_and_unknown_kinds() -> None:
    found = messages(
        [
            obj("ConfigMap", "a", line=1),
            obj("ConfigMap", "a", "team", line=9),
            obj("Widget", "w", api="example.com/v1"),
        ]
    )
    assert found == [
        "m.yaml:9: ConfigMap team/a: defined twice: also at m.yaml:1",
        "m.yaml:1: Widget w: unknown kind Widget in apiVersion example.com/v1 (a typo, or a "
        "CRD that is not installed)",
    ]


def test_kinds_from_crds_in_the_same_revision_are_known() -> None:
    crd = obj(
        "CustomResourceDefinition",
        "widgets.example.com",
        api="apiextensions.k8s.io/v1",
        spec={"group": "example.com", "scope": "Namespaced", "names": {"kind": "Widget"}},
    )
    widget = obj("Widget", "w", api="example.com/v1")
    assert messages([crd, widget], allow_cluster_scoped=True) == []
    assert widget.manifest["metadata"]["namespace"] == "team"
