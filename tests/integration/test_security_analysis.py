"""Canary analysis asks only the endpoints the platform allows, and a slow one never
holds up the reconciles of other models (its query runs off the reconcile workers,
under a deadline and a size cap)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelsync.api import constants as c
from tests.integration.test_canary import canary_state
from tests.support.cluster import LocalCluster
from tests.support.kube import dict_condition
from tests.support.models import Models, manifest, ready_on
from tests.support.operatorproc import spawn_operator
from tests.support.promserver import Trickle

WORKERS = 2


@pytest.fixture
def listener() -> Iterator[Trickle]:
    server = Trickle().start()
    yield server
    server.stop()


def canary_model(name: str, url: str) -> dict[str, Any]:
    body = manifest(name, version="1", replicas=2)
    body["spec"]["rollout"] = {
        "strategy": "Canary",
        "progressDeadlineSeconds": 30,
        "steps": [{"weight": 50}],
        "analysis": {
            "prometheusURL": url,
            "query": f"error_rate{{model='{name}'}}",
            "threshold": 0.05,
            "intervalSeconds": 1,
        },
    }
    return body


def test_security_analysis_url_not_allowed_is_refused_before_any_connection(
    models: Models, listener: Trickle
) -> None:
    models.create(canary_model("iris", listener.url + "/prometheus"))
    models.wait("iris", ready_on("1"))
    models.patch("iris", {"spec": {"model": {"version": "2"}}})
    md = models.wait(
        "iris",
        lambda m: "refused before any connection" in str(canary_state(m).get("lastAnalysis")),
        describe="the analysis to be refused",
    )
    assert listener.accepts == 0
    progressing = dict_condition(md, c.PROGRESSING) or {}
    assert progressing.get("reason") == c.REASON_CANARY
    # The status names the setting a platform team would change.
    assert "analysis_endpoints" in progressing["message"]
    assert "--analysis-endpoint" in progressing["message"]
    assert md["status"]["modelVersion"] == "1"  # held, never promoted on no evidence


def test_security_slow_analysis_endpoints_do_not_hold_up_other_models(
    local_cluster: LocalCluster, crds: list[str], own_namespace: str, tmp_path: Path
) -> None:
    slow = [Trickle().start() for _ in range(WORKERS + 2)]
    with (tmp_path / "operator.log").open("wb") as log:
        process = spawn_operator(
            local_cluster.kubeconfig,
            "-n",
            own_namespace,
            "--http-port",
            "0",
            "--workers",
            str(WORKERS),
            *(f"--analysis-endpoint={server.url}" for server in slow),
            log=log,
            die_with_parent=True,
        )
    try:
        models = Models(local_cluster, own_namespace)
        models.create(manifest("other", version="1"))
        for number, server in enumerate(slow):
            models.create(canary_model(f"slow-{number}", server.url))
        for name in ["other", *(f"slow-{n}" for n in range(len(slow)))]:
            models.wait(name, ready_on("1"))
        for number in range(len(slow)):
            models.patch(f"slow-{number}", {"spec": {"model": {"version": "2"}}})
        for number, server in enumerate(slow):
            assert server.wait_accepts(1, timeout=60), (
                f"slow-{number}'s analysis never asked: the workers are held by the other queries"
            )
        # Every slow endpoint is being read now, more of them than there are workers.
        models.patch("other", {"spec": {"model": {"version": "2"}}})
        models.wait("other", ready_on("2"))
        for number in range(len(slow)):
            md = models.api.get_namespaced_custom_object(
                c.GROUP, c.VERSION, own_namespace, c.MODELDEPLOYMENT_PLURAL, f"slow-{number}"
            )
            assert md["status"]["modelVersion"] == "1", "promoted without an answer"
    finally:
        process.kill()
        process.wait()
        for server in slow:
            server.stop()
        print((tmp_path / "operator.log").read_text()[-4000:])
