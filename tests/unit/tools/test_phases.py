"""`make test`'s phases and the table of their times (tools/phases.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools import phases


def _names(output: str) -> list[str]:
    table = output.split("\n\n")[-1]
    return [line.split()[0] for line in table.splitlines()[1:]]


def test_make_test_prints_a_table_of_phases() -> None:
    text = phases.table([phases.Row("lint", 12.34, 0), phases.Row("real node", 80.0, 1)])
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
    assert _names(capsys.readouterr().out) == ["lint", "build", "total"]
    code = phases.main(["build=true", "--", "unit=exit 1", "e2e=true"])
    assert code == 1
    assert _names(capsys.readouterr().out) == ["build", "unit", "e2e", "total"]


def test_a_background_phase_runs_niced_while_the_next_phases_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signal, niceness = tmp_path / "unit-ran", tmp_path / "niceness"
    # The build ends only once the unit phase has run: it cannot have run before it.
    build = (
        f"nice > {niceness}; for _ in $(seq 200); do [ -e {signal} ] && echo built && exit 0; "
        "sleep 0.05; done; exit 9"
    )
    code = phases.main(["lint=true", f"&build={build}", f"unit=touch {signal}", "wait", "--"])
    assert code == 0
    output = capsys.readouterr().out
    assert "built" in output  # its log is printed when it ends
    assert _names(output) == ["lint", "unit", "build", "total"]
    assert "ok (background)" in output
    assert int(niceness.read_text()) == min(19, os.nice(0) + phases.BACKGROUND_NICENESS)


def test_a_failed_background_build_ends_the_run_at_its_wait(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = phases.main(["&build=exit 4", "unit=true", "wait", "--", "integration=true"])
    assert code == 4
    assert _names(capsys.readouterr().out) == ["unit", "build", "total"]
    # After `--`, a failed background phase is counted and the suites still run.
    code = phases.main(["--", "&images=exit 5", "integration=true", "wait", "real=true"])
    assert code == 5
    assert _names(capsys.readouterr().out) == ["integration", "images", "real", "total"]
