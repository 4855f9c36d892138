"""Every pure module (the import-linter contract) is typed without Any (the mypy override
with disallow_any_explicit): a new pure module cannot join one list and miss the other."""

from __future__ import annotations

import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_pure_modules_are_the_modules_typed_without_any() -> None:
    config = tomllib.loads(PYPROJECT.read_text())
    pure = next(
        contract["source_modules"]
        for contract in config["tool"]["importlinter"]["contracts"]
        if contract["name"].startswith("Pure modules")
    )
    strict = next(
        override["module"]
        for override in config["tool"]["mypy"]["overrides"]
        if override.get("disallow_any_explicit")
    )
    assert sorted(pure) == sorted(strict)
