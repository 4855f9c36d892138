"""Fetch, bounded on disk: the git cache's one byte budget.

What the cache keeps (snapshots, cached bare repositories) counts at its size on
disk, as du and the kubelet count an emptyDir (blocks; at least one a file or
directory, so a revision of a million empty files is not free). A step that writes
reserves its worst case first: a fetch (its pack and index, each cut off by
RLIMIT_FSIZE), an extract (measured from git's listing before a byte is written), a
render's private copy, a write-back's clone. A reservation that would take the cache
over the budget first has the cache trim what no running step uses, least recently
used first; when even that leaves no room the step is refused with DiskFullError, an
error of the environment (the sync is retried once other syncs have ended), and the
disk never fills: the pod is not evicted, and the standby does not inherit a full disk.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from modelsync.gitops.budget import BLOCK, blocks

ATTEMPTS = 4  # trims tried before a reservation is refused (others may take the room)


class DiskFullError(Exception):
    """No room in the git cache's budget now: every byte of it is in use by steps that
    are running. An error of the environment: retried, never a verdict on the revision."""


def usage(path: Path) -> int:
    """Bytes `path` and everything under it take on disk (st_blocks, at least a block
    each); 0 when it is not there. Nothing is followed through a symlink."""
    try:
        total = blocks(path.lstat().st_blocks * 512)
    except FileNotFoundError:
        return 0
    for base, dirs, names in os.walk(path, followlinks=False):
        for name in (*dirs, *names):
            with contextlib.suppress(FileNotFoundError):
                total += blocks(os.lstat(os.path.join(base, name)).st_blocks * 512)
    return total


def copy_footprint(sizes: Iterable[int], directories: int) -> int:
    """What copying files of these sizes into `directories` new directories takes."""
    return sum(blocks(size) for size in sizes) + directories * BLOCK


class DiskBudget:
    """Bytes the git cache may hold: what it keeps (by path) and what running steps
    reserved. Thread-safe; one per operator process and cache directory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kept: dict[Path, int] = {}
        self._kept_total = 0
        self._reserved = 0
        self._lock = threading.Lock()

    @property
    def in_use(self) -> int:
        with self._lock:
            return self._kept_total + self._reserved

    def keep(self, path: Path, size: int) -> None:
        """`path` now holds `size` bytes on disk (measured after it was written)."""
        with self._lock:
            self._kept_total += size - self._kept.get(path, 0)
            self._kept[path] = size

    def kept(self, path: Path) -> int:
        with self._lock:
            return self._kept.get(path, 0)

    def forget(self, path: Path) -> None:
        """`path` is gone from the disk (called after it was deleted, not before: until
        then its bytes are still there)."""
        with self._lock:
            self._kept_total -= self._kept.pop(path, 0)

    @contextlib.contextmanager
    def reserve(self, size: int, what: str, trim: Callable[[int], int]) -> Iterator[None]:
        """Room for `size` more bytes while the block runs. `trim(n)` deletes what no
        running step uses, least recently used first, until `n` bytes are freed or
        nothing is left to delete; DiskFullError when the room is not there even then."""
        for _ in range(ATTEMPTS):
            with self._lock:
                over = self._kept_total + self._reserved + size - self.limit
                if over <= 0:
                    self._reserved += size
                    break
            if trim(over) <= 0:
                break
        else:
            over = 1  # trimmed each time, and the room was taken meanwhile each time
        if over > 0:
            raise DiskFullError(
                f"the operator's git cache has no room for {what} ({size} bytes): "
                f"{self.in_use} of its {self.limit} bytes are in use by syncs running now "
                "(--git-cache-max-bytes, chart operator.gitCacheMaxBytes)"
            )
        try:
            yield
        finally:
            with self._lock:
                self._reserved -= size
