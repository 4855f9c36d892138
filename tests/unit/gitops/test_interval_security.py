"""A ModelSync's interval has a floor: "0s" would fetch from the git host without pause."""

from __future__ import annotations

import pytest
import yaml

from modelsync.gitops.reconciler import MIN_INTERVAL_SECONDS, interval_seconds
from tests.support.paths import REPO


@pytest.mark.parametrize("text", ["0s", "0ms", "1ms", "4.9s", "0h0m0s"])
def test_security_interval_below_the_floor_is_clamped(text: str) -> None:
    assert interval_seconds(text) == MIN_INTERVAL_SECONDS


@pytest.mark.parametrize(("text", "seconds"), [("5s", 5.0), ("1m30s", 90.0), ("1h", 3600.0)])
def test_security_interval_at_or_above_the_floor_is_kept(text: str, seconds: float) -> None:
    assert interval_seconds(text) == seconds


def test_security_interval_floor_is_the_crds_floor() -> None:
    crd = yaml.safe_load((REPO / "crds" / "modelsync.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = [rule["rule"] for rule in spec["properties"]["interval"]["x-kubernetes-validations"]]
    assert f"duration(self) >= duration('{MIN_INTERVAL_SECONDS:g}s')" in rules
