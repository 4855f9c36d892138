from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from modelsync.gitops import webhooks

TOKEN = b"token"
BODY = json.dumps(
    {"ref": "refs/heads/main", "repository": {"clone_url": "https://github.com/acme/models.git"}}
).encode()


def sign(body: bytes, token: bytes = TOKEN) -> str:
    return hmac.new(token, body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("provider", "headers", "ok"),
    [
        ("github", {"X-Hub-Signature-256": f"sha256={sign(BODY)}"}, True),
        ("github", {"X-Hub-Signature-256": f"sha256={sign(BODY, b'other')}"}, False),
        ("github", {"X-Hub-Signature-256": sign(BODY)}, False),  # the prefix is required
        ("github", {}, False),
        ("gitea", {"X-Gitea-Signature": sign(BODY)}, True),
        ("gitlab", {"X-Gitlab-Token": "token"}, True),
        ("gitlab", {"X-Gitlab-Token": ""}, False),
        ("generic", {"X-Modelsync-Signature": f"sha256={sign(BODY)}"}, True),
        ("generic", {"X-Hub-Signature-256": f"sha256={sign(BODY)}"}, False),
    ],
)
def test_authenticity(provider: str, headers: dict[str, str], ok: bool) -> None:
    assert webhooks.authentic(provider, headers, BODY, TOKEN) is ok


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("https://github.com/acme/models.git", "github.com/acme/models"),
        ("git@github.com:acme/models.git", "github.com/acme/models"),
        ("ssh://git@github.com/acme/models", "github.com/acme/models"),
        ("https://GitHub.com/acme/models/", "github.com/acme/models"),
        ("https://user@gitlab.example.com:8443/team/models.git", "gitlab.example.com/team/models"),
        ("file:///srv/git/models.git", "/srv/git/models"),
    ],
)
def test_urls_compare_by_host_and_path(url: str, normal: str) -> None:
    assert webhooks.normalize_url(url) == normal


def sync(url: str, ref: dict[str, str] | None = None, suspend: bool = False) -> dict[str, object]:
    return {
        "metadata": {"name": "x", "namespace": "ns"},
        "spec": {"repo": {"url": url, **({"ref": ref} if ref else {})}, "suspend": suspend},
    }


def test_a_push_matches_syncs_of_its_repository_and_ref() -> None:
    push = webhooks.parse("github", BODY)
    follows_main = sync("git@github.com:acme/models.git")
    follows_dev = sync("https://github.com/acme/models", {"branch": "dev"})
    other_repo = sync("https://github.com/acme/other")
    suspended = sync("https://github.com/acme/models", suspend=True)
    semver = sync("https://github.com/acme/models", {"semver": "^1"})
    found = webhooks.matching(push, [follows_main, follows_dev, other_repo, suspended, semver])
    assert found == [follows_main]
    tag_push = webhooks.Push(push.urls, "refs/tags/v1.2.0")
    assert webhooks.matching(tag_push, [follows_main, semver]) == [semver]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"ref": "refs/heads/main"}',
        b'{"repository": {"clone_url": "x"}}',
        b'{"ref": "main", "repository": {"clone_url": "x"}}',
        b"\xff\xfe",
    ],
)
def test_malformed_bodies_are_bad_requests(body: bytes) -> None:
    with pytest.raises(webhooks.BadRequestError):
        webhooks.parse("github", body)


def test_a_delivery_id_counts_once_within_the_window() -> None:
    window = webhooks.ReplayWindow(seconds=60, capacity=3)
    key = ("team-a", "prod", "delivery-1")
    assert window.first_time(key, now=0)
    assert not window.first_time(key, now=59)
    assert not window.first_time(key, now=60)  # the window counts from the first sighting
    assert window.first_time(key, now=61)  # forgotten: the host's retries are long over
    # Per ModelSync: the same id for another ModelSync is another delivery.
    assert window.first_time(("team-b", "prod", "delivery-1"), now=61)


def test_the_replay_window_forgets_the_oldest_when_full() -> None:
    window = webhooks.ReplayWindow(seconds=600, capacity=2)
    for delivery in ("a", "b", "c"):
        assert window.first_time(("ns", "ms", delivery), now=1)
    assert window.first_time(("ns", "ms", "a"), now=2)  # pushed out by "c"
    assert not window.first_time(("ns", "ms", "c"), now=2)


@pytest.mark.parametrize(
    ("provider", "headers", "delivery"),
    [
        ("github", {"X-GitHub-Delivery": "d1"}, "d1"),
        ("gitea", {"X-Gitea-Delivery": "d2"}, "d2"),
        ("gitlab", {"X-Gitlab-Event-UUID": "d3"}, "d3"),
        ("generic", {"X-Modelsync-Delivery": "d4"}, "d4"),
        ("github", {"X-Gitea-Delivery": "d2"}, None),
        ("generic", {"X-Modelsync-Delivery": ""}, None),
    ],
)
def test_delivery_ids_per_provider(
    provider: str, headers: dict[str, str], delivery: str | None
) -> None:
    assert webhooks.delivery_id(provider, headers) == delivery


def test_each_modelsync_has_its_own_route() -> None:
    assert webhooks.route("gitea", "team-a", "prod") == "/hooks/gitea/team-a/prod"


def test_a_target_keeps_what_a_delivery_is_decided_on_and_no_status() -> None:
    ms = {
        "metadata": {
            "name": "prod",
            "namespace": "team",
            "labels": {"modelsync.io/shard": "b", "team": "x"},
            "annotations": {"big": "y" * 1000},
        },
        "spec": {
            "repo": {"url": "https://github.com/acme/models", "ref": {"branch": "dev"}},
            "path": "models",
            "webhookSecretRef": {"name": "hook"},
        },
        "status": {"inventory": [{"name": f"m{i}"} for i in range(100)]},
    }
    target = webhooks.target(ms)
    assert target == {
        "metadata": {"namespace": "team", "name": "prod", "labels": {"modelsync.io/shard": "b"}},
        "spec": {
            "repo": {"url": "https://github.com/acme/models", "ref": {"branch": "dev"}},
            "suspend": False,
            "webhookSecretRef": {"name": "hook"},
        },
    }
    push = webhooks.Push(("https://github.com/acme/models.git",), "refs/heads/dev")
    assert webhooks.matching(push, [target]) == [target]
    assert webhooks.matching(push, [ms]) == [ms]
