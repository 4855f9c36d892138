"""One source for the operator's settings: every field of `OperatorSettings` has a
docstring, a row in the README's *Operator settings* table, and there the `modelsync
run` flag and the chart value that set it — each of which exists (the flag in the
command, the value in values.yaml and passed by the Deployment template to that flag)."""

from __future__ import annotations

import ast
import dataclasses
import itertools
import json
import re
from typing import Any

import yaml

from modelsync.cli import main as cli
from modelsync.runtime.settings import OperatorSettings
from tests.support.paths import REPO

SETTINGS = REPO / "controller" / "modelsync" / "runtime" / "settings.py"
README = REPO / "README.md"
VALUES = REPO / "helm" / "modelsync" / "values.yaml"
SCHEMA = REPO / "helm" / "modelsync" / "values.schema.json"
DEPLOYMENT = REPO / "helm" / "modelsync" / "templates" / "deployment.yaml"
NONE = "—"

# Settings with no flag: the reason each is not a platform team's choice.
NO_FLAG = {
    "retry_seconds": "a tuning of the work queue; tests shorten it in process",
    "watch_server_timeout": "kopf's watch timeout; no deployment needs another",
    "relist_seconds": "a safety net under kopf's watch; tests shorten it in process",
    "http_host": "in a pod the operator listens on every address; tests use loopback",
    "lease_name": "one Lease per release namespace; the name is fixed",
}

# Flags of `modelsync run` that set no operator setting: the reason for each.
NOT_SETTINGS = {
    "--log-format": "how the process logs, set before the settings exist",
    "--log-level": "how the process logs, set before the settings exist",
}


def table() -> dict[str, tuple[str, str]]:
    """setting -> (flag, chart value), from the README's Operator settings table."""
    text = README.read_text()
    section = text[text.index("### Operator settings") :]
    section = section[: section.index("\n## ")]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = (cells[1].strip("`"), cells[2].strip("`"))
    return rows


def docstrings() -> dict[str, str]:
    """Field -> the string literal that follows it in the class body."""
    tree = ast.parse(SETTINGS.read_text())
    body = next(
        node.body
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.name == "OperatorSettings"
    )
    found: dict[str, str] = {}
    for statement, following in itertools.pairwise(body):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            found[statement.target.id] = following.value.value
    return found


def run_flags() -> set[str]:
    return {opt for param in cli.run.params for opt in getattr(param, "opts", [])}


def value_at(values: dict[str, Any], dotted: str) -> bool:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_every_setting_is_documented_once_in_the_readme_table() -> None:
    fields = {f.name for f in dataclasses.fields(OperatorSettings)}
    assert set(table()) == fields


def test_every_setting_has_a_docstring() -> None:
    documented = docstrings()
    missing = [f.name for f in dataclasses.fields(OperatorSettings) if not documented.get(f.name)]
    assert missing == []


def test_every_setting_has_a_run_flag_unless_exempt_with_a_reason() -> None:
    flags = run_flags()
    for setting, (flag, _) in table().items():
        if flag == NONE:
            assert setting in NO_FLAG, f"{setting}: no flag, and no reason in NO_FLAG"
        else:
            assert setting not in NO_FLAG, f"{setting}: has a flag now; drop it from NO_FLAG"
            assert flag in flags, f"{setting}: `modelsync run` has no {flag}"


def test_every_chart_value_exists_and_reaches_its_flag() -> None:
    values = yaml.safe_load(VALUES.read_text())
    template = DEPLOYMENT.read_text()
    for setting, (flag, chart) in table().items():
        if chart == NONE:
            continue
        assert value_at(values, chart), f"{setting}: values.yaml has no {chart}"
        # The Deployment template reads the value (directly or in a range/with over it)
        # and passes it to the setting's flag.
        assert re.search(rf"\.Values\.{re.escape(chart)}\b", template), (
            f"{setting}: the Deployment template never reads .Values.{chart}"
        )
        assert flag in template, f"{setting}: the Deployment template never passes {flag}"


def schema_at(schema: dict[str, Any], dotted: str) -> bool:
    """Whether values.schema.json describes the value at `dotted` ($refs followed)."""
    node: Any = schema
    for part in dotted.split("."):
        while isinstance(node, dict) and "$ref" in node:
            node = schema["definitions"][node["$ref"].removeprefix("#/definitions/")]
        properties = node.get("properties") if isinstance(node, dict) else None
        if not isinstance(properties, dict) or part not in properties:
            return False
        node = properties[part]
    return True


def test_every_run_flag_sets_a_setting_unless_exempt_with_a_reason() -> None:
    used = {flag for flag, _ in table().values()}
    others = {flag for flag in run_flags() if flag.startswith("--") and flag not in used}
    assert others == set(NOT_SETTINGS)


def test_every_chart_value_of_a_setting_is_in_the_values_schema() -> None:
    schema = json.loads(SCHEMA.read_text())
    for setting, (_, chart) in table().items():
        if chart != NONE:
            assert schema_at(schema, chart), f"{setting}: values.schema.json has no {chart}"
