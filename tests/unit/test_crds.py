"""crds/ is the one source of the schema; it must agree with the code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from modelsync import constants as c
from modelsync import runtimes
from tools import gen_crds

REPO = Path(__file__).resolve().parents[2]


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


def test_printer_columns_answer_what_runs() -> None:
    crd = yaml.safe_load((REPO / "crds" / "modeldeployment.yaml").read_text())
    columns = [col["name"] for col in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["Model", "Version", "Runtime", "Ready", "Revision", "Age"]
    assert crd["spec"]["names"]["shortNames"] == ["md"]
    assert crd["spec"]["names"]["categories"] == ["modelsync"]
