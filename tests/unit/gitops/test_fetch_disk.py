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

from modelsync.gitops import disk
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


def test_security_a_small_budget_trims_what_no_sync_uses_and_stays_under_it(
    tmp_path: Path,
) -> None:
    """12 pinned revisions of 200 small files each (a block apiece on disk: 0.8 MiB a
    snapshot, though their bytes are few) through one cached repository, in a budget of
    8 MiB: the cache on disk never exceeds it (the least recently used snapshots are
    trimmed), and a snapshot held by a sync survives all of it."""
    served, work = tmp_path / "served.git", tmp_path / "work"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(served))
    git("init", "--quiet", "--initial-branch=main", str(work))
    (work / "files").mkdir()
    for number in range(200):
        (work / "files" / f"{number}.txt").write_text(f"{number}\n")
    shas = []
    for number in range(12):
        (work / "revision.txt").write_text(f"{number}\n")
        git("-C", str(work), "add", "--all")
        git("-C", str(work), "commit", "--quiet", "-m", f"revision {number}")
        shas.append(git("-C", str(work), "rev-parse", "HEAD"))
    git("-C", str(work), "push", "--quiet", str(served), "HEAD:refs/heads/main")
    url, budget = f"file://{served}", 8 << 20  # the least for 64 KiB revisions: 7.5 MiB
    cache = tmp_path / "cache"
    fetcher = GitFetcher(
        cache, max_revision_bytes=64 << 10, allow_file_urls=True, max_cache_bytes=budget
    )
    revisions = [fetcher.resolve(url, Ref(commit=sha)) for sha in shas]
    with fetcher.leased(url, revisions[0]) as held:
        for revision in revisions[1:]:
            fetcher.checkout(url, revision)
            assert disk.usage(cache) <= budget
            assert disk.usage(cache) <= fetcher.disk.in_use  # what is counted is there
        assert (held / "revision.txt").read_text() == "0\n"
        assert len(list((held / "files").iterdir())) == 200
    assert len(list((cache / "snapshots").iterdir())) < 10  # trimmed to make room


def test_a_reservation_trims_what_it_lacks_and_is_refused_when_nothing_can_go() -> None:
    budget = disk.DiskBudget(100)
    budget.keep(Path("kept"), 30)
    asked: list[int] = []

    def trim(need: int) -> int:
        asked.append(need)
        budget.forget(Path("kept"))
        return 30

    with budget.reserve(60, "a fetch", lambda need: 0):
        with budget.reserve(40, "a snapshot", trim):  # 30 + 60 + 40: 30 over
            assert budget.in_use == 100
        assert asked == [30]
        refused = "no room for a clone \\(50 bytes\\): 60 of its 100 bytes are in use"
        with pytest.raises(disk.DiskFullError, match=refused), budget.reserve(50, "a clone", trim):
            pass
    assert budget.in_use == 0  # what ended gave its room back


def test_a_budget_too_small_for_one_sync_stops_the_operator_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--git-cache-max-bytes 1073741824 is below"):
        GitFetcher(tmp_path, max_revision_bytes=1 << 30, max_cache_bytes=1 << 30)
