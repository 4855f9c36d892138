"""Canaries that keep capacity (issue 20, part B): counted from one watch on the model's
pods, the pods available never drop below the bound through the steps and the
promotion; an autoscaled model's canary never writes `replicas` on the autoscaler's
target (the API server's audit log and the Deployment's managedFields say who did).

The pods are kwok's `slow-ready` ones: Ready 3 s after they are scheduled, so a
rollout that removed serving pods before their successors were up would be seen."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kubernetes import watch
from kubernetes.client import AppsV1Api, CoreV1Api

from modelsync.api import constants as c
from modelsync.telemetry import metrics
from testcluster import launcher, stages
from tests.support.cluster import LocalCluster
from tests.support.kube import wait_for
from tests.support.metrics import total
from tests.support.models import Models, event_resource, manifest, ready_on, wait_for_event

SLOW = {"labels": {stages.FAULT_LABEL: stages.SLOW_READY}}
HPA_USER = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"


class Availability:
    """The model's pods that are Ready and not terminating, from one list-then-watch:
    the fewest seen at any event, and the most canary pods ever available at once."""

    def __init__(self, core: CoreV1Api, namespace: str, model: str) -> None:
        self.core, self.namespace = core, namespace
        self.selector = f"{c.LABEL_DEPLOYMENT}={model}"
        self.pods: dict[str, tuple[bool, str]] = {}  # name: (available, track)
        self.lowest: int | None = None
        self.most_canary = 0
        self.events = 0
        self.story: list[str] = []
        self._watch = watch.Watch()
        self.stopped = False
        self.broken = ""  # why the one watch did not see everything, if it did not
        self._lock = threading.Lock()

    def _see(self, pods: list[Any], deleted: bool = False) -> None:
        with self._lock:
            for pod in pods:
                conditions = pod.status.conditions or []
                ready = any(x.type == "Ready" and x.status == "True" for x in conditions)
                available = ready and pod.metadata.deletion_timestamp is None and not deleted
                track = (pod.metadata.labels or {}).get(c.LABEL_TRACK, "stable")
                self.pods[pod.metadata.name] = (available, track)
            count = sum(1 for up, _ in self.pods.values() if up)
            canary = sum(1 for up, t in self.pods.values() if up and t == c.TRACK_CANARY)
            self.lowest = count if self.lowest is None else min(self.lowest, count)
            self.most_canary = max(self.most_canary, canary)
            self.story.append(f"{count} ({canary} canary)")

    def start(self) -> None:
        listed = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector)
        self._see(listed.items)
        thread = threading.Thread(
            target=self._follow, args=(listed.metadata.resource_version,), daemon=True
        )
        thread.start()

    def _follow(self, version: str) -> None:
        try:
            for event in self._watch.stream(
                self.core.list_namespaced_pod,
                self.namespace,
                label_selector=self.selector,
                resource_version=version,
                timeout_seconds=600,
            ):
                self.events += 1
                self._see([event["object"]], deleted=event["type"] == "DELETED")
        except Exception as error:  # the stream broke: what it saw is incomplete
            if not self.stopped:
                self.broken = f"the pod watch broke: {error!r}"
        else:
            if not self.stopped:
                self.broken = "the pod watch ended before the test did"

    def stop(self) -> None:
        self.stopped = True
        self._watch.stop()


@contextmanager
def availability(cluster: LocalCluster, namespace: str, model: str) -> Iterator[Availability]:
    seen = Availability(CoreV1Api(cluster.api), namespace, model)
    seen.start()
    try:
        yield seen
    finally:
        seen.stop()


def drift_events(cluster: LocalCluster, namespace: str, name: str) -> list[str]:
    """The notes of the DriftReverted Events posted about model `name`."""
    listed = event_resource(cluster).get(namespace=namespace).to_dict()
    return [
        str(event.get("note") or "")
        for event in listed.get("items") or []
        if event.get("reason") == c.EVENT_DRIFT_REVERTED
        and (event.get("regarding") or {}).get("name") == name
    ]


def canary_gone(apps: AppsV1Api, namespace: str) -> None:
    wait_for(
        apps.list_namespaced_deployment,
        "iris-canary",
        lambda d: d is None,
        namespace=namespace,
        timeout=60,
        describe="the canary Deployment to go after the promotion",
    )


@pytest.mark.parametrize(
    ("weights", "canary_pods"), [([50, 100], 4), ([25, 50], 2)], ids=["50-100", "25-50"]
)
def test_canary_keeps_every_replica_available_through_steps_and_promotion(
    models: Models,
    local_cluster: LocalCluster,
    namespace: str,
    weights: list[int],
    canary_pods: int,
) -> None:
    body = manifest("iris", version="1", replicas=4, podMetadata=SLOW)
    body["spec"]["rollout"] = {
        "strategy": "Canary",
        "progressDeadlineSeconds": 120,
        "steps": [{"weight": w} for w in weights],
    }
    models.create(body)
    models.wait("iris", ready_on("1"), timeout=60)
    apps = AppsV1Api(local_cluster.api)
    with availability(local_cluster, namespace, "iris") as seen:
        assert seen.lowest == 4
        models.patch("iris", {"spec": {"model": {"version": "2"}}})
        models.wait("iris", ready_on("2"), timeout=120)
        canary_gone(apps, namespace)
        wait_for(
            apps.list_namespaced_deployment,
            "iris",
            lambda d: d is not None and (d.status.available_replicas or 0) == 4,
            namespace=namespace,
            timeout=30,
        )
    # The steps did run (the canary served its share), and nothing dropped on the way:
    # replicas 4, maxUnavailable 0 (the default) - the bound is 4.
    assert not seen.broken
    assert seen.most_canary == canary_pods, seen.story
    assert seen.lowest == 4, " -> ".join(seen.story)
    deployment = apps.read_namespaced_deployment("iris", namespace)
    assert deployment.spec.template.metadata.labels[c.LABEL_MODEL_VERSION] == "2"
    # The canary's own resizes of both tracks are planned writes, not drift.
    assert drift_events(local_cluster, namespace, "iris") == []
    assert total(metrics.DRIFT_REVERTED, namespace=namespace, model="iris") == 0


def test_a_hand_scale_of_either_track_during_a_canary_is_reverted_and_reported(
    models: Models, local_cluster: LocalCluster, namespace: str
) -> None:
    body = manifest("iris", version="1", replicas=4)
    body["spec"]["rollout"] = {
        "strategy": "Canary",
        "steps": [{"weight": 25, "pauseSeconds": 3600}, {"weight": 50}],
    }
    models.create(body)
    models.wait("iris", ready_on("1"), timeout=60)
    models.patch("iris", {"spec": {"model": {"version": "2"}}})
    apps = AppsV1Api(local_cluster.api)

    def replicas(name: str, count: int, describe: str) -> None:
        wait_for(
            apps.list_namespaced_deployment,
            name,
            lambda d: (
                d is not None
                and d.spec.replicas == count
                and (d.status.available_replicas or 0) == count
            ),
            namespace=namespace,
            timeout=60,
            describe=describe,
        )

    # The first step, sized by the operator: one canary pod, the stable track down to 3.
    replicas("iris-canary", 1, "one canary pod available")
    replicas("iris", 3, "the stable track sized to 3 of 4")
    assert drift_events(local_cluster, namespace, "iris") == []
    # Someone scales the stable track by hand during the step: put back, and said so.
    local_cluster.run("kubectl", "scale", "deployment/iris", "--replicas=6", "-n", namespace)
    event = wait_for_event(
        local_cluster, namespace, "iris", c.EVENT_DRIFT_REVERTED, "Deployment iris: changed"
    )
    assert event.type == "Warning"
    assert "spec.replicas" in event.note, event.note
    replicas("iris", 3, "the stable track back at 3")
    # And the canary's.
    local_cluster.run("kubectl", "scale", "deployment/iris-canary", "--replicas=3", "-n", namespace)
    event = wait_for_event(
        local_cluster, namespace, "iris", c.EVENT_DRIFT_REVERTED, "Deployment iris-canary: changed"
    )
    assert "spec.replicas" in event.note, event.note
    replicas("iris-canary", 1, "the canary back at 1")
    # Those two edits and nothing else: the canary's own sizing was never drift.
    notes = drift_events(local_cluster, namespace, "iris")
    assert sorted(note.split(":")[0] for note in notes) == [
        "Deployment iris",
        "Deployment iris-canary",
    ], notes
    assert total(metrics.DRIFT_REVERTED, namespace=namespace, model="iris") >= 2


def replica_writes(cluster: LocalCluster, namespace: str, name: str) -> list[tuple[str, str]]:
    """(user, verb/subresource) of every write to Deployment `name` whose body sets
    `spec.replicas`, from the API server's audit log."""
    found: list[tuple[str, str]] = []
    lines = launcher.audit_log(cluster.cluster.root).read_text().splitlines()
    for line in lines:
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if (ref.get("namespace"), ref.get("resource"), ref.get("name")) != (
            namespace,
            "deployments",
            name,
        ):
            continue
        body = event.get("requestObject") or {}
        if "replicas" in (body.get("spec") or {}):
            where = f"{event['verb']}/{ref.get('subresource') or ''}"
            found.append((event["user"]["username"], where))
    return found


def test_autoscaled_canary_never_writes_replicas_on_the_autoscalers_target(
    models: Models, local_cluster: LocalCluster, namespace: str
) -> None:
    body = manifest("iris", version="1", podMetadata=SLOW)
    del body["spec"]["replicas"]
    body["spec"]["autoscaling"] = {"minReplicas": 2, "maxReplicas": 4}
    body["spec"]["resources"] = {"requests": {"cpu": "100m"}}
    body["spec"]["rollout"] = {"strategy": "Canary", "steps": [{"weight": 50}]}
    models.create(body)
    apps = AppsV1Api(local_cluster.api)
    # The autoscaler raises the Deployment (created with none) to its minimum.
    wait_for(
        apps.list_namespaced_deployment,
        "iris",
        lambda d: d is not None and (d.status.available_replicas or 0) == 2,
        namespace=namespace,
        timeout=60,
        describe="the autoscaler to scale iris to its minimum of 2",
    )
    models.wait("iris", ready_on("1"), timeout=60)
    with availability(local_cluster, namespace, "iris") as seen:
        models.patch("iris", {"spec": {"model": {"version": "2"}}})
        models.wait("iris", ready_on("2"), timeout=120)
        canary_gone(apps, namespace)
    assert not seen.broken
    assert seen.most_canary == 2, seen.story  # 50 %: as many canary pods as stable ones
    assert seen.lowest is not None
    assert seen.lowest >= 2, " -> ".join(seen.story)
    writes = replica_writes(local_cluster, namespace, "iris")
    assert (HPA_USER, "update/scale") in writes  # the log does show replica writes
    assert {user for user, _ in writes} == {HPA_USER}, writes
    deployment = apps.read_namespaced_deployment("iris", namespace)
    owners = [
        entry.manager
        for entry in deployment.metadata.managed_fields
        if "f:replicas" in json.dumps((entry.fields_v1 or {}).get("f:spec", {}))
    ]
    assert c.FIELD_MANAGER not in owners, owners
    # The canary, not the autoscaler's target, was what the operator sized.
    assert deployment.spec.template.metadata.labels[c.LABEL_MODEL_VERSION] == "2"
