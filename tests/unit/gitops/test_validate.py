from __future__ import annotations

import copy
import datetime
from typing import Any

import pytest

from modelsync.api import schemas
from modelsync.gitops import validate
from modelsync.gitops.load import LoadedObject, Source
from modelsync.gitops.validate import Policy, content_errors, policy_errors, policy_for

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
    return [str(e) for e in policy_errors(objects, Policy("team", **policy), scope)]


def test_namespaced_objects_land_in_the_target_namespace() -> None:
    objects = [obj("ConfigMap", "a")]
    assert messages(objects) == []
    assert objects[0].manifest["metadata"]["namespace"] == "team"


def test_other_namespaces_need_an_opt_in() -> None:
    assert messages([obj("ConfigMap", "a", "kube-system")]) == [
        "m.yaml:1: ConfigMap kube-system/a: namespace 'kube-system' is not this ModelSync's; "
        "remove metadata.namespace (writing into other namespaces is the platform's to allow: "
        "--allow-other-namespaces)"
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


# ------------------------------------------------------------------ tenants


def test_tenant_scope_is_the_platforms_grant_not_the_spec() -> None:
    strict, why = policy_for("team-a", None)
    assert strict == Policy("team-a", allow_other_namespaces=False, allow_cluster_scoped=False)
    assert why == ""
    # A targetNamespace is only a request: refused, and never honoured, without a grant.
    aimed, why = policy_for("team-a", "kube-system")
    assert aimed.target_namespace == "team-a"
    assert "--allow-other-namespaces" in why
    assert policy_for("team-a", "team-a") == (strict, "")
    granted, why = policy_for(
        "platform",
        "team-b",
        other_namespaces_from=("platform,infra-*",),
        cluster_scoped_from=("infra-*",),
    )
    assert (granted.target_namespace, granted.allow_other_namespaces, why) == (
        "team-b",
        True,
        "",
    )
    assert not granted.allow_cluster_scoped
    assert policy_for("infra-1", None, cluster_scoped_from=("infra-*",))[0].allow_cluster_scoped
    # Patterns as for -n: exclusions inside a pattern.
    assert not policy_for("team-x", None, other_namespaces_from=("*,!team-*",))[
        0
    ].allow_other_namespaces


def test_tenant_modelsync_in_a_revision_may_not_aim_elsewhere() -> None:
    child = obj(
        "ModelSync",
        "child",
        api="modelsync.io/v1alpha1",
        spec={"repo": {"url": "https://x"}, "targetNamespace": "kube-system"},
    )
    SCOPES[("modelsync.io/v1alpha1", "ModelSync")] = True
    try:
        assert messages([child]) == [
            "m.yaml:1: ModelSync child: spec.targetNamespace 'kube-system' is another "
            "namespace, and this ModelSync may not write elsewhere (--allow-other-namespaces); "
            "remove it"
        ]
        assert messages([child], allow_other_namespaces=True) == []
        own = obj(
            "ModelSync",
            "own",
            api="modelsync.io/v1alpha1",
            spec={"repo": {"url": "https://x"}, "targetNamespace": "team"},
        )
        assert messages([own]) == []
    finally:
        del SCOPES[("modelsync.io/v1alpha1", "ModelSync")]


def model(version: object, replicas: object = 1) -> dict[str, Any]:
    return {
        "apiVersion": "modelsync.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud", "namespace": "team"},
        "spec": {
            "model": {"name": "fraud", "version": version, "uri": "s3://m/fraud", "format": "onnx"},
            "runtime": {"name": "triton"},
            "replicas": replicas,
        },
    }


def test_an_object_unchanged_since_the_last_check_is_not_checked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checked: list[str] = []
    real = schemas.problems

    def counting(
        schema: dict[str, Any], manifest: dict[str, Any], rules: bool = True
    ) -> list[schemas.Problem]:
        checked.append(manifest["metadata"]["name"])
        return real(schema, manifest, rules)

    monkeypatch.setattr(schemas, "problems", counting)
    text = "-\n" * 20
    bad = model("v1", replicas=-3)
    first = content_errors([LoadedObject(bad, Source("a.yaml", 1))], lambda _: text)
    # The same content elsewhere: found without a check, reported at its own file and line.
    again = content_errors([LoadedObject(copy.deepcopy(bad), Source("b.yaml", 5))], lambda _: text)
    assert len(checked) == 1
    assert [e.source.file for e in first + again] == ["a.yaml", "b.yaml"]
    assert [e.message for e in first] == [e.message for e in again]
    assert "replicas" in first[0].message
    # Any change is a new object: checked again.
    content_errors([LoadedObject(model("v2", replicas=-3), Source("a.yaml", 1))], lambda _: text)
    assert len(checked) == 2


def test_an_object_that_is_not_json_is_still_checked() -> None:
    # `version: 2024-01-01` unquoted is a YAML date: no JSON text to remember it by.
    errors = content_errors(
        [LoadedObject(model(datetime.date(2024, 1, 1)), Source("a.yaml", 1))], lambda _: ""
    )
    assert [e.message for e in errors] == [
        "spec.model.version: datetime.date(2024, 1, 1) is not of type 'string'"
    ]


def test_the_operator_leaves_cel_rules_to_the_dry_run_and_explains_its_refusal_offline() -> None:
    # Breaks only a CEL rule (steps are a canary's).
    custom = model("v1")
    custom["spec"]["rollout"] = {"steps": [{"weight": 50}]}
    obj = LoadedObject(custom, Source("a.yaml", 1))
    text = "\n".join(f"line {n}" for n in range(1, 30))
    whole = content_errors([obj], lambda _: text)
    assert [e.message for e in whole] == [
        "spec.rollout.steps: rollout.steps are for strategy Canary"
    ]
    assert content_errors([obj], lambda _: text, rules=False) == []
    assert validate.explain(obj, lambda _: text) == whole
    # Anything else wrong: checked whole, reported as `modelsync validate` reports it.
    custom["spec"]["replicas"] = "three"
    assert content_errors([obj], lambda _: text, rules=False) == content_errors(
        [obj], lambda _: text
    )
    assert content_errors([obj], lambda _: text, rules=False)
