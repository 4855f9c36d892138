"""The watch cache: newest wins, copies out, owned index, slim bodies."""

from __future__ import annotations

from typing import Any

from modelsync.api.constants import LABEL_DEPLOYMENT
from modelsync.kube.cache import ObjectCache


def obj(kind: str, name: str, rv: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "ns",
            "resourceVersion": rv,
            "labels": labels,
            "managedFields": [{"manager": "x"}],
        },
        "spec": {"replicas": int(rv)},
        "status": {
            "containerStatuses": [{"restartCount": 1}],
            "podIP": "10.0.0.1",
            "qosClass": "Burstable",
        },
    }


def test_a_stale_event_never_overwrites_a_fresher_body() -> None:
    cache = ObjectCache()
    cache.put("Deployment", obj("Deployment", "a", "10"))
    cache.put("Deployment", obj("Deployment", "a", "9"))
    found = cache.get("Deployment", "ns", "a")
    assert found is not None
    assert found["spec"]["replicas"] == 10
    assert "managedFields" not in found["metadata"]


def test_reads_are_copies() -> None:
    cache = ObjectCache()
    cache.put("Service", obj("Service", "a", "1"))
    first = cache.get("Service", "ns", "a")
    assert first is not None
    first["spec"]["replicas"] = 99
    assert (cache.get("Service", "ns", "a") or {})["spec"]["replicas"] == 1


def test_pods_by_owner_keep_only_what_tells_a_failure() -> None:
    cache = ObjectCache()
    cache.put("Pod", obj("Pod", "p1", "1", **{LABEL_DEPLOYMENT: "iris"}))
    cache.put("Pod", obj("Pod", "p2", "2", **{LABEL_DEPLOYMENT: "other"}))
    pods = cache.owned("Pod", "ns", "iris")
    assert [p["metadata"]["name"] for p in pods] == ["p1"]
    # Its address stays: the inference gate sends the samples there.
    assert pods[0]["status"] == {"containerStatuses": [{"restartCount": 1}], "podIP": "10.0.0.1"}
    assert "spec" not in pods[0]
    cache.put("Pod", obj("Pod", "p1", "3", **{LABEL_DEPLOYMENT: "other"}))  # relabelled
    assert cache.owned("Pod", "ns", "iris") == []
    cache.delete("Pod", "ns", "p2")
    assert [p["metadata"]["name"] for p in cache.owned("Pod", "ns", "other")] == ["p1"]


def test_select_filters_by_labels_namespace_and_predicate() -> None:
    cache = ObjectCache()
    cache.put("ModelDeployment", obj("ModelDeployment", "a", "1", sync="prod"))
    cache.put("ModelDeployment", obj("ModelDeployment", "b", "5", sync="prod"))
    cache.put("ModelDeployment", obj("ModelDeployment", "c", "1", sync="dev"))
    chosen = cache.select(
        "ModelDeployment", lambda md: md["spec"]["replicas"] > 1, labels={"sync": "prod"}
    )
    assert [md["metadata"]["name"] for md in chosen] == ["b"]
    assert cache.select("ModelDeployment", lambda _: True, namespace="elsewhere") == []
    assert sorted(cache.names("ModelDeployment")) == [("ns", "a"), ("ns", "b"), ("ns", "c")]


def test_version_is_the_newest_bodys_and_none_once_deleted() -> None:
    cache = ObjectCache()
    assert cache.version("Deployment", "ns", "a") is None
    cache.put("Deployment", obj("Deployment", "a", "10"))
    cache.put("Deployment", obj("Deployment", "a", "9"))
    assert cache.version("Deployment", "ns", "a") == "10"
    cache.delete("Deployment", "ns", "a")
    assert cache.version("Deployment", "ns", "a") is None
