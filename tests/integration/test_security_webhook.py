"""Trust boundary: webhook deliveries nobody authenticated cost the operator no
Kubernetes API request, and the ModelSyncs that do exist keep syncing meanwhile.

The port is open to anyone who reaches the Service: a delivery naming a ModelSync that
does not exist must be decided from what the operator already holds (the watch), never
by asking the API server through the operator's one rate limiter."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from modelsync.kube import throttle
from modelsync.runtime import operator
from modelsync.telemetry import metrics
from tests.integration.test_webhook import github_push, post, signature
from tests.support import hookflood
from tests.support.kube import until
from tests.support.paths import REPO
from tests.support.syncs import Syncs, model_yaml

FLOOD = 5_000  # deliveries for names that do not exist
CONCURRENCY = 64  # connections the sender keeps open at once
FLOOD_SECONDS = 20.0  # the sender gives up after this: the test stays bounded
APPLIED_WITHIN = 10.0  # a known ModelSync's pushed commit, meanwhile


def unauthorized() -> float:
    return sum(
        metrics.REGISTRY.get_sample_value(
            "modelsync_webhook_requests_total", {"provider": p, "result": "unauthorized"}
        )
        or 0.0
        for p in ("github", "gitlab", "gitea", "generic")
    )


def push_and_time(syncs: Syncs, runtime: operator.Operator, repo: Any, name: str) -> float:
    """Commit a model, deliver the signed push for `prod`: seconds until it is applied."""
    sha = repo.write(f"{name}.yaml", model_yaml(name)).commit(f"add {name}")
    body = github_push(repo.file_url)
    start = time.monotonic()
    status, answer = post(
        runtime,
        f"github/{syncs.namespace}/prod",
        body,
        {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={signature(body)}"},
    )
    assert status == 202, answer
    syncs.wait_applied("prod", f"main@sha1:{sha}", timeout=APPLIED_WITHIN)
    return time.monotonic() - start


def test_security_webhooks_for_unknown_names_cost_no_api_request(
    syncs: Syncs,
    running_operator: operator.Operator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    done = tmp_path / "pushed"
    syncs.core.create_namespaced_secret(
        syncs.namespace,
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name="webhook"),
            data={"token": base64.b64encode(hookflood.TOKEN.encode()).decode()},
        ),
    )
    repo = syncs.repo("models")
    first = repo.write("iris.yaml", model_yaml("iris")).commit("one")
    syncs.create("prod", repo.file_url, webhookSecretRef={"name": "webhook"})
    syncs.wait_applied("prod", f"main@sha1:{first}")
    unloaded = push_and_time(syncs, running_operator, repo, "ranker")

    # Every request any client of this process makes passes ThrottledRest.request (the
    # operator's rate limiter and its request metric): note those naming a ghost.
    ghostly: list[str] = []
    real = throttle.ThrottledRest.request

    def spied(self: throttle.ThrottledRest, method: str, url: str, *a: Any, **kw: Any) -> Any:
        if hookflood.MARKER in url:
            ghostly.append(f"{method} {url}")
        return real(self, method, url, *a, **kw)

    monkeypatch.setattr(throttle.ThrottledRest, "request", spied)
    before = unauthorized()
    sender = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.hookflood",
            str(running_operator.settings.http_port),
            syncs.namespace,
            str(FLOOD),
            str(CONCURRENCY),
            str(FLOOD_SECONDS),
            str(done),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
    )
    try:
        # Under way (a tenth answered), then a known ModelSync's push, meanwhile: the
        # sender goes on past FLOOD until the push is applied (`done`), within its deadline.
        until("the flood to be under way", lambda: unauthorized() - before >= FLOOD / 10, 10)
        loaded = push_and_time(syncs, running_operator, repo, "scorer")
        still_flooding = sender.poll() is None
        done.touch()
        out, _ = sender.communicate(timeout=FLOOD_SECONDS + 10)
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    result = json.loads(out)
    print(f"unloaded {unloaded:.2f}s, under the flood {loaded:.2f}s; flood {result}")
    assert result["sent"] >= FLOOD, result
    assert result["statuses"] == {"401": result["sent"]}, result
    assert still_flooding, f"the flood ended before the push was applied: {result}"
    assert ghostly == [], f"{len(ghostly)} API requests for unknown names, e.g. {ghostly[:3]}"
