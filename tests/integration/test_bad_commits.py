"""Every bad commit of the corpus (tests/fixtures/bad-commits), committed at once, each
to its own ModelSync and namespace on top of a good revision: each is reported with the
very lines `modelsync validate` gives, nothing that serves is touched, and none is
retried in a loop."""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from modelsync.api import constants as c
from modelsync.runtime import operator
from modelsync.telemetry import metrics
from tests.support.cluster import LocalCluster, tenant_namespace
from tests.support.gitserver import GitHttpServer, WorkRepo
from tests.support.kube import dict_condition
from tests.support.metrics import total
from tests.support.syncs import Syncs, model_yaml
from tests.unit.gitops.test_bad_commits import CASES, CORPUS, expected

WINDOW_SECONDS = 30.0
MAX_ATTEMPTS = 3


def served_versions(api: kubernetes.client.ApiClient, namespace: str) -> dict[str, str]:
    """resourceVersion of the good revision's ModelDeployment, Deployment and Service."""
    apps, core = kubernetes.client.AppsV1Api(api), kubernetes.client.CoreV1Api(api)
    objects = kubernetes.client.CustomObjectsApi(api)
    md = objects.get_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.MODELDEPLOYMENT_PLURAL, "good"
    )
    return {
        "ModelDeployment": md["metadata"]["resourceVersion"],
        "Deployment": apps.read_namespaced_deployment("good", namespace).metadata.resource_version,
        "Service": core.read_namespaced_service("good", namespace).metadata.resource_version,
    }


def seen_by(runtime: operator.Operator, namespace: str) -> str:
    """What the in-process operator knows of a ModelSync that never got a status."""
    key = (c.MODELSYNC_KIND, namespace, "prod")
    cached = runtime.cache.get(*key) is not None
    queued = runtime.queue is not None and key in runtime.queue
    return f"the operator has it cached: {cached}, queued or in work: {queued}"


def copy_case(case: str, work: Path) -> None:
    """The files of a case into a work tree; a symlink is committed as the link it is."""
    for source in sorted((CORPUS / case).rglob("*")):
        target = work / source.relative_to(CORPUS / case)
        if source.is_symlink():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source.readlink())
        elif source.is_file() and source.name != "expected.txt":
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)


@pytest.fixture
def case_namespaces(local_cluster: LocalCluster, tenant_role: dict[str, object]) -> Any:
    run = secrets.token_hex(3)
    names = {
        case: tenant_namespace(local_cluster, f"bad-{run}-{i:02d}") for i, case in enumerate(CASES)
    }
    yield names
    core = kubernetes.client.CoreV1Api(local_cluster.api)
    for name in names.values():
        core.delete_namespace(name, propagation_policy="Background")


def test_bad_commits_live_each_reported_with_its_lines_and_nothing_serving_changes(
    local_cluster: LocalCluster,
    git_server: GitHttpServer,
    running_operator: operator.Operator,
    case_namespaces: dict[str, str],
) -> None:
    syncs = {case: Syncs(local_cluster, ns, git_server) for case, ns in case_namespaces.items()}
    repos: dict[str, WorkRepo] = {}
    good: dict[str, str] = {}
    # The good revisions one after another (the setup is not what is judged); the bad
    # ones below all at once.
    for case, sync in syncs.items():
        repos[case] = sync.repo("models")
        good[case] = repos[case].write("good.yaml", model_yaml("good")).commit("good")
        sync.create("prod", repos[case].file_url)
        try:
            sync.wait_applied("prod", f"main@sha1:{good[case]}", timeout=120)
        except AssertionError as error:
            raise AssertionError(f"{error}; {seen_by(running_operator, sync.namespace)}") from None
    before = {case: served_versions(local_cluster.api, ns) for case, ns in case_namespaces.items()}

    bad: dict[str, str] = {}
    for case, repo in repos.items():
        copy_case(case, repo.work)
        bad[case] = repo.commit(f"bad: {case}")
    started = time.monotonic()
    counted = {
        case: total(metrics.SYNCS, namespace=ns, name="prod")
        for case, ns in case_namespaces.items()
    }
    for sync in syncs.values():
        sync.request("prod")

    for case, sync in syncs.items():
        remaining = max(1.0, WINDOW_SECONDS - (time.monotonic() - started))

        def rejected(ms: dict[str, Any] | None, case: str = case) -> bool:
            ready = dict_condition(ms, c.READY) or {}
            status = (ms or {}).get("status") or {}
            return (
                ready.get("reason") == c.REASON_VALIDATION_FAILED
                and status.get("lastAttemptedRevision") == f"main@sha1:{bad[case]}"
            )

        ms = sync.wait("prod", rejected, f"{case} to be rejected", timeout=remaining)
        status = ms["status"]
        assert status["errors"] == expected(case), case
        assert (dict_condition(ms, c.READY) or {})["status"] == "False", case
        assert status["lastAppliedRevision"] == f"main@sha1:{good[case]}", case

    # The rest of the window: no retry loop, nothing serving touched.
    time.sleep(max(0.0, WINDOW_SECONDS - (time.monotonic() - started)))  # a window, not a wait
    for case, ns in case_namespaces.items():
        tried = total(metrics.SYNCS, namespace=ns, name="prod") - counted[case]
        assert 1 <= tried <= MAX_ATTEMPTS, f"{case}: {tried} attempts in {WINDOW_SECONDS:.0f}s"
        assert served_versions(local_cluster.api, ns) == before[case], case
