"""The benchmarks' and the write budget's reader of the API server's audit log, across
its rotations (--audit-log-maxsize, one backup kept)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.audit import AuditLog


def write(path: Path, *names: str) -> None:
    with path.open("a") as file:
        for name in names:
            event = {"verb": "create", "objectRef": {"resource": "services", "name": name}}
            file.write(json.dumps(event) + "\n")


def rotate(path: Path, stamp: str) -> None:
    for old in path.parent.glob("audit-*.log"):
        old.unlink()  # one backup kept
    path.rename(path.parent / f"audit-{stamp}.log")
    path.touch()


def test_writes_since_a_mark_are_read_across_one_rotation(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    write(log.path, "before")
    mark = log.mark()
    write(log.path, "a", "b")
    rotate(log.path, "1")
    write(log.path, "c")
    assert [w.name for w in log.since(mark)] == ["a", "b", "c"]
    assert not log.lost


def test_a_second_rotation_is_said_and_never_read_mid_line(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    write(log.path, "before", "x" * 40)
    mark = log.mark()
    write(log.path, "a")
    rotate(log.path, "1")
    write(log.path, "b", "c", "d")  # longer than the mark: an offset in it is mid-line
    rotate(log.path, "2")
    write(log.path, "e", "f", "g", "h")
    assert [w.name for w in log.since(mark)] == ["b", "c", "d", "e", "f", "g", "h"]
    assert log.lost
