"""crds/ is the one source of the schema; it must agree with the code."""

from __future__ import annotations

from typing import Any

import yaml

from modelsync.api import constants as c
from modelsync.serving import runtimes
from tests.support.paths import REPO
from tools import gen_crds


def schema() -> dict[str, Any]:
    crd = yaml.safe_load((REPO / "crds" / "modeldeployment.yaml").read_text())
    version = crd["spec"]["versions"][0]
    assert crd["spec"]["group"] == c.GROUP
    assert version["name"] == c.VERSION
    found: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return found


def test_generated_crd_is_up_to_date() -> None:
    assert (REPO / "crds" / "modeldeployment.yaml").read_text() == gen_crds.render_crd(), (
        "crds/modeldeployment.yaml is stale: run python tools/gen_crds.py"
    )


def test_runtime_enum_and_scheme_rule_come_from_the_runtime_table() -> None:
    spec = schema()["properties"]["spec"]
    assert spec["properties"]["runtime"]["properties"]["name"]["enum"] == list(runtimes.RUNTIMES)
    rules = [rule["rule"] for rule in spec["x-kubernetes-validations"]]
    assert runtimes.scheme_rule() in rules
    assert runtimes.format_rule() in rules


def test_printer_columns_answer_what_runs() -> None:
    crd = yaml.safe_load((REPO / "crds" / "modeldeployment.yaml").read_text())
    columns = [col["name"] for col in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns == [
        "Model",
        "Version",
        "Serving",
        "Runtime",
        "Ready",
        "RolledBack",
        "Revision",
        "Age",
    ]
    assert crd["spec"]["names"]["shortNames"] == ["md"]
    assert crd["spec"]["names"]["categories"] == ["modelsync"]


SCHEMA_KEYS = {
    "type", "description", "properties", "required", "items", "enum", "default", "format",
    "minimum", "maximum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
    "maxProperties", "additionalProperties", "anyOf", "x-kubernetes-validations",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
}  # fmt: skip


def _walk(node: Any, path: str) -> list[str]:
    if not isinstance(node, dict):
        return []
    bad = [f"{path}: {key}" for key in node if key not in SCHEMA_KEYS]
    for name, child in (node.get("properties") or {}).items():
        bad += _walk(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        bad += _walk(node.get(key), f"{path}[{key}]")
    return bad


def test_schemas_use_only_openapi_keywords() -> None:
    """A comma in an unquoted flow-style description silently makes a new key."""
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            assert _walk(version["schema"]["openAPIV3Schema"], path.name) == []


def test_notify_receiver_events_enum_is_the_notices_the_operator_tells() -> None:
    """A notice kind missing from the enum could never be asked for; one the operator
    does not tell would be accepted and never sent. Every copy of the ModelSync CRD: crds/
    and the chart's (it is written by hand; tools/templates holds only the ModelDeployment's)."""
    copies = [
        *sorted((REPO / "crds").glob("*.yaml")),
        *sorted((REPO / "helm" / "modelsync" / "crds").glob("*.yaml")),
    ]
    checked = []
    for path in copies:
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] != c.MODELSYNC_KIND:
            continue
        for version in crd["spec"]["versions"]:
            spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
            receivers = spec["properties"]["notify"]["properties"]["receivers"]
            events = receivers["items"]["properties"]["events"]
            where = f"{path.relative_to(REPO)} {version['name']}"
            assert events["items"]["enum"] == list(c.NOTICES), where
            assert events["maxItems"] == len(c.NOTICES), where
            checked.append(where)
    assert len(checked) >= 2, checked  # crds/ and the chart's copy
