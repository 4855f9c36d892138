from __future__ import annotations

import subprocess
import sys

import pytest

from modelsync import __version__, cli


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"modelsync {__version__}"


def test_help_names_the_program_as_called() -> None:
    assert cli.program_name("/usr/bin/kubectl-modelsync") == "kubectl modelsync"
    assert cli.program_name("/venv/bin/modelsync") == "modelsync"


def test_module_entry_point_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelsync", "--help"], capture_output=True, text=True, check=True
    )
    assert "GitOps for machine-learning model serving" in result.stdout
