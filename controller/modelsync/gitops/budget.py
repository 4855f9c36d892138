"""Fetch, bounded: whether a revision's files fit the snapshot byte budget. Pure.

A revision is measured before a byte of it is written to a snapshot, from what
git says without reading a blob: `git ls-tree -r -l` (every blob's path and
size) and `git rev-list --objects --missing=print` (the blobs a filtered fetch
left out, which are larger than the budget by construction). A revision whose
files add up to more than the budget, or that holds one file larger than it,
is refused as a whole, with a message naming the files, their sizes, the limit
and the setting that raises it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

MAX_REVISION_BYTES = 100 << 20  # 100 MiB, Flux's default artifact limit
# Files in one revision, at most: each costs an inode and a block on disk whatever its
# size, and a listing of millions is itself a burden. load reads 10,000 under spec.path.
MAX_REVISION_FILES = 100_000
SETTING = "--max-revision-bytes (Helm value operator.maxRevisionBytes)"
SHOWN = 3  # files named in a refusal; the largest first
BLOCK = 4096  # what a file or directory costs on disk at least: an inode and a block
DIRECTORY_ENTRY = 16  # bytes a directory grows by for each name it holds, besides the name


@dataclass(frozen=True)
class Blob:
    """One file of a revision: its path from the repository root, and its size in bytes,
    or None when the blob is not in the local repository (a filtered fetch left it out)."""

    path: str
    size: int | None


def parse_ls_tree(records: Iterable[str], missing: frozenset[str] = frozenset()) -> Iterator[Blob]:
    """The blobs of `git ls-tree -r -z [-l]` output, one NUL-separated record each;
    `missing` marks the blobs absent from the repository (their size None). Without -l (a
    listing that must not read missing blobs, which then decide alone) other sizes are 0."""
    for record in records:
        meta, tab, path = record.partition("\t")
        fields = meta.split()
        if not tab or len(fields) < 3 or fields[1] != "blob":
            continue  # trees are listed with -t only; submodules (commit) have no content
        oid = fields[2]
        size = int(fields[3]) if len(fields) > 3 and fields[3].isdigit() else 0
        yield Blob(path, None if oid in missing else size)


def blocks(size: int) -> int:
    """Bytes a file of `size` bytes takes on disk: whole blocks, at least one."""
    return max(BLOCK, -(-size // BLOCK) * BLOCK)


@dataclass
class Footprint:
    """What a revision takes on disk once written, summed while its listing is read (by
    `refusal`, which reads it once): each file's blocks, each directory's block, and
    the names directories hold."""

    files: int = 0
    directories: set[str] = field(default_factory=set)

    def count(self, blobs: Iterable[Blob]) -> Iterator[Blob]:
        for blob in blobs:
            parent, _, name = blob.path.rpartition("/")
            self.files += blocks(blob.size or 0) + DIRECTORY_ENTRY + len(name)
            while parent and parent not in self.directories:
                self.directories.add(parent)
                parent = parent.rpartition("/")[0]
            yield blob

    @property
    def bytes(self) -> int:
        return self.files + (len(self.directories) + 1) * BLOCK


def parse_missing(lines: Iterable[str]) -> frozenset[str]:
    """Object ids `git rev-list --objects --missing=print` marks as missing (`?<oid>`)."""
    return frozenset(line[1:].split()[0] for line in lines if line.startswith("?") and line[1:])


def refusal(blobs: Iterable[Blob], limit: int, max_files: int = MAX_REVISION_FILES) -> str | None:
    """Why a revision of these blobs may not become a snapshot, or None if it fits.
    Reads `blobs` once, keeping only totals and the few it names (a listing can be long)."""
    files = total = 0
    largest: list[tuple[int, str]] = []  # a heap of the SHOWN largest (size, path)
    too_big: list[tuple[int, str]] = []
    absent: list[str] = []
    for blob in blobs:
        files += 1
        if files > max_files:
            return (
                f"the revision has more than {max_files} files; keep generated or vendored "
                "trees out of the repository the operator reads"
            )
        if blob.size is None:
            absent.append(blob.path)
            continue
        total += blob.size
        if blob.size > limit:
            too_big.append((blob.size, blob.path))
        heapq.heappush(largest, (blob.size, blob.path))
        if len(largest) > SHOWN:
            heapq.heappop(largest)
    if absent:
        absent.sort()
        more = f" (and {len(absent) - SHOWN} more)" if len(absent) > SHOWN else ""
        one = len(absent) == 1
        return (
            f"{', '.join(absent[:SHOWN])}{more} {'is' if one else 'are'} larger than the "
            f"limit of {_bytes(limit)} for a revision (the fetch left "
            f"{'it' if one else 'them'} out); {_fix()}"
        )
    if too_big:
        too_big.sort(key=lambda item: (-item[0], item[1]))
        named = ", ".join(f"{path} is {_bytes(size)}" for size, path in too_big[:SHOWN])
        more = f" (and {len(too_big) - SHOWN} more)" if len(too_big) > SHOWN else ""
        return f"{named}{more}: larger than the limit of {_bytes(limit)} for a revision; {_fix()}"
    if total > limit:
        named = ", ".join(
            f"{path} {_bytes(size)}" for size, path in sorted(largest, key=lambda i: (-i[0], i[1]))
        )
        return (
            f"the revision's {files} files add up to {_bytes(total)}, over the limit of "
            f"{_bytes(limit)} (largest: {named}); {_fix()}"
        )
    return None


def too_large_fetch(limit: int) -> str:
    """Why a fetch cut off for its size is refused (the server did not name the files)."""
    return (
        f"the limit is {_bytes(limit)} for a revision, and this server does not leave "
        f"larger files out of a fetch (git's uploadpack.allowFilter); {_fix()}"
    )


def _fix() -> str:
    return (
        "keep large files out of the repository (model weights belong in object storage, "
        f"named by spec.model.uri), or raise the limit with {SETTING}"
    )


def _bytes(size: int) -> str:
    """Exact bytes, and a readable figure beside them: '314572800 bytes (300.0 MiB)'."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            return f"{size} bytes ({size / (1 << shift):.1f} {unit})"
    return f"{size} bytes"
