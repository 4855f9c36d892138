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

from modelsync.api import constants as c
from modelsync.runtime import operator
from tests.support.syncs import Syncs, model_yaml

TOKEN = "s3cr3t-webhook-token"


def post(
    runtime: operator.Operator, route: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    return post_to(runtime.settings.http_port, route, body, headers)


def post_to(
    port: int,
    route: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, dict[str, Any]]:
    """POST a webhook delivery to /hooks/<route> (`github/<namespace>/<modelsync>`) of
    the operator on `port`: its status and JSON answer, within `timeout` seconds."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/{route}",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
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
    hooked: tuple[Syncs, Any, str], running_operator: operator.Operator
) -> None:
    syncs, repo, _ = hooked
    repo.write("ranker.yaml", model_yaml("ranker"))
    sha = repo.commit("add ranker")
    body = github_push(repo.file_url)
    status, answer = post(
        running_operator,
        f"github/{syncs.namespace}/prod",
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


def test_webhook_for_a_modelsync_the_watch_has_not_delivered_yet_is_accepted(
    hooked: tuple[Syncs, Any, str], running_operator: operator.Operator
) -> None:
    """A replica that has just taken the lead answers webhooks before its watch has
    delivered every ModelSync: an authentic one is read from the API and accepted (it was
    a 401, and git hosts do not retry those), and the watch's first event syncs it."""
    syncs, repo, _ = hooked
    sha = repo.write("ranker.yaml", model_yaml("ranker")).commit("add ranker")
    # As right after a failover: the ModelSync is not in the operator's cache yet.
    running_operator.cache.delete(c.MODELSYNC_KIND, syncs.namespace, "prod")
    body = github_push(repo.file_url)
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={signature(body)}"}
    status, answer = post(running_operator, f"github/{syncs.namespace}/prod", body, headers)
    assert (status, answer) == (202, {"queued": [f"{syncs.namespace}/prod"]})
    forged = {**headers, "X-Hub-Signature-256": f"sha256={signature(body, 'guessed')}"}
    status, _ = post(running_operator, f"github/{syncs.namespace}/prod", body, forged)
    assert status == 401
    # The watch delivers it (any change does): the first sync brings the pushed commit.
    syncs.patch("prod", {"metadata": {"labels": {"delivered": "yes"}}})
    syncs.wait_applied("prod", f"main@sha1:{sha}")


@pytest.mark.parametrize("provider", ["gitlab", "gitea", "generic"])
def test_webhook_other_providers_authenticate_their_way(
    hooked: tuple[Syncs, Any, str], running_operator: operator.Operator, provider: str
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
    status, _ = post(running_operator, f"{provider}/{syncs.namespace}/prod", body, headers)
    assert status == 202
    syncs.wait(
        "prod",
        lambda ms: (ms or {}).get("status", {}).get("lastAppliedRevision") == f"main@sha1:{sha}",
        "the pushed commit",
        timeout=10,
    )


def test_webhook_fault_forged_malformed_and_oversized_requests_change_nothing(
    hooked: tuple[Syncs, Any, str], running_operator: operator.Operator
) -> None:
    syncs, repo, first = hooked
    repo.write("ranker.yaml", model_yaml("ranker")).commit("add ranker")
    key = (c.MODELSYNC_KIND, syncs.namespace, "prod")
    assert running_operator.queue is not None
    body = github_push(repo.file_url)
    not_json, not_a_push = b"{not json", b'{"zen": "hello"}'
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
        ("not JSON, unsigned", "github", b"{not json", {}, 401),
        (
            "not JSON, signed",
            "github",
            not_json,
            {"X-Hub-Signature-256": f"sha256={signature(not_json)}"},
            400,
        ),
        (
            "not a push, signed",
            "github",
            not_a_push,
            {"X-Hub-Signature-256": f"sha256={signature(not_a_push)}"},
            400,
        ),
        ("too large", "github", b"{" + b" " * (1 << 20) + b"}", {}, 413),
        ("unknown provider", "bitbucket", body, {}, 404),
    ]
    for what, provider, payload, headers, expected in cases:
        status, _ = post(running_operator, f"{provider}/{syncs.namespace}/prod", payload, headers)
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
    hooked: tuple[Syncs, Any, str], running_operator: operator.Operator
) -> None:
    syncs, repo, _ = hooked
    body = github_push(repo.file_url, ref="refs/heads/feature")
    status, answer = post(
        running_operator,
        f"github/{syncs.namespace}/prod",
        body,
        {"X-Hub-Signature-256": f"sha256={signature(body)}"},
    )
    assert (status, answer) == (202, {"queued": []})


# ------------------------------------------------------------------ tenants


def test_tenant_webhook_on_the_old_path_is_gone_and_names_the_new_one(
    hooked: tuple[Syncs, Any, str], running_operator: operator.Operator
) -> None:
    _, repo, _ = hooked
    body = github_push(repo.file_url)
    status, answer = post(
        running_operator, "github", body, {"X-Hub-Signature-256": f"sha256={signature(body)}"}
    )
    assert status == 410
    assert answer["use"] == "/hooks/github/<namespace>/<modelsync>"
    assert "/hooks/github/<namespace>/<modelsync>" in answer["error"]


def test_tenant_webhook_is_authenticated_by_its_own_modelsync_before_parsing(
    hooked: tuple[Syncs, Any, str], running_operator: operator.Operator
) -> None:
    """Nothing unauthenticated reaches the JSON parser, a token opens only its own
    ModelSync's URL, and a missing ModelSync answers like a wrong signature."""
    syncs, repo, _ = hooked
    # A second ModelSync of the same repository, whose webhook Secret holds another token.
    syncs.core.create_namespaced_secret(
        syncs.namespace,
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name="other-webhook"),
            data={"token": base64.b64encode(b"another-token").decode()},
        ),
    )
    syncs.create("other", repo.file_url, webhookSecretRef={"name": "other-webhook"})
    body = github_push(repo.file_url)
    signed = {"X-Hub-Signature-256": f"sha256={signature(body)}"}
    garbage = b"\xff\x00 not json at all"
    forged = {"X-Hub-Signature-256": f"sha256={signature(garbage, 'guessed')}"}
    ns = syncs.namespace
    cases = [
        ("forged signature on a body that is not JSON", f"github/{ns}/prod", garbage, forged),
        ("prod's token on other's URL", f"github/{ns}/other", body, signed),
        ("a ModelSync that does not exist", f"github/{ns}/nosuch", body, signed),
        ("a namespace that does not exist", "github/nosuch-ns/prod", body, signed),
    ]
    for what, route, payload, headers in cases:
        status, answer = post(running_operator, route, payload, headers)
        assert (status, answer) == (401, {"error": "signature or token does not match"}), what


def test_tenant_webhook_replayed_delivery_is_ignored(
    hooked: tuple[Syncs, Any, str], running_operator: operator.Operator
) -> None:
    syncs, repo, _ = hooked
    second = repo.write("ranker.yaml", model_yaml("ranker")).commit("add ranker")
    body = github_push(repo.file_url)
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-Hub-Signature-256": f"sha256={signature(body)}",
    }
    route = f"github/{syncs.namespace}/prod"
    assert post(running_operator, route, body, headers) == (
        202,
        {"queued": [f"{syncs.namespace}/prod"]},
    )
    syncs.wait_applied("prod", f"main@sha1:{second}")
    repo.write("scorer.yaml", model_yaml("scorer")).commit("add scorer")
    assert post(running_operator, route, body, headers) == (202, {"queued": [], "duplicate": True})
    # A new delivery of the same push is not a replay.
    fresh = {**headers, "X-GitHub-Delivery": "a-new-delivery"}
    assert post(running_operator, route, body, fresh)[0] == 202
