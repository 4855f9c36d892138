from __future__ import annotations

import re

import pytest

from modelsync.fetch import (
    GIT_TIMEOUT_ENV,
    GIT_TIMEOUT_SECONDS,
    Credentials,
    FetchError,
    Ref,
    git_timeout_seconds,
    parse_ls_remote,
    pick_ref,
    redact,
)

A, B, C, D = ("a" * 40, "b" * 40, "c" * 40, "d" * 40)
LISTING = {
    "refs/heads/main": A,
    "refs/tags/v1.0.0": B,
    "refs/tags/v1.2.0": C,  # an annotated tag object ...
    "refs/tags/v1.2.0^{}": D,  # ... and the commit it points at
    "refs/tags/v2.0.0": A,
    "refs/tags/not-a-version": B,
}


@pytest.mark.parametrize(
    ("ref", "name", "sha"),
    [
        (Ref(branch="main"), f"main@sha1:{A}", A),
        (Ref(tag="v1.0.0"), f"v1.0.0@sha1:{B}", B),
        (Ref(tag="v1.2.0"), f"v1.2.0@sha1:{D}", D),
        (Ref(semver="^1.0"), f"v1.2.0@sha1:{D}", D),
        (Ref(semver=">=1.0.0 <1.2.0"), f"v1.0.0@sha1:{B}", B),
        (Ref(semver="*"), f"v2.0.0@sha1:{A}", A),
        (Ref(commit=C), f"cccccccccccc@sha1:{C}", C),
    ],
)
def test_refs_resolve_to_commits(ref: Ref, name: str, sha: str) -> None:
    revision = pick_ref(ref, LISTING)
    assert (revision.name, revision.sha) == (name, sha)


@pytest.mark.parametrize(
    ("ref", "words"),
    [
        (Ref(branch="release"), "branch 'release' does not exist"),
        (Ref(tag="v9"), "tag 'v9' does not exist"),
        (Ref(semver="^3.0"), "no tag matches semver range '^3.0'"),
        (Ref(semver="not a range!"), "is not valid"),
    ],
)
def test_missing_refs_are_explained(ref: Ref, words: str) -> None:
    with pytest.raises(FetchError, match=re.escape(words)):
        pick_ref(ref, LISTING)


def test_ls_remote_output_is_parsed() -> None:
    text = f"{A}\tHEAD\n{B}\trefs/heads/main\nwarning: something\n"
    assert parse_ls_remote(text) == {"HEAD": A, "refs/heads/main": B}


def test_secrets_never_leave_in_messages() -> None:
    credentials = Credentials(username="u", password="hunter2")
    message = redact(
        "fatal: could not read from https://u:hunter2@host/r.git (hunter2)", credentials
    )
    assert "hunter2" not in message
    assert "https://host/r.git" in message


@pytest.mark.parametrize("value", ["0", "-5", "soon", "inf", "nan"])
def test_a_git_timeout_that_cannot_be_is_refused(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(GIT_TIMEOUT_ENV, value)
    with pytest.raises(ValueError, match=GIT_TIMEOUT_ENV):
        git_timeout_seconds()


def test_the_git_timeout_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(GIT_TIMEOUT_ENV, "7.5")
    assert git_timeout_seconds() == 7.5
    monkeypatch.delenv(GIT_TIMEOUT_ENV)
    assert git_timeout_seconds() == GIT_TIMEOUT_SECONDS
