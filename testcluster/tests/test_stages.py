from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from testcluster import stages

FIXTURES = Path(__file__).parent / "fixtures"


def load_config() -> dict[str, dict[str, Any]]:
    text = stages.kwok_config((FIXTURES / "kwok-default-stages.yaml").read_text())
    return {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(text)}


def test_faulted_pods_are_kept_out_of_the_default_ready_stage() -> None:
    config = load_config()
    expressions = config["pod-ready"]["spec"]["selector"]["matchExpressions"]
    assert {"key": '.metadata.labels["modelsync.io/kwok-fault"]', "operator": "DoesNotExist"} in (
        expressions
    )
    # The other default stages are passed through unchanged.
    assert config["pod-delete"]["spec"]["next"] == {"delete": True}
    assert "node-initialize" in config


@pytest.mark.parametrize(
    ("stage", "fault"),
    [("modelsync-pod-never-ready", "never-ready"), ("modelsync-pod-crash-loop", "crash-loop")],
)
def test_fault_stages_select_by_the_documented_label(stage: str, fault: str) -> None:
    selector = load_config()[stage]["spec"]["selector"]["matchExpressions"]
    assert {
        "key": '.metadata.labels["modelsync.io/kwok-fault"]',
        "operator": "In",
        "values": [fault],
    } in selector
    assert {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"} in selector


def test_never_ready_pods_run_but_report_not_ready() -> None:
    template = load_config()["modelsync-pod-never-ready"]["spec"]["next"]["statusTemplate"]
    assert "phase: Running" in template
    assert "ready: false" in template
    assert "ready: true" not in template.split("initContainerStatuses")[0]


def test_crash_loop_counts_restarts_and_repeats() -> None:
    stage = load_config()["modelsync-pod-crash-loop"]
    template = stage["spec"]["next"]["statusTemplate"]
    assert "CrashLoopBackOff" in template
    assert "add ( or .restartCount 0 ) 1" in template
    assert stage["spec"]["delay"]["durationMilliseconds"] > 0
    phases = [
        e for e in stage["spec"]["selector"]["matchExpressions"] if e["key"] == ".status.phase"
    ]
    assert phases == [], "a phase condition would stop the stage from repeating"


def test_defaults_without_a_pod_ready_stage_are_refused() -> None:
    with pytest.raises(ValueError, match="no pod-ready stage"):
        stages.kwok_config("kind: Stage\nmetadata: {name: node-initialize}\nspec: {}\n")
