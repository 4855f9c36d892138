"""A ModelSync's Healthy condition: which models of its inventory are not Ready, and
why, in a message short enough for `kubectl get` (the whole list goes to status)."""

from __future__ import annotations

from typing import Any

from modelsync.api import constants as c
from modelsync.gitops.modelhealth import MAX_MESSAGE, assess, model_ready


def md(name: str, ready: str | None, generation: int = 2, observed: int = 2) -> dict[str, Any]:
    conditions = [] if ready is None else [{"type": c.READY, "status": ready, "reason": "X"}]
    return {
        "metadata": {"namespace": "team", "name": name, "generation": generation},
        "status": {"observedGeneration": observed, "conditions": conditions},
    }


def entry(name: str, namespace: str = "team", kind: str = c.MODELDEPLOYMENT_KIND) -> dict[str, str]:
    return {"apiVersion": c.API_VERSION, "kind": kind, "namespace": namespace, "name": name}


def test_a_model_is_ready_only_for_its_current_generation() -> None:
    assert model_ready(md("a", "True")) == (True, "")
    assert model_ready(md("a", "True", generation=3, observed=2)) == (False, "not reconciled yet")
    assert model_ready(md("a", "False")) == (False, "X")
    assert model_ready(md("a", None)) == (False, "not reconciled yet")
    assert model_ready(None) == (False, "not created yet")


def test_health_names_the_models_not_ready_and_ignores_other_kinds_and_unwatched() -> None:
    live = {"a": md("a", "True"), "b": md("b", "False")}
    inventory = [
        entry("a"),
        entry("b"),
        entry("c"),
        entry("svc", kind="Service"),
        entry("elsewhere", namespace="other"),
    ]
    health = assess(inventory, lambda ns, name: live.get(name), lambda ns: ns == "team")
    assert not health.healthy
    assert health.total == 3
    assert health.not_ready == [("team/b", "X"), ("team/c", "not created yet")]
    assert health.message() == "2 of 3 models not Ready: team/b (X), team/c (not created yet)"
    assert health.details() == ["team/b: X", "team/c: not created yet"]


def test_a_sync_with_no_models_is_healthy() -> None:
    health = assess([entry("svc", kind="Service")], lambda ns, name: None, lambda ns: True)
    assert health.healthy
    assert health.message() == "no models to wait for"


def test_the_message_of_many_models_stays_short_and_counts_the_rest() -> None:
    inventory = [entry(f"model-with-a-long-name-{i:03}") for i in range(300)]
    health = assess(inventory, lambda ns, name: None, lambda ns: True)
    message = health.message()
    assert len(message) <= MAX_MESSAGE
    assert message.startswith("300 of 300 models not Ready: team/model-with-a-long-name-000")
    assert message.endswith("more")
    assert len(health.details()) == 300
