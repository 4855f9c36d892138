"""A snapshot that a sync reads is never trimmed under it, and a walk that loses a
directory fails the load instead of returning the part it read: a partial revision
applied with prune on deletes what the missing part held. Real git, a file:// server,
no cluster; the trim is forced from inside the loader's walk."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelsync.gitops import load as loadmod
from modelsync.gitops.fetch import GitFetcher, Ref
from tests.unit.gitops.test_fetch_disk import git

MODELS = ("alpha", "beta", "gamma", "delta")


def model(name: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"


def served_repository(tmp_path: Path, commits: int) -> tuple[str, list[str]]:
    """A bare repository holding `commits` commits, each with one model per directory
    of models/ (a directory each, so the walk has directories to lose)."""
    served, work = tmp_path / "served.git", tmp_path / "work"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(served))
    git("init", "--quiet", "--initial-branch=main", str(work))
    shas = []
    for number in range(commits):
        for name in MODELS:
            (work / "models" / name).mkdir(parents=True, exist_ok=True)
            (work / "models" / name / "model.yaml").write_text(model(name))
        (work / "revision.txt").write_text(f"{number}\n")
        git("-C", str(work), "add", "--all")
        git("-C", str(work), "commit", "--quiet", "-m", f"commit {number}")
        shas.append(git("-C", str(work), "rev-parse", "HEAD"))
    git("-C", str(work), "push", "--quiet", str(served), "HEAD:refs/heads/main")
    return f"file://{served}", shas


def walk_with_hook(monkeypatch: pytest.MonkeyPatch, hook: Any) -> None:
    """os.walk as the loader uses it, calling `hook()` once, right after the walk listed
    its first directory (models/) and before it goes into any of the directories below."""
    real_walk = os.walk
    fired: list[bool] = []

    def walk(top: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for entry in real_walk(top, *args, **kwargs):
            yield entry
            if not fired:
                fired.append(True)
                hook()

    monkeypatch.setattr(os, "walk", walk)


def test_security_a_trim_forced_mid_load_leaves_the_snapshot_in_use_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, shas = served_repository(tmp_path, 3)
    # One snapshot at most: every other one is the trim's to delete.
    fetcher = GitFetcher(tmp_path / "cache", max_snapshots=1, allow_file_urls=True)
    revision = fetcher.resolve(url, Ref(branch="main"))
    older = [fetcher.resolve(url, Ref(commit=sha)) for sha in shas[:-1]]
    with fetcher.leased(url, revision) as snapshot:
        # Other syncs check out older revisions meanwhile; the trim runs mid-walk.
        for other in older:
            fetcher.checkout(url, other)
        walk_with_hook(monkeypatch, fetcher._trim_now)
        loaded = loadmod.load(snapshot, "models")
        assert loaded.errors == []
        assert sorted(o.manifest["metadata"]["name"] for o in loaded.objects) == sorted(MODELS)
        assert snapshot.is_dir()
    # Released, it is the trim's like any other (once the checkouts' own trims are done).
    for thread in threading.enumerate():
        if thread.name == "trim-snapshots":
            thread.join(10)
    fetcher._trim_now()
    remaining = {p.name for p in (tmp_path / "cache" / "snapshots").iterdir()}
    assert len(remaining & set(shas)) <= 1


def test_security_a_directory_that_vanishes_mid_walk_fails_the_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Removed between the walk's listing of models/ and its reading of models/beta: the
    load raises an error of the environment (retried), never a revision without beta."""
    root = tmp_path / "snapshot"
    for name in MODELS:
        (root / "models" / name).mkdir(parents=True)
        (root / "models" / name / "model.yaml").write_text(model(name))
    walk_with_hook(monkeypatch, lambda: shutil.rmtree(root / "models" / "beta"))
    with pytest.raises(Exception, match="models/beta") as raised:
        loadmod.load(root, "models")
    assert isinstance(raised.value, loadmod.SnapshotChangedError)


def test_security_a_snapshot_gone_before_the_load_is_not_an_empty_revision(
    tmp_path: Path,
) -> None:
    """An empty revision may prune everything (allowEmpty); a snapshot that is not there
    at all is the cache's fault, not the revision's."""
    with pytest.raises(Exception, match="gone") as raised:
        loadmod.load(tmp_path / "gone", "models")
    assert isinstance(raised.value, loadmod.SnapshotChangedError)
