"""Which API answers judge the content (reported, not retried) and which are the
environment's (retried with backoff): the content answers are the local API server's
own, saved by tests/integration/test_api_answers.py."""

from __future__ import annotations

import json

import kubernetes
import pytest

from modelsync.kube.client import transient
from tests.support.paths import FIXTURES

ANSWERS = FIXTURES / "api-answers"
SAVED = sorted(p.stem for p in ANSWERS.glob("*.json"))


def exception(code: int, reason: str, message: str) -> kubernetes.client.ApiException:
    error = kubernetes.client.ApiException(status=code, reason=reason)
    error.body = json.dumps({"kind": "Status", "code": code, "reason": reason, "message": message})
    return error


def test_every_bad_content_class_has_a_saved_answer() -> None:
    assert {
        "custom-resource-wrong-type",
        "custom-resource-invalid",
        "core-object-invalid",
        "core-object-wrong-type",
        "invalid-name",
        "missing-namespace",
    } <= set(SAVED)


@pytest.mark.parametrize("case", SAVED)
def test_the_api_servers_answers_to_bad_content_are_content(case: str) -> None:
    saved = json.loads((ANSWERS / f"{case}.json").read_text())
    error = exception(saved["code"], saved["reason"], saved["message"])
    assert not transient(error), f"{case}: HTTP {saved['code']} would be retried forever"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (0, "connection refused"),
        (429, "storage is (re)initializing"),
        (500, "etcdserver: request timed out"),
        (500, "Internal error occurred: resource quota evaluation timed out"),
        (502, ""),
        (503, "the server is currently unable to handle the request"),
        (504, "the server was unable to return a response in the time allotted"),
    ],
)
def test_answers_about_the_server_are_the_environments(code: int, message: str) -> None:
    assert transient(exception(code, "", message))
