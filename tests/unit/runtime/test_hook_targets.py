"""What the webhook receiver knows of the ModelSyncs, from their watch: every shard's,
in the watched namespaces only, gone when they are."""

from __future__ import annotations

from typing import Any

from modelsync.api import constants as c
from modelsync.runtime import operator
from modelsync.runtime.settings import OperatorSettings


def event(namespace: str, name: str, type: str = "ADDED", shard: str = "") -> operator.Event:
    labels = {c.LABEL_SHARD: shard} if shard else {}
    body: dict[str, Any] = {
        "metadata": {"namespace": namespace, "name": name, "labels": labels},
        "spec": {"repo": {"url": "https://git.example/models"}},
    }
    return operator.Event(c.MODELSYNC_KIND, type, body, namespace, name)


def test_every_shard_is_known_in_the_watched_namespaces_only() -> None:
    runtime = operator.Operator(OperatorSettings(namespaces=("team-*",), shard="a"))
    operator.on_modelsync(runtime, event("team-x", "ours", shard="a"))
    operator.on_modelsync(runtime, event("team-x", "other-shard", shard="b"))
    operator.on_modelsync(runtime, event("elsewhere", "prod", shard="a"))
    assert runtime.webhook_target("team-x", "ours")[0]
    known, target = runtime.webhook_target("team-x", "other-shard")
    assert known
    assert target is not None
    assert target["metadata"]["labels"] == {c.LABEL_SHARD: "b"}
    assert runtime.webhook_target("elsewhere", "prod") == (False, None)
    assert runtime.webhook_target("team-x", "nosuch") == (False, None)
    # Only its own shard's goes to the cache the reconcilers read.
    assert runtime.cache.names(c.MODELSYNC_KIND) == [("team-x", "ours")]
    operator.on_modelsync(runtime, event("team-x", "other-shard", "DELETED", shard="b"))
    assert runtime.webhook_target("team-x", "other-shard") == (False, None)
