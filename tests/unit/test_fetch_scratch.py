"""What a killed operator leaves in its git cache (it outlives the container) is swept
when the next one starts: half a pack from a fetch, half a snapshot from an extract."""

from __future__ import annotations

import fcntl
from pathlib import Path

from modelsync.fetch import SCRATCH_PREFIX, GitFetcher

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
