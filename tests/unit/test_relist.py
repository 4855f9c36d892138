"""The periodic list under kopf's watch: which listed ModelSyncs it queues."""

from __future__ import annotations

from typing import Any

from modelsync.api import constants as c
from modelsync.kube.workqueue import WorkQueue
from modelsync.runtime.operator import Operator, pick_up_missed
from modelsync.runtime.settings import OperatorSettings
from modelsync.telemetry import metrics


def modelsync(name: str, *, status: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"namespace": "team", "name": name, **meta}}
    if status is not None:
        body["status"] = status
    return body


def missed(cause: str) -> float:
    value = metrics.REGISTRY.get_sample_value("modelsync_watch_missed_total", {"cause": cause})
    return value or 0.0


def test_a_modelsync_the_watch_never_delivered_is_cached_and_queued() -> None:
    runtime = Operator(OperatorSettings(), queue=WorkQueue())
    before = missed("unknown")
    assert pick_up_missed(runtime, [modelsync("lost")]) == 1
    assert (c.MODELSYNC_KIND, "team", "lost") in runtime.queue  # type: ignore[operator]
    assert runtime.cache.get(c.MODELSYNC_KIND, "team", "lost") is not None
    assert missed("unknown") == before + 1


def test_a_known_modelsync_with_a_status_is_left_to_its_watch() -> None:
    runtime = Operator(OperatorSettings(), queue=WorkQueue())
    known = modelsync("known", status={"conditions": []})
    runtime.cache.put(c.MODELSYNC_KIND, {**known, "kind": c.MODELSYNC_KIND})
    assert pick_up_missed(runtime, [known]) == 0
    assert len(runtime.queue or ()) == 0


def test_a_known_modelsync_never_reconciled_nor_queued_is_queued_once() -> None:
    runtime = Operator(OperatorSettings(), queue=WorkQueue())
    stuck = modelsync("stuck")
    runtime.cache.put(c.MODELSYNC_KIND, {**stuck, "kind": c.MODELSYNC_KIND})
    assert pick_up_missed(runtime, [stuck]) == 1
    # Already queued: the next round leaves it.
    assert pick_up_missed(runtime, [stuck]) == 0


def test_a_modelsync_being_deleted_is_not_brought_back() -> None:
    runtime = Operator(OperatorSettings(), queue=WorkQueue())
    going = modelsync("going", deletionTimestamp="2026-12-01T00:00:00Z")
    assert pick_up_missed(runtime, [going]) == 0
    assert runtime.cache.get(c.MODELSYNC_KIND, "team", "going") is None
