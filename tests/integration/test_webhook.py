"""Webhook receivers on the operator's HTTP port: a signed push syncs at once;
anything forged, malformed or too large is refused with no side effect."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.error
import urllib.request
from typing import Any

import kubernetes
import pytest

from modelsync import constants as c
from modelsync import operator
from tests.syncs import Syncs, model_yaml

TOKEN = "s3cr3t-webhook-token"


def post(
    runtime: operator.Runtime, provider: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    return post_to(runtime.settings.http_port, provider, body, headers)


def post_to(
    port: int, provider: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """POST a webhook delivery to the operator on `port`: its status and JSON answer."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/{provider}",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def signature(body: bytes, token: str = TOKEN) -> str:
    return hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


def github_push(url: str, ref: str = "refs/heads/main") -> bytes:
    return json.dumps({"ref": ref, "repository": {"clone_url": url, "html_url": url}}).encode()


@pytest.fixture
def hooked(syncs: Syncs) -> tuple[Syncs, Any, str]:
    """A ModelSync with a webhook token, synced once; returns (syncs, repo, first sha)."""
    syncs.core.create_namespaced_secret(
        syncs.namespace,
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name="webhook"),
            data={"token": base64.b64encode(TOKEN.encode()).decode()},
        ),
    )
    repo = syncs.repo("models")
    repo.write("iris.yaml", model_yaml("iris"))
    first = repo.commit("one")
    syncs.create("prod", repo.file_url, webhookSecretRef={"name": "webhook"})
    syncs.wait_applied("prod", f"main@sha1:{first}")
    return syncs, repo, first


def test_webhook_github_push_syncs_at_once(
    hooked: tuple[Syncs, Any, str], running_operator: operator.Runtime
) -> None:
    syncs, repo, _ = hooked
    repo.write("ranker.yaml", model_yaml("ranker"))
    sha = repo.commit("add ranker")
    body = github_push(repo.file_url)
    status, answer = post(
        running_operator,
        "github",
        body,
        {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={signature(body)}"},
    )
    assert (status, answer) == (202, {"queued": [f"{syncs.namespace}/prod"]})
    # The interval is an hour: only the webhook can have brought this in.
    syncs.wait(
        "prod",
        lambda ms: (ms or {}).get("status", {}).get("lastAppliedRevision") == f"main@sha1:{sha}",
        "the pushed commit",
        timeout=10,
    )
    assert set(syncs.models()) == {"iris", "ranker"}


@pytest.mark.parametrize("provider", ["gitlab", "gitea", "generic"])
def test_webhook_other_providers_authenticate_their_way(
    hooked: tuple[Syncs, Any, str], running_operator: operator.Runtime, provider: str
) -> None:
    syncs, repo, _ = hooked
    sha = repo.write("ranker.yaml", model_yaml("ranker")).commit("add ranker")
    if provider == "gitlab":
        body = json.dumps(
            {"ref": "refs/heads/main", "project": {"git_http_url": repo.file_url}}
        ).encode()
        headers = {"X-Gitlab-Token": TOKEN}
    elif provider == "gitea":
        body = github_push(repo.file_url)
        headers = {"X-Gitea-Signature": signature(body)}
    else:
        body = json.dumps({"ref": "refs/heads/main", "repository": repo.file_url}).encode()
        headers = {"X-Modelsync-Signature": f"sha256={signature(body)}"}
    status, _ = post(running_operator, provider, body, headers)
    assert status == 202
    syncs.wait(
        "prod",
        lambda ms: (ms or {}).get("status", {}).get("lastAppliedRevision") == f"main@sha1:{sha}",
        "the pushed commit",
        timeout=10,
    )


def test_webhook_fault_forged_malformed_and_oversized_requests_change_nothing(
    hooked: tuple[Syncs, Any, str], running_operator: operator.Runtime
) -> None:
    syncs, repo, first = hooked
    repo.write("ranker.yaml", model_yaml("ranker")).commit("add ranker")
    key = (c.MODELSYNC_KIND, syncs.namespace, "prod")
    assert running_operator.queue is not None
    body = github_push(repo.file_url)
    cases = [
        (
            "forged signature",
            "github",
            body,
            {"X-Hub-Signature-256": f"sha256={signature(body, 'guessed')}"},
            401,
        ),
        ("no signature", "github", body, {}, 401),
        (
            "signature of another body",
            "github",
            body + b" ",
            {"X-Hub-Signature-256": f"sha256={signature(body)}"},
            401,
        ),
        (
            "wrong gitlab token",
            "gitlab",
            json.dumps(
                {"ref": "refs/heads/main", "project": {"git_http_url": repo.file_url}}
            ).encode(),
            {"X-Gitlab-Token": "nope"},
            401,
        ),
        ("not JSON", "github", b"{not json", {}, 400),
        ("not a push", "github", b'{"zen": "hello"}', {}, 400),
        ("too large", "github", b"{" + b" " * (1 << 20) + b"}", {}, 413),
        ("unknown provider", "bitbucket", body, {}, 404),
    ]
    for what, provider, payload, headers, expected in cases:
        status, _ = post(running_operator, provider, payload, headers)
        assert status == expected, what
        assert key not in running_operator.queue, what
    ms = syncs.api.get_namespaced_custom_object(
        name="prod",
        namespace=syncs.namespace,
        group=c.GROUP,
        version=c.VERSION,
        plural=c.MODELSYNC_PLURAL,
    )
    assert ms["status"]["lastAttemptedRevision"] == f"main@sha1:{first}"
    assert set(syncs.models()) == {"iris"}


def test_webhook_for_another_branch_queues_nothing(
    hooked: tuple[Syncs, Any, str], running_operator: operator.Runtime
) -> None:
    _, repo, _ = hooked
    body = github_push(repo.file_url, ref="refs/heads/feature")
    status, answer = post(
        running_operator, "github", body, {"X-Hub-Signature-256": f"sha256={signature(body)}"}
    )
    assert (status, answer) == (202, {"queued": []})
