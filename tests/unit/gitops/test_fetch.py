from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from modelsync.gitops.fetch import (
    GIT_TIMEOUT_ENV,
    GIT_TIMEOUT_SECONDS,
    Credentials,
    FetchError,
    Ref,
    check_url,
    git_timeout_seconds,
    parse_ls_remote,
    pick_ref,
    private_environment,
    protocol_config,
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


@pytest.mark.parametrize(
    "url",
    [
        "https://git.example.com/ml/models.git",
        "http://127.0.0.1:8080/models.git",
        "ssh://git@git.example.com/ml/models.git",
        "git@github.com:ml/models.git",
    ],
)
def test_security_check_url_accepts_https_http_and_ssh(url: str) -> None:
    check_url(url, allow_file=False)


@pytest.mark.parametrize(
    "url",
    [
        "--upload-pack=touch /tmp/x",
        "-uhttps://example.com/x",
        "ext::sh -c touch% /tmp/x",
        "fd::3,4",
        "git://git.example.com/models.git",
        "/srv/git/models.git",
        "../models.git",
        "ftp://example.com/models.git",
        "",
    ],
)
def test_security_check_url_refuses_other_transports_and_options(url: str) -> None:
    with pytest.raises(FetchError, match=r"spec\.repo\.url"):
        check_url(url, allow_file=True)


def test_security_file_urls_only_when_allowed_and_never_into_the_cache(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"file:// URLs are turned off.*--allow-file-urls"):
        check_url("file:///srv/git/models.git", allow_file=False)
    check_url("file:///srv/git/models.git", allow_file=True, cache_dir=tmp_path)
    with pytest.raises(FetchError, match="inside the operator's git cache"):
        check_url(f"file://{tmp_path}/repos/0123.git", allow_file=True, cache_dir=tmp_path)


def test_security_git_may_use_only_the_allowed_transports() -> None:
    assert protocol_config(False) == [
        "-c",
        "protocol.allow=never",
        "-c",
        "protocol.https.allow=always",
        "-c",
        "protocol.http.allow=always",
        "-c",
        "protocol.ssh.allow=always",
    ]
    assert protocol_config(True)[-2:] == ["-c", "protocol.file.allow=always"]


def test_security_git_helpers_live_in_a_private_directory_per_command() -> None:
    credentials = Credentials("bot", "s3cret", ssh_key="KEY", known_hosts="host ssh-ed25519 A")
    with private_environment(credentials) as env, private_environment(None) as other:
        home = Path(env["HOME"])
        assert home != Path(other["HOME"])
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        assert Path(env["GIT_ASKPASS"]).parent == home
        assert stat.S_IMODE((home / "identity").stat().st_mode) == 0o600
        assert str(home / "known_hosts") in env["GIT_SSH_COMMAND"]
        assert "s3cret" not in str(other)
    assert not home.exists()


def test_security_a_pinned_commit_must_be_a_sha() -> None:
    with pytest.raises(FetchError, match="not a 40-hex sha"):
        pick_ref(Ref(commit="--output=/tmp/x"), {})


def test_security_git_in_the_cache_reads_no_config_of_its_home(tmp_path: Path) -> None:
    """The cache directory (an emptyDir shared by every tenant's repositories) is no
    git HOME: a ~/.gitconfig or ~/.config/git/attributes found there changes nothing of
    what a revision's snapshot holds."""
    import subprocess

    from modelsync.gitops.fetch import GitFetcher

    source = tmp_path / "source"
    (source / "models").mkdir(parents=True)
    (source / "models" / "iris.yaml").write_text("kind: ModelDeployment\n")
    env = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path)}
    for args in (
        ["init", "--quiet", "--initial-branch=main"],
        ["add", "."],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "one"],
    ):
        subprocess.run(["git", "-C", str(source), *args], check=True, env=env)
    cache = tmp_path / "cache"
    fetcher = GitFetcher(cache, allow_file_urls=True)
    # What a config or attributes file in git's HOME would do to the archive: leave out
    # every file (a revision that looks empty), or leave out the ones the budget weighs.
    (cache / ".config" / "git").mkdir(parents=True)
    (cache / ".config" / "git" / "attributes").write_text("* export-ignore\n")
    (cache / ".gitconfig").write_text(
        f"[core]\n\tattributesFile = {cache}/.config/git/attributes\n"
    )
    url = f"file://{source}"
    revision = fetcher.resolve(url, Ref(branch="main"))
    snapshot = fetcher.checkout(url, revision)
    assert (snapshot / "models" / "iris.yaml").read_text() == "kind: ModelDeployment\n"
