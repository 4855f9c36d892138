"""Every pure module (the import-linter contract) is typed without Any (the mypy override
with disallow_any_explicit): the contract reads its modules from that override
(tools/purity.py), so a new pure module cannot join one check and miss the other."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from importlinter.domain.contract import InvalidContractOptions

from tools import purity

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = REPO / "pyproject.toml"


def config() -> dict[str, Any]:
    return tomllib.loads(PYPROJECT.read_text())


def test_the_pure_contract_checks_the_modules_typed_without_any() -> None:
    pyproject = config()
    contract = next(
        c for c in pyproject["tool"]["importlinter"]["contracts"] if c["type"] == "pure"
    )
    assert "source_modules" not in contract, "the pure modules are listed in the mypy override"
    checked = purity.PureContract("pure", {}, {k: v for k, v in contract.items() if k != "type"})
    strict = next(
        override["module"]
        for override in pyproject["tool"]["mypy"]["overrides"]
        if override.get("disallow_any_explicit") and "modelsync.api.manifest" in override["module"]
    )
    assert sorted(str(module) for module in vars(checked)["source_modules"]) == sorted(strict)


def test_every_pure_module_exists() -> None:
    for module in purity.pure_modules(config()):
        path = REPO / "controller" / Path(*module.split("."))
        assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), module


def test_a_wildcard_override_is_no_list_of_pure_modules() -> None:
    overrides = [
        {"module": ["modelsync.gitops.*"], "disallow_any_explicit": True},
        {"module": ["modelsync.api.manifest"], "disallow_any_explicit": True},
        {"module": ["kubernetes"], "ignore_missing_imports": True},
    ]
    found = purity.pure_modules({"tool": {"mypy": {"overrides": overrides}}})
    assert found == ["modelsync.api.manifest"]


def test_no_list_or_two_lists_is_a_configuration_error() -> None:
    one = {"module": ["modelsync.api.manifest"], "disallow_any_explicit": True}
    for overrides in ([], [one, one]):
        with pytest.raises(purity.ConfigError):
            purity.pure_modules({"tool": {"mypy": {"overrides": overrides}}})


def test_the_pure_contract_refuses_a_list_of_its_own() -> None:
    with pytest.raises(InvalidContractOptions):
        purity.PureContract(
            "pure", {}, {"forbidden_modules": ["time"], "source_modules": ["modelsync.api"]}
        )
