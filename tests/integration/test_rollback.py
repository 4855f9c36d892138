"""Automatic rollback of a failing model revision, on a real cluster with kwok's
failure markers: the old version serves throughout, the failed spec is quarantined
until git changes the model, and the next good version rolls forward."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from typing import Any

import kubernetes
from kubernetes.client import AppsV1Api
from kubernetes.dynamic import DynamicClient

from modelsync.api import constants as c
from modelsync.runtime import operator
from testcluster import stages
from tests.integration.test_modeldeployment import printer_columns
from tests.support.cluster import LocalCluster
from tests.support.kube import dict_condition, wait_for
from tests.support.models import (
    MD,
    Models,
    condition_is,
    manifest,
    ready_on,
    wait_for_event,
)
from tests.support.operatorproc import spawn_operator
from tests.support.syncs import Syncs, model_yaml

DEADLINE = 5


class AvailabilityWatch:
    """Records every availableReplicas the Deployment reports, from a watch, in a thread."""

    def __init__(self, cluster: LocalCluster, namespace: str, name: str) -> None:
        self.seen: list[int] = []
        self._stopped = threading.Event()
        self._watch = kubernetes.watch.Watch()
        self._apps = AppsV1Api(cluster.api)
        self._thread = threading.Thread(target=self._run, args=(namespace, name), daemon=True)

    def _run(self, namespace: str, name: str) -> None:
        try:
            self._follow(namespace, name)
        except Exception:  # the stream is cut when the watch stops
            if not self._stopped.is_set():
                raise

    def _follow(self, namespace: str, name: str) -> None:
        for event in self._watch.stream(
            self._apps.list_namespaced_deployment,
            namespace,
            field_selector=f"metadata.name={name}",
            timeout_seconds=300,
        ):
            self.seen.append(int(event["object"].status.available_replicas or 0))

    def __enter__(self) -> AvailabilityWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopped.set()
        self._watch.stop()


def healthy_v1(models: Models, **rollback: Any) -> dict[str, Any]:
    body = manifest("iris", version="1", replicas=2)
    body["spec"]["rollout"] = {"progressDeadlineSeconds": DEADLINE}
    if rollback:
        body["spec"]["rollback"] = rollback
    models.create(body)
    return models.wait("iris", ready_on("1"))


def broken_v2(fault: str = stages.NEVER_READY) -> dict[str, Any]:
    return {
        "spec": {"model": {"version": "2"}, "podMetadata": {"labels": {stages.FAULT_LABEL: fault}}}
    }


def rolled_back(md: dict[str, Any] | None) -> bool:
    return (dict_condition(md, c.ROLLED_BACK) or {}).get("status") == "True"


def test_a_replicas_only_change_in_git_is_applied_while_rolled_back(
    models: Models, local_cluster: LocalCluster, namespace: str
) -> None:
    healthy_v1(models)
    models.patch("iris", broken_v2())
    models.wait("iris", rolled_back, timeout=DEADLINE + 30, describe="v2 rolled back")
    models.wait("iris", ready_on("1"), describe="version 1 Ready again")

    models.patch("iris", {"spec": {"replicas": 3}})  # only the count: the template is v2's

    def three_on_v1(md: dict[str, Any] | None) -> bool:
        status = (md or {}).get("status") or {}
        return (
            ready_on("1")(md)
            and rolled_back(md)
            and (status.get("replicas"), status.get("readyReplicas")) == (3, 3)
        )

    md = models.wait("iris", three_on_v1, timeout=60, describe="3 replicas of version 1")
    assert md["status"]["servingVersion"] == "1"
    deployment = AppsV1Api(local_cluster.api).read_namespaced_deployment("iris", namespace)
    assert deployment.spec.replicas == 3


def test_rollback_of_a_never_ready_version_keeps_the_old_one_serving(
    models: Models, local_cluster: LocalCluster, namespace: str
) -> None:
    first = healthy_v1(models)
    with AvailabilityWatch(local_cluster, namespace, "iris") as availability:
        models.patch("iris", broken_v2())
        md = models.wait(
            "iris",
            rolled_back,
            timeout=DEADLINE + 30,
            describe="the never-ready version to be rolled back",
        )
        models.wait("iris", ready_on("1"), describe="version 1 Ready again")
    status = md["status"]
    condition = dict_condition(md, c.ROLLED_BACK) or {}
    assert condition["reason"] == c.REASON_PROGRESS_DEADLINE_EXCEEDED
    assert "version 2" in condition["message"]
    assert "rolled back to version 1" in condition["message"]
    assert status["failedRevision"] != first["status"]["specHash"]
    assert status["failedGitRevision"].startswith("spec:")
    assert status["stableSpecHash"] == first["status"]["specHash"]
    assert status["specHash"] == first["status"]["specHash"]
    assert [(h["modelVersion"], h["result"]) for h in status["history"]] == [
        ("2", c.HISTORY_ROLLED_BACK),
        ("1", c.HISTORY_SUCCEEDED),
    ]
    deployment = AppsV1Api(local_cluster.api).read_namespaced_deployment("iris", namespace)
    assert deployment.spec.template.metadata.labels[c.LABEL_MODEL_VERSION] == "1"
    wait_for_event(local_cluster, namespace, "iris", c.EVENT_ROLLED_BACK, "version 2")
    # Old pods served throughout: the Deployment never reported zero available.
    assert availability.seen
    assert min(availability.seen) >= 1, availability.seen


def test_rollback_quarantines_the_failed_spec_until_git_changes_the_model(
    models: Models,
    local_cluster: LocalCluster,
    namespace: str,
    running_operator: operator.Operator,
) -> None:
    healthy_v1(models)
    models.patch("iris", broken_v2())
    models.wait("iris", rolled_back, timeout=DEADLINE + 30)
    models.wait("iris", ready_on("1"))
    apps = AppsV1Api(local_cluster.api)
    generation = apps.read_namespaced_deployment("iris", namespace).metadata.generation

    # A resync does not re-apply the quarantined spec.
    assert running_operator.loop is not None
    asyncio.run_coroutine_threadsafe(running_operator.resync_now(), running_operator.loop).result(
        60
    )
    assert apps.read_namespaced_deployment("iris", namespace).metadata.generation == generation

    # The next change of the model rolls forward.
    models.patch("iris", {"spec": {"model": {"version": "3"}, "podMetadata": None}})
    md = models.wait("iris", ready_on("3"))
    condition = dict_condition(md, c.ROLLED_BACK) or {}
    assert (condition["status"], condition["reason"]) == ("False", c.REASON_SUPERSEDED)
    assert md["status"]["stableSpecHash"] == md["status"]["specHash"]
    assert [h["modelVersion"] for h in md["status"]["history"]] == ["3", "2", "1"]


def test_rollback_of_a_crash_looping_version(models: Models) -> None:
    body = manifest("iris", version="1", replicas=1)
    body["spec"]["rollback"] = {"maxRestarts": 1}
    models.create(body)
    models.wait("iris", ready_on("1"))
    models.patch("iris", broken_v2(stages.CRASH_LOOP))
    md = models.wait("iris", rolled_back, timeout=60)
    condition = dict_condition(md, c.ROLLED_BACK) or {}
    assert condition["reason"] == c.REASON_CRASH_LOOP
    assert "rollback.maxRestarts is 1" in condition["message"]
    models.wait("iris", ready_on("1"))


def test_rollout_failure_without_automatic_rollback_is_recorded(
    models: Models, local_cluster: LocalCluster, namespace: str
) -> None:
    healthy_v1(models, automatic=False)
    models.patch("iris", broken_v2())
    md = models.wait(
        "iris",
        condition_is(c.DEGRADED, "True", c.REASON_PROGRESS_DEADLINE_EXCEEDED),
        timeout=DEADLINE + 30,
    )
    assert not rolled_back(md)
    models.wait(
        "iris",
        lambda m: (
            bool((m or {}).get("status", {}).get("history"))
            and m["status"]["history"][0]["result"] == c.HISTORY_FAILED
        ),
        describe="the failure in the history",
    )
    deployment = AppsV1Api(local_cluster.api).read_namespaced_deployment("iris", namespace)
    assert deployment.spec.template.metadata.labels[c.LABEL_MODEL_VERSION] == "2"
    wait_for_event(
        local_cluster, namespace, "iris", c.EVENT_ROLLOUT_FAILED, "rollback.automatic is off"
    )


def broken_model_yaml(name: str, version: str) -> str:
    return (
        model_yaml(name, version=version, replicas=2)
        + f"""\
  rollout:
    progressDeadlineSeconds: {DEADLINE}
  podMetadata:
    labels:
      {stages.FAULT_LABEL}: {stages.NEVER_READY}
"""
    )


def test_rollback_shows_on_the_modelsync_and_a_git_revert_ends_it(syncs: Syncs) -> None:
    repo = syncs.repo("models")
    healthy = model_yaml("iris", version="1", replicas=2) + (
        f"  rollout:\n    progressDeadlineSeconds: {DEADLINE}\n"
    )
    repo.write("iris.yaml", healthy).write("ranker.yaml", model_yaml("ranker"))
    first = repo.commit("iris 1")
    syncs.create("prod", repo.file_url)
    syncs.wait_applied("prod", f"main@sha1:{first}")
    models = Models(syncs.cluster, syncs.namespace)
    models.wait("iris", ready_on("1"))

    repo.write("iris.yaml", broken_model_yaml("iris", "2"))
    bad = repo.commit("iris 2, broken")
    syncs.request("prod")
    md = models.wait("iris", rolled_back, timeout=DEADLINE + 30)
    assert md["status"]["failedGitRevision"] == f"main@sha1:{bad}"
    # On-call sees both: what git asks for, and what the live Deployment runs.
    md = models.wait(
        "iris",
        lambda m: ((m or {}).get("status") or {}).get("servingRevision") == f"main@sha1:{first}",
        describe="the status to name what serves",
    )
    assert (md["spec"]["model"]["version"], md["status"]["servingVersion"]) == ("2", "1")
    table = syncs.cluster.run("kubectl", "get", "md", "iris", "-n", syncs.namespace).stdout
    columns = printer_columns(table)
    assert (columns["VERSION"], columns["SERVING"], columns["ROLLEDBACK"]) == ("2", "1", "True")
    ms = syncs.wait_failed("prod", c.REASON_ROLLED_BACK)
    assert ms["status"]["lastAppliedRevision"] == f"main@sha1:{bad}"
    message = str((dict_condition(ms, c.READY) or {}).get("message"))
    assert message.endswith("rolled back, not as in git: iris")
    assert len(message) <= 120
    # The whole story: in the history entry (and the model's own RolledBack condition).
    whole = ms["status"]["history"][0]["message"]
    assert "model iris: version 2 (main@sha1:" in whole
    assert "the cluster differs from git" in whole
    # The other model of the same commit is untouched by the rollback.
    assert models.wait("ranker", ready_on("1"))

    reverted = repo.revert()
    token = syncs.request("prod")
    syncs.wait_applied("prod", f"main@sha1:{reverted}", token)
    md = models.wait(
        "iris",
        lambda m: (dict_condition(m, c.ROLLED_BACK) or {}).get("reason") == c.REASON_SUPERSEDED,
        describe="the rollback to be over",
    )
    assert md["status"]["modelVersion"] == "1"


def operator_process(cluster: LocalCluster, namespace: str) -> subprocess.Popen[bytes]:
    return spawn_operator(
        cluster.kubeconfig, "-n", namespace, "--http-port", "0", "--log-level", "WARNING"
    )


def test_rollback_decided_right_after_an_operator_restart_and_only_once(
    local_cluster: LocalCluster, own_namespace: str
) -> None:
    models = Models(local_cluster, own_namespace)
    apps = AppsV1Api(local_cluster.api)
    first = operator_process(local_cluster, own_namespace)
    try:
        healthy_v1(models)
        models.patch("iris", broken_v2())
        # The operator applies version 2, and dies before its deadline has passed.
        wait_for(
            apps.list_namespaced_deployment,
            "iris",
            lambda d: (
                d is not None and (d.spec.template.metadata.labels[c.LABEL_MODEL_VERSION] == "2")
            ),
            namespace=own_namespace,
            timeout=30,
        )
    finally:
        first.kill()
        first.wait(10)
    # The deadline passes while no operator runs.
    wait_for(
        apps.list_namespaced_deployment,
        "iris",
        lambda d: any(
            cond.reason == "ProgressDeadlineExceeded" for cond in (d.status.conditions or [])
        ),
        namespace=own_namespace,
        timeout=DEADLINE + 30,
    )
    assert not rolled_back(
        models.api.get_namespaced_custom_object(name="iris", namespace=own_namespace, **MD)
    )

    second = operator_process(local_cluster, own_namespace)
    try:
        md = models.wait("iris", rolled_back, timeout=30)
        models.wait("iris", ready_on("1"))
    finally:
        second.terminate()
        second.wait(10)
    third = operator_process(local_cluster, own_namespace)
    try:
        # A third start finds the decision in status and does not take it again.
        token = "after-third-start"
        models.patch("iris", {"metadata": {"annotations": {"example.com/poke": token}}})
        models.wait("iris", ready_on("1"))
        history = models.api.get_namespaced_custom_object(
            name="iris", namespace=own_namespace, **MD
        )["status"]["history"]
    finally:
        third.terminate()
        third.wait(10)
    assert [h["result"] for h in history] == [c.HISTORY_ROLLED_BACK, c.HISTORY_SUCCEEDED]
    events = (
        DynamicClient(local_cluster.api)
        .resources.get(api_version="events.k8s.io/v1", kind="Event")
        .get(namespace=own_namespace)
        .to_dict()
    )
    rollbacks = [e for e in events["items"] if e.get("reason") == c.EVENT_ROLLED_BACK]
    assert len(rollbacks) == 1, [e.get("note") for e in rollbacks]
    assert md["status"]["failedRevision"]


def test_rollback_a_failed_spec_brought_back_by_git_is_tried_and_rolled_back_again(
    models: Models,
) -> None:
    healthy_v1(models)
    models.patch("iris", broken_v2())
    models.wait("iris", rolled_back, timeout=DEADLINE + 30)
    models.patch("iris", {"spec": {"model": {"version": "3"}, "podMetadata": None}})
    fixed = models.wait("iris", ready_on("3"))
    assert "failedRevision" not in fixed["status"]
    models.patch("iris", broken_v2())  # the same broken spec again, on purpose
    md = models.wait("iris", rolled_back, timeout=DEADLINE + 30)
    assert [h["result"] for h in md["status"]["history"][:2]] == [
        c.HISTORY_ROLLED_BACK,
        c.HISTORY_SUCCEEDED,
    ]
    assert md["status"]["modelVersion"] == "3"


def test_rollout_with_two_replicas_only_the_leader_acts_and_a_follower_takes_over(
    local_cluster: LocalCluster, own_namespace: str
) -> None:
    from kubernetes.dynamic import DynamicClient as Dynamic

    leases = Dynamic(local_cluster.api).resources.get(
        api_version="coordination.k8s.io/v1", kind="Lease"
    )

    def holder() -> str:
        try:
            return str(
                leases.get(name="modelsync-leader", namespace=own_namespace).to_dict()["spec"][
                    "holderIdentity"
                ]
            )
        except kubernetes.dynamic.exceptions.NotFoundError:
            return ""

    def replica() -> subprocess.Popen[bytes]:
        return spawn_operator(
            local_cluster.kubeconfig,
            "-n",
            own_namespace,
            "--http-port",
            "0",
            "--log-level",
            "WARNING",
            "--leader-elect",
            "--lease-namespace",
            own_namespace,
            "--lease-seconds",
            "4",
        )

    models = Models(local_cluster, own_namespace)
    first = replica()
    second = None
    try:
        models.create(manifest("iris", version="1", replicas=1))
        models.wait("iris", ready_on("1"))
        leader_before = holder()
        assert leader_before.endswith(f"_{first.pid}")
        second = replica()
        models.patch("iris", {"spec": {"model": {"version": "2"}}})
        models.wait("iris", ready_on("2"))
        assert holder() == leader_before  # the follower did not take over a held Lease
        first.kill()  # the leader dies without a word
        first.wait(10)
        models.create(manifest("ranker", version="1", replicas=1))
        models.wait("ranker", ready_on("1"), timeout=60)
        assert holder().endswith(f"_{second.pid}")
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(30)
