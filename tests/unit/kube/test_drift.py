from __future__ import annotations

from modelsync.api.manifest import json_value
from modelsync.kube.drift import applied_part, differences, out_of_band
from modelsync.kube.drift import fingerprint as fingerprint_of

WANT = {
    "metadata": {"labels": {"a": "1"}},
    "spec": {
        "replicas": 2,
        "template": {
            "spec": {
                "containers": [
                    {"name": "server", "image": "m:1", "ports": [{"containerPort": 8080}]}
                ]
            }
        },
    },
}


def live(**changes: object) -> dict[str, object]:
    import copy

    have = copy.deepcopy(WANT)
    have["metadata"]["annotations"] = {"someone": "else"}  # type: ignore[index]
    have["status"] = {"replicas": 2}
    container = have["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    container["imagePullPolicy"] = "IfNotPresent"  # a default the server adds
    for key, value in changes.items():
        if key == "image":
            container["image"] = value
        else:
            have["spec"][key] = value  # type: ignore[index]
    return have


def test_fields_others_add_are_not_drift() -> None:
    assert differences(WANT, live()) == []


def test_changed_fields_are_named() -> None:
    assert differences(WANT, live(image="evil:1")) == [
        "spec.template.spec.containers[server].image"
    ]
    assert differences(WANT, live(replicas=5)) == ["spec.replicas"]


def test_a_missing_named_item_is_drift() -> None:
    have = live()
    have["spec"]["template"]["spec"]["containers"] = [{"name": "sidecar"}]  # type: ignore[index]
    assert differences(WANT, have) == ["spec.template.spec.containers[server]"]


def test_types_are_compared_strictly_for_booleans() -> None:
    assert differences({"a": True}, {"a": 1}) == ["a"]
    assert differences({"a": 1}, {"a": 1.0}) == []


def test_applied_part_keeps_content_and_our_metadata() -> None:
    part = applied_part(
        {
            "apiVersion": "v1",
            "kind": "X",
            "status": {"a": 1},
            "metadata": {"name": "x", "labels": {"a": "1"}, "uid": "u"},
            "spec": {},
        }
    )
    assert part == {"metadata": {"labels": {"a": "1"}}, "spec": {}}
    config = applied_part({"kind": "ConfigMap", "metadata": {}, "data": {"k": "v"}})
    assert config == {"metadata": {}, "data": {"k": "v"}}


SPEC: dict[str, object] = WANT["spec"]  # type: ignore[assignment]


def fingerprint(manifest: dict[str, object]) -> str:
    typed = json_value(manifest)
    assert isinstance(typed, dict)
    return fingerprint_of(typed)


def scaled(replicas: int) -> dict[str, object]:
    return {**WANT, "spec": {**SPEC, "replicas": replicas}}


def test_a_fingerprint_is_of_what_an_apply_writes_in_any_key_order() -> None:
    reordered = {"spec": dict(reversed(list(SPEC.items()))), "metadata": WANT["metadata"]}
    assert fingerprint(reordered) == fingerprint(WANT)
    assert fingerprint({**WANT, "status": {"replicas": 9}}) == fingerprint(WANT)
    assert fingerprint(scaled(3)) != fingerprint(WANT)


def test_only_a_difference_we_did_not_ask_for_is_drift() -> None:
    two, three = fingerprint(scaled(2)), fingerprint(scaled(3))
    # The object held 2 and we want 2: someone else changed it, whatever the status says.
    assert out_of_band(two, two, settled=False)
    # We want 3 now (a canary's next size, a new spec): our own change, even when settled.
    assert not out_of_band(two, three, settled=True)
    # Nothing known of the object (a restart): the spec applied and holding still says.
    assert out_of_band(None, three, settled=True)
    assert not out_of_band(None, three, settled=False)
