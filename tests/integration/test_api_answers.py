"""The API server's own answers to bad content, as the operator's dry run meets them.

Each case asks the local API server a server-side-apply dry run it must refuse and
compares its Status answer (code, reason, the start of the message) with the one saved
under tests/fixtures/api-answers/, which tests/unit/kube/test_api_answers.py classifies
(content: report, do not retry; environment: retry). MODELSYNC_UPDATE_GOLDEN=1 saves
them anew after a Kubernetes upgrade."""

from __future__ import annotations

import json
import os
from typing import Any

import kubernetes
import pytest

from modelsync.kube import client as kubemod
from tests.support.cluster import LocalCluster
from tests.support.paths import FIXTURES
from tests.support.syncs import model_yaml

ANSWERS = FIXTURES / "api-answers"


def model(**spec: Any) -> dict[str, Any]:
    import yaml

    manifest: dict[str, Any] = yaml.safe_load(model_yaml("iris"))
    manifest["spec"].update(spec)
    return manifest


CASES: dict[str, Any] = {
    # A value of the wrong type in a custom resource: the typed patch fails, HTTP 500.
    "custom-resource-wrong-type": lambda ns: {
        **model(replicas="three"),
        "metadata": {"name": "iris", "namespace": ns},
    },
    # The CRD's schema and CEL rules: 422 Invalid.
    "custom-resource-invalid": lambda ns: {
        **model(replicas=-1),
        "metadata": {"name": "iris", "namespace": ns},
    },
    # A core object's validation: 422 Invalid.
    "core-object-invalid": lambda ns: {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "front", "namespace": ns},
        "spec": {"ports": [{"port": 70000}]},
    },
    # A core object's field of the wrong type: 400 or 500, depending on the decoder.
    "core-object-wrong-type": lambda ns: {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": ns},
        "data": {"replicas": 3},
    },
    # An invalid name: 422 Invalid.
    "invalid-name": lambda ns: {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "Not_A_Name", "namespace": ns},
    },
    # A namespace that does not exist: 404 NotFound.
    "missing-namespace": lambda ns: {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": f"{ns}-missing"},
    },
}


def answer(error: kubernetes.client.ApiException) -> dict[str, Any]:
    body = json.loads(error.body or "{}")
    return {
        "code": error.status,
        "reason": body.get("reason", ""),
        "message": body.get("message", ""),
        "details": body.get("details", {}),
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_api_answers_to_bad_content_are_the_saved_ones(
    local_cluster: LocalCluster, crds: list[str], namespace: str, case: str
) -> None:
    client = kubemod.Kube(local_cluster.api)
    with pytest.raises(kubernetes.client.ApiException) as raised:
        client.apply(CASES[case](namespace), dry_run=True)
    actual = answer(raised.value)
    # Names that change from run to run (the test's namespace) are not part of the answer.
    actual = json.loads(json.dumps(actual).replace(namespace, "<namespace>"))
    saved = ANSWERS / f"{case}.json"
    if os.environ.get("MODELSYNC_UPDATE_GOLDEN"):
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    expected = json.loads(saved.read_text())
    assert (actual["code"], actual["reason"]) == (expected["code"], expected["reason"])
    assert actual["message"] == expected["message"]
