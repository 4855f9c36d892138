"""Every metric family the operator exports is documented in the README, in one line."""

from __future__ import annotations

from modelsync.telemetry import metrics
from tests.support.paths import REPO

README = REPO / "README.md"


def test_every_metric_is_documented_in_the_readme() -> None:
    documented = {
        line.split("`")[1]
        for line in README.read_text().splitlines()
        if line.startswith("| `modelsync_")
    }
    exported = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in metrics.REGISTRY.collect()
    }
    assert exported == documented
