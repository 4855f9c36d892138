"""The pure modules, listed once: the import-linter contract type `pure` (pyproject's
`contract_types`) is a forbidden contract whose source modules are read from the mypy
override that types those modules without Any, so a module joins both checks, or
neither, by one line in that override.

That override is the one that sets `disallow_any_explicit` and names its modules one by
one (a wildcard override, such as one for a whole subpackage, is a typing choice, not a
list of pure modules); anything but exactly one such override is a configuration error.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.domain.contract import InvalidContractOptions

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


class ConfigError(ValueError):
    """pyproject.toml does not have exactly one override listing the pure modules."""


def pure_modules(config: dict[str, Any]) -> list[str]:
    """The modules of the mypy override that lists the pure modules (see above)."""
    found = [
        override["module"]
        for override in config.get("tool", {}).get("mypy", {}).get("overrides", [])
        if override.get("disallow_any_explicit")
        and isinstance(override.get("module"), list)
        and not any("*" in module for module in override["module"])
    ]
    if len(found) != 1:
        raise ConfigError(
            f"{len(found)} mypy overrides set disallow_any_explicit and name their modules "
            "one by one; the pure modules are one such override"
        )
    return list(found[0])


class PureContract(ForbiddenContract):
    """A forbidden contract of the pure modules; it takes every option of one but
    `source_modules`, which is the mypy override's list."""

    def __init__(
        self, name: str, session_options: dict[str, Any], contract_options: dict[str, Any]
    ) -> None:
        if "source_modules" in contract_options:
            raise InvalidContractOptions(
                {"source_modules": "the pure modules are the mypy override's; list them there"}
            )
        try:
            modules = pure_modules(tomllib.loads(PYPROJECT.read_text()))
        except ConfigError as error:
            raise InvalidContractOptions({"source_modules": str(error)}) from None
        super().__init__(name, session_options, {**contract_options, "source_modules": modules})
