"""Status writes: changed fields only, each replaced whole."""

from __future__ import annotations

from modelsync.kube.client import status_patch


def test_only_changed_fields_are_sent_and_replaced_whole() -> None:
    previous = {
        "inventory": [{"kind": "ModelDeployment", "name": f"m{i}"} for i in range(1000)],
        "stableSpec": {"replicas": 2, "autoscaling": {"minReplicas": 1}},
        "lastAppliedRevision": "main@sha1:a",
        "failedRevision": "spec:1",
    }
    status = {
        **previous,
        "stableSpec": {"replicas": 3},  # autoscaling gone: a merge patch would keep it
        "lastAppliedRevision": "main@sha1:b",
        "failedRevision": None,
        "gone": None,  # never there: nothing to remove
    }
    assert status_patch(previous, status) == [
        {"op": "add", "path": "/status/stableSpec", "value": {"replicas": 3}},
        {"op": "add", "path": "/status/lastAppliedRevision", "value": "main@sha1:b"},
        {"op": "remove", "path": "/status/failedRevision"},
    ]


def test_a_first_status_creates_the_field() -> None:
    assert status_patch({}, {"a/b": 1}) == [
        {"op": "add", "path": "/status", "value": {}},
        {"op": "add", "path": "/status/a~1b", "value": 1},
    ]
