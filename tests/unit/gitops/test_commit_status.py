"""Commit status, the pure parts: which API a ModelSync's statuses may go to, what its
status says of a revision, and the one request per provider."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelsync.api import constants as c
from modelsync.gitops import commitstatus as cs

SHA = "0123456789abcdef0123456789abcdef01234567"
REVISION = f"main@sha1:{SHA}"


@pytest.mark.parametrize(
    ("provider", "repo", "api", "project"),
    [
        ("github", "https://github.com/acme/models.git", "https://api.github.com", "acme/models"),
        ("github", "git@github.com:acme/models.git", "https://api.github.com", "acme/models"),
        ("github", "https://ghe.example/acme/models", "https://ghe.example/api/v3", "acme/models"),
        ("gitlab", "https://gitlab.com/g/sub/m.git", "https://gitlab.com/api/v4", "g/sub/m"),
        ("gitlab", "ssh://git@gitlab.example:2222/g/m.git", "https://gitlab.example/api/v4", "g/m"),
        ("gitea", "http://127.0.0.1:3000/acme/m.git", "http://127.0.0.1:3000/api/v1", "acme/m"),
    ],
)  # fmt: skip
def test_commit_status_api_derived_from_the_repository_url(
    provider: str, repo: str, api: str, project: str
) -> None:
    target = cs.api_base({"provider": provider}, repo, ())
    assert (target.api, target.project) == (api, project)


def test_commit_status_api_url_on_the_repository_host_is_allowed() -> None:
    notify = {"provider": "gitea", "apiURL": "https://git.example/gitea/api/v1"}
    target = cs.api_base(notify, "https://git.example/acme/models.git", ())
    assert target.api == "https://git.example/gitea/api/v1"


@pytest.mark.parametrize(
    "api_url",
    [
        "http://169.254.169.254/latest",  # cloud metadata
        "https://kubernetes.default.svc/api",  # the API server
        "https://git.example:8443/api/v1",  # the right host, another port
        "http://git.example/api/v1",  # the right host, another scheme
        "https://user@git.example/api/v1",  # user info
    ],
)
def test_commit_status_api_url_elsewhere_is_refused(api_url: str) -> None:
    with pytest.raises(cs.RefusedError, match="refused before any connection"):
        cs.api_base({"provider": "gitea", "apiURL": api_url}, "https://git.example/a/b.git", ())


def test_commit_status_api_url_the_platform_allows() -> None:
    notify = {"provider": "github", "apiURL": "https://ghe.internal:8443/api/v3"}
    target = cs.api_base(notify, "https://github.com/a/b", ("https://ghe.internal:8443",))
    assert target.api == "https://ghe.internal:8443/api/v3"


def test_commit_status_unknown_provider_and_bad_url_refused() -> None:
    with pytest.raises(cs.RefusedError, match="gitea, github, gitlab"):
        cs.api_base({"provider": "bitbucket"}, "https://github.com/a/b", ())
    with pytest.raises(cs.RefusedError, match="http"):
        cs.api_base({"provider": "gitea"}, "file:///srv/git/a.git", ())
    with pytest.raises(cs.RefusedError, match="owner"):
        cs.api_base({"provider": "github"}, "https://github.com/a", ())


def status(reason: str, ready: bool, applied: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "lastAttemptedRevision": REVISION,
        "lastAppliedRevision": REVISION if applied else "main@sha1:" + "f" * 40,
        "conditions": [
            {"type": c.READY, "status": str(ready), "reason": reason, "message": "why " * 3}
        ],
        **extra,
    }


@pytest.mark.parametrize(
    ("given", "state"),
    [
        (status(c.REASON_SUCCEEDED, True), cs.SUCCESS),
        (status(c.REASON_DRIFT_DETECTED, True), cs.SUCCESS),
        (status(c.REASON_VALIDATION_FAILED, False, applied=False), cs.FAILURE),
        (status(c.REASON_ROLLED_BACK, False), cs.FAILURE),
        (status(c.REASON_MODELS_NOT_READY, False), cs.RUNNING),
        (
            status(c.REASON_MODELS_NOT_READY, False, modelsNotReady=["iris: ContainersRestarting"]),
            cs.FAILURE,
        ),
        (status(c.REASON_FETCH_FAILED, False, applied=False), None),  # tried again
        (status(c.REASON_RETRYING, False, applied=False), None),
        ({"conditions": []}, None),
    ],
)
def test_commit_status_verdict(given: dict[str, Any], state: str | None) -> None:
    said = cs.verdict(given)
    assert (said[1] if said else None) == state
    if said:
        assert said[0] == REVISION
        assert len(said[2]) <= cs.MAX_DESCRIPTION


def test_commit_status_description_is_short() -> None:
    given = status(c.REASON_VALIDATION_FAILED, False, applied=False)
    given["conditions"][0]["message"] = "x" * 1000
    said = cs.verdict(given)
    assert said is not None
    assert len(said[2]) == cs.MAX_DESCRIPTION


def test_commit_status_requests_per_provider() -> None:
    ctx = cs.context("team-a", "prod")
    gitea = cs.request(
        cs.Target("gitea", "http://h/api/v1", "acme/models"), SHA, "success", "ok", ctx, "T"
    )
    assert (gitea.method, gitea.url) == (
        "POST",
        f"http://h/api/v1/repos/acme/models/statuses/{SHA}",
    )
    assert gitea.headers["Authorization"] == "token T"
    assert json.loads(gitea.body) == {
        "state": "success",
        "context": "modelsync/team-a/prod",
        "description": "ok",
    }
    github = cs.request(
        cs.Target("github", "https://api.github.com", "acme/models"), SHA, "pending", "d", ctx, "T"
    )
    assert github.url == f"https://api.github.com/repos/acme/models/statuses/{SHA}"
    assert github.headers["Authorization"] == "Bearer T"
    assert github.headers["Accept"] == "application/vnd.github+json"
    gitlab = cs.request(
        cs.Target("gitlab", "https://gl/api/v4", "g/sub/models"), SHA, "failure", "d", ctx, "T"
    )
    assert gitlab.url == f"https://gl/api/v4/projects/g%2Fsub%2Fmodels/statuses/{SHA}"
    assert gitlab.headers["PRIVATE-TOKEN"] == "T"
    assert "Authorization" not in gitlab.headers
    running = cs.request(
        cs.Target("gitlab", "https://gl/api/v4", "g/m"), SHA, "running", "d", ctx, "T"
    )
    assert json.loads(running.body)["state"] == "running"
    as_pending = cs.request(
        cs.Target("gitea", "http://h/api/v1", "a/b"), SHA, "running", "d", ctx, "T"
    )
    assert json.loads(as_pending.body)["state"] == "pending"
    assert json.loads(gitlab.body) == {
        "state": "failed",
        "name": "modelsync/team-a/prod",
        "description": "d",
    }


def test_commit_status_queue_takes_each_verdict_once_and_drops_when_full() -> None:
    said = (REVISION, cs.SUCCESS, "applied")
    assert cs.admit(None, said, 0, 10) == cs.QUEUED
    assert cs.admit(said, said, 0, 10) == cs.DUPLICATE  # a resync says the same again
    assert cs.admit((REVISION, cs.PENDING, "fetched"), said, 3, 10) == cs.QUEUED
    assert cs.admit(None, said, 10, 10) == cs.DROPPED


PULL = cs.PullRequest(
    model="iris",
    head="modelsync/rollback/iris",
    base="main",
    failed=REVISION,
    restored="main@sha1:" + "a" * 40,
    version="1",
    reason="ProgressDeadlineExceeded",
)


def test_rollback_pull_request_names_model_failure_reason_and_restored_version() -> None:
    assert "iris" in PULL.title
    assert "version 1" in PULL.title
    for part in (REVISION, PULL.restored, "ProgressDeadlineExceeded", "version 1"):
        assert part in PULL.body()


def test_rollback_pull_request_requests_per_provider() -> None:
    gitea = cs.Target("gitea", "http://h/api/v1", "acme/models")
    create = cs.pull_create(gitea, "T", PULL)
    assert (create.method, create.url) == ("POST", "http://h/api/v1/repos/acme/models/pulls")
    assert json.loads(create.body) == {
        "head": PULL.head,
        "base": "main",
        "title": PULL.title,
        "body": PULL.body(),
    }
    close = cs.pull_update(gitea, "T", 7, title="t", body="b", close=True)
    assert (close.method, close.url) == ("PATCH", "http://h/api/v1/repos/acme/models/pulls/7")
    assert json.loads(close.body) == {"title": "t", "body": "b", "state": "closed"}
    gitlab = cs.Target("gitlab", "https://gl/api/v4", "g/sub/models")
    create = cs.pull_create(gitlab, "T", PULL)
    assert create.url == "https://gl/api/v4/projects/g%2Fsub%2Fmodels/merge_requests"
    assert json.loads(create.body)["source_branch"] == PULL.head
    close = cs.pull_update(gitlab, "T", 3, title="t", body="b", close=True)
    assert (close.method, close.url) == (
        "PUT",
        "https://gl/api/v4/projects/g%2Fsub%2Fmodels/merge_requests/3",
    )
    assert json.loads(close.body)["state_event"] == "close"
    listing = cs.pulls_list(cs.Target("github", "https://api.github.com", "a/b"), "T")
    assert listing.method == "GET"
    assert listing.url.startswith("https://api.github.com/repos/a/b/pulls?state=open")


def test_rollback_pull_requests_found_by_head_branch() -> None:
    github = json.dumps([{"number": 4, "head": {"ref": PULL.head}, "body": "x"}, {"nope": 1}])
    assert cs.open_pulls("github", github) == {PULL.head: (4, "x")}
    gitlab = json.dumps([{"iid": 2, "source_branch": PULL.head, "description": None}])
    assert cs.open_pulls("gitlab", gitlab) == {PULL.head: (2, "")}
    assert cs.open_pulls("gitea", "not json") == {}
