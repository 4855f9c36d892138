"""What a revision's archive may write into its snapshot: tarfile's 'data' filter where
Python has it (3.11.4+), and the same checks where it does not (Debian bookworm's
3.11.2, the operator image's python3): both are run here on the same members."""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from modelsync.gitops import fetch

Filter = Callable[[tarfile.TarInfo, str], tarfile.TarInfo | None]
FILTERS: list[Filter] = [fetch.data_filter_311]
if hasattr(tarfile, "data_filter"):
    FILTERS.append(fetch.snapshot_filter)


def member(
    name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o664, link: str = ""
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, link
    return info


@pytest.fixture(params=FILTERS, ids=lambda f: f.__name__)
def check(request: pytest.FixtureRequest) -> Filter:
    chosen: Filter = request.param
    return chosen


def test_files_directories_and_symlinks_are_kept_with_safe_modes(
    check: Filter, tmp_path: Path
) -> None:
    def kept(info: tarfile.TarInfo) -> tarfile.TarInfo:
        checked = check(info, str(tmp_path))
        assert checked is not None, info.name
        return checked

    assert kept(member("models/iris.yaml")).mode == 0o644
    assert kept(member("bin/run", mode=0o4777)).mode == 0o755
    assert kept(member("models", tarfile.DIRTYPE, 0o775)).isdir()
    assert kept(member("/etc/cron.d/x")).name == "etc/cron.d/x"
    # A link out is kept as a link: loading names it with its file.
    link = kept(member("models/x.yaml", tarfile.SYMTYPE, link="/etc/passwd"))
    assert (link.issym(), link.linkname) == (True, "/etc/passwd")


@pytest.mark.parametrize(
    "unsafe",
    [
        member("../outside.yaml"),
        member("models/../../outside.yaml"),
        member("dev/null", tarfile.CHRTYPE),
        member("fifo", tarfile.FIFOTYPE),
    ],
    ids=["dot-dot", "nested dot-dot", "device", "fifo"],
)
def test_members_outside_the_snapshot_or_special_are_refused(
    check: Filter, unsafe: tarfile.TarInfo, tmp_path: Path
) -> None:
    with pytest.raises(tarfile.TarError):
        check(unsafe, str(tmp_path))


def test_nothing_is_written_through_a_symlink_already_extracted(
    check: Filter, tmp_path: Path
) -> None:
    (tmp_path / "snapshot").mkdir()
    (tmp_path / "snapshot" / "out").symlink_to(tmp_path)
    with pytest.raises(tarfile.TarError):
        check(member("out/escaped.yaml"), str(tmp_path / "snapshot"))
