"""The git cache on disk, with real git and no server process: what a killed operator
leaves (the cache outlives the container) is swept when the next one starts, and a
cache made by a filtered fetch never reaches a server from a local command."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from modelsync.gitops.fetch import (
    FETCH_FACTOR,
    SCRATCH_PREFIX,
    GitFetcher,
    Ref,
    Revision,
    RevisionTooLargeError,
)

SHA = "a" * 40


def leftovers(cache: Path, key: str) -> tuple[Path, Path, Path]:
    repo = cache / "repos" / f"{key}.git"
    (repo / "objects" / "pack").mkdir(parents=True)
    (cache / "repos" / f"{key}.git.flock").touch()
    partial_pack = repo / "objects" / "pack" / "tmp_pack_XyZ123"
    partial_pack.write_bytes(b"PACK")
    scratch = cache / "snapshots" / f"{SCRATCH_PREFIX}{key}-{SHA}-q1w2e3"
    (scratch / "models").mkdir(parents=True)
    snapshot = cache / "snapshots" / SHA
    (snapshot / "models").mkdir(parents=True)
    return partial_pack, scratch, snapshot


def test_leftovers_of_a_killed_operator_are_swept_at_start(tmp_path: Path) -> None:
    partial_pack, scratch, snapshot = leftovers(tmp_path, "0123456789abcdef0123")
    GitFetcher(tmp_path)
    assert not partial_pack.exists()
    assert not scratch.exists()
    assert snapshot.is_dir()  # complete snapshots stay


def test_a_repository_another_process_works_in_is_left_alone(tmp_path: Path) -> None:
    partial_pack, scratch, _ = leftovers(tmp_path, "0123456789abcdef0123")
    with (tmp_path / "repos" / "0123456789abcdef0123.git.flock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a fetch of another process sharing the cache
        GitFetcher(tmp_path)
        assert partial_pack.exists()
        assert scratch.exists()


def git(*args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1"}
    env |= {"GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.com"}
    env |= {"GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.com"}
    done = subprocess.run(["git", *args], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_security_a_filtered_cache_fetches_each_new_commit_whole_and_never_lazily(
    tmp_path: Path,
) -> None:
    """After a fetch that left a big blob out, the next commit is fetched (trees and
    all) by the fetch, not one object at a time by a local command reaching the server."""
    served, work = tmp_path / "served.git", tmp_path / "work"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(served))
    git("--git-dir", str(served), "config", "uploadpack.allowFilter", "true")
    git("init", "--quiet", "--initial-branch=main", str(work))
    (work / "models").mkdir()
    (work / "models" / "a.yaml").write_text("a: 1\n")
    (work / "big.bin").write_bytes(os.urandom(4096))
    url = f"file://{served}"

    def commit() -> Revision:
        git("-C", str(work), "add", "--all")
        git("-C", str(work), "commit", "--quiet", "-m", "change")
        git("-C", str(work), "push", "--quiet", str(served), "HEAD:refs/heads/main")
        return fetcher.resolve(url, Ref(branch="main"))

    fetcher = GitFetcher(tmp_path / "cache", max_revision_bytes=1024, allow_file_urls=True)
    with pytest.raises(RevisionTooLargeError, match=r"big\.bin is larger than the limit"):
        fetcher.checkout(url, commit())
    (work / "big.bin").unlink()
    (work / "models" / "b.yaml").write_text("b: 2\n")
    snapshot = fetcher.checkout(url, commit())
    assert sorted(p.name for p in (snapshot / "models").iterdir()) == ["a.yaml", "b.yaml"]
    assert not (snapshot / "big.bin").exists()


def test_security_a_server_that_does_not_filter_is_cut_off_and_not_asked_again(
    tmp_path: Path,
) -> None:
    """A revision far over the budget, from a server that sends every blob: the fetch is
    cut at FETCH_FACTOR times the budget, nothing of it stays, and the refusal is
    remembered (the server is not asked for the same revision again)."""
    served, work = tmp_path / "served.git", tmp_path / "work"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(served))
    git("init", "--quiet", "--initial-branch=main", str(work))
    (work / "big.bin").write_bytes(os.urandom(4 << 20))  # random: a 4 MiB pack
    git("-C", str(work), "add", "--all")
    git("-C", str(work), "commit", "--quiet", "-m", "big")
    git("-C", str(work), "push", "--quiet", str(served), "HEAD:refs/heads/main")
    url = f"file://{served}"
    fetcher = GitFetcher(tmp_path / "cache", max_revision_bytes=64 << 10, allow_file_urls=True)
    revision = fetcher.resolve(url, Ref(branch="main"))
    cap = (64 << 10) * FETCH_FACTOR + (1 << 20)
    with pytest.raises(RevisionTooLargeError, match=f"sent more than {cap} bytes"):
        fetcher.checkout(url, revision)
    on_disk = sum(p.stat().st_size for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert on_disk < 1 << 20
    shutil.rmtree(served)  # asked again, the server could not answer
    with pytest.raises(RevisionTooLargeError, match=f"sent more than {cap} bytes"):
        fetcher.checkout(url, revision)


def test_a_revision_refused_under_a_filter_is_accepted_once_the_budget_is_raised(
    tmp_path: Path,
) -> None:
    """The operator restarted with a larger budget over the same cache: the blob an earlier
    filtered fetch left out is fetched now, not taken as missing and refused again."""
    served, work = tmp_path / "served.git", tmp_path / "work"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(served))
    git("--git-dir", str(served), "config", "uploadpack.allowFilter", "true")
    git("init", "--quiet", "--initial-branch=main", str(work))
    (work / "big.bin").write_bytes(os.urandom(4096))
    git("-C", str(work), "add", "--all")
    git("-C", str(work), "commit", "--quiet", "-m", "big")
    git("-C", str(work), "push", "--quiet", str(served), "HEAD:refs/heads/main")
    url = f"file://{served}"
    small = GitFetcher(tmp_path / "cache", max_revision_bytes=1024, allow_file_urls=True)
    revision = small.resolve(url, Ref(branch="main"))
    with pytest.raises(RevisionTooLargeError):
        small.checkout(url, revision)
    raised = GitFetcher(tmp_path / "cache", max_revision_bytes=1 << 20, allow_file_urls=True)
    snapshot = raised.checkout(url, revision)
    assert (snapshot / "big.bin").stat().st_size == 4096
