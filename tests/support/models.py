"""Helpers for ModelDeployment tests: a test namespace's models, and waiting on
their conditions and events."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes.client import CustomObjectsApi
from kubernetes.dynamic import DynamicClient

from modelsync.api import constants as c
from tests.support.cluster import LocalCluster
from tests.support.kube import dict_condition, wait_for, wait_for_items

MD = {"group": c.GROUP, "version": c.VERSION, "plural": c.MODELDEPLOYMENT_PLURAL}

# Rows a real model server is asked about (tests on the real node, `make demo`).
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
# Trains an iris classifier on labels shifted by argv[3] (so two versions answer
# differently), or shuffled with the seed argv[4] if given (a model that learnt nothing,
# as a broken training pipeline makes), saves it with joblib and prints its predictions
# for ROWS.
TRAIN = """
import json, sys, joblib, numpy
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
x, y = load_iris(return_X_y=True)
if len(sys.argv) > 4:
    y = numpy.random.default_rng(int(sys.argv[4])).permutation(y)
model = LogisticRegression(max_iter=1000).fit(x, (y + int(sys.argv[3])) % 3)
joblib.dump(model, sys.argv[1])
print(json.dumps(model.predict(json.loads(sys.argv[2])).tolist()))
"""


def train_iris(
    python: Path, path: Path, shift: int = 0, shuffle_seed: int | None = None
) -> list[int]:
    """Train with `python` (the host venv of the MLServer image's lock, so the model
    loads in the image), save to `path`; the model's predictions for ROWS. With
    `shuffle_seed`, on shuffled labels."""
    shuffle = [] if shuffle_seed is None else [str(shuffle_seed)]
    done = subprocess.run(
        [str(python), "-c", TRAIN, str(path), json.dumps(ROWS), str(shift), *shuffle],
        capture_output=True,
        text=True,
        check=True,
    )
    predictions: list[int] = json.loads(done.stdout)
    return predictions


def manifest(name: str, version: str = "1", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": c.API_VERSION,
        "kind": c.MODELDEPLOYMENT_KIND,
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "iris", "version": version, "uri": "s3://models/iris"},
            "runtime": {"name": "mlserver"},
            "replicas": 2,
        },
    }
    body["spec"].update(spec)
    return body


class Models:
    """ModelDeployments of one test namespace."""

    def __init__(self, cluster: LocalCluster, namespace: str) -> None:
        self.api = CustomObjectsApi(cluster.api)
        self.namespace = namespace

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self.api.create_namespaced_custom_object(
            body=body, namespace=self.namespace, **MD
        )
        return created

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        patched: dict[str, Any] = self.api.patch_namespaced_custom_object(
            name=name, namespace=self.namespace, body=patch, **MD
        )
        return patched

    def list(self, **kwargs: Any) -> Any:
        return self.api.list_namespaced_custom_object(**MD, **kwargs)

    def wait(
        self, name: str, condition: Callable[[Any], bool], timeout: float = 60, describe: str = ""
    ) -> dict[str, Any]:
        found: dict[str, Any] = wait_for(
            self.list,
            name,
            condition,
            namespace=self.namespace,
            timeout=timeout,
            describe=describe or f"ModelDeployment {name} to be {condition.__name__}",
        )
        return found


def ready_on(version: str) -> Callable[[Any], bool]:
    def ready(md: dict[str, Any] | None) -> bool:
        if md is None:
            return False
        status = md.get("status") or {}
        condition = dict_condition(md, c.READY) or {}
        return (
            condition.get("status") == "True"
            and status.get("observedGeneration") == md["metadata"]["generation"]
            and status.get("modelVersion") == version
        )

    ready.__name__ = f"Ready on version {version}"
    return ready


def condition_is(kind: str, status: str, reason: str) -> Callable[[Any], bool]:
    def check(md: dict[str, Any] | None) -> bool:
        condition = dict_condition(md, kind) or {}
        return condition.get("status") == status and condition.get("reason") == reason

    check.__name__ = f"{kind}={status} ({reason})"
    return check


class Event:
    def __init__(self, body: dict[str, Any]) -> None:
        self.reason: str = body.get("reason", "")
        self.note: str = body.get("note", "")
        self.type: str = body.get("type", "")


def event_resource(cluster: LocalCluster) -> Any:
    # The dynamic client: the typed one (kubernetes 37) fails to parse the events other
    # components post without an eventTime.
    return DynamicClient(cluster.api).resources.get(api_version="events.k8s.io/v1", kind="Event")


def wait_for_event(
    cluster: LocalCluster, namespace: str, name: str, reason: str, words: str
) -> Event:
    """Events are posted after the change they report: wait for them, do not expect them."""

    def match(event: dict[str, Any]) -> bool:
        return (
            (event.get("regarding") or {}).get("name") == name
            and event.get("reason") == reason
            and words in (event.get("note") or "")
        )

    found = wait_for_items(
        event_resource(cluster),
        match,
        namespace=namespace,
        describe=f"a {reason} event on {name} saying {words!r}",
    )
    return Event(found)
