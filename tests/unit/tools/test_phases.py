"""`make test`'s phases and the table of their times (tools/phases.py)."""

from __future__ import annotations

import pytest

from tools import phases


def test_make_test_prints_a_table_of_phases() -> None:
    text = phases.table([("lint", 12.34, 0), ("real node", 80.0, 1)])
    lines = text.splitlines()
    assert lines[0].split() == ["phase", "seconds", "result"]
    assert lines[1].split() == ["lint", "12.3", "ok"]
    assert lines[2].startswith("real node")
    assert "failed (1)" in lines[2]
    assert lines[-1].split() == ["total", "92.3"]


def test_a_failed_setup_phase_ends_the_run_a_failed_suite_does_not(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = phases.main(["lint=true", "build=exit 3", "--", "unit=true"])
    assert code == 3
    table = capsys.readouterr().out.split("\n\n")[-1]
    assert [line.split()[0] for line in table.splitlines()[1:]] == ["lint", "build", "total"]
    code = phases.main(["build=true", "--", "unit=exit 1", "e2e=true"])
    assert code == 1
    table = capsys.readouterr().out.split("\n\n")[-1]
    assert [line.split()[0] for line in table.splitlines()[1:]] == ["build", "unit", "e2e", "total"]
