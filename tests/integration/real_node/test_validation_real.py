"""The inference gate on the real node: a model version that answers wrongly never
takes traffic.

Version 2 of the iris model was trained on shuffled labels: it loads, its server is
healthy, its readiness probe passes — and it answers the samples of spec.validation
wrongly. Its pod waits on the readiness gate, outside its Service, until the
operator has sent it the samples; it fails them, and the rollout is rolled back
like any failed one. A client hammering the Service meanwhile sees only version 1.
A good version 3 passes and takes the traffic. `modelsync test` asks the live
model the same samples through the API server's service proxy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import CoreV1Api

from modelsync.api import constants as c
from testcluster import wheels
from testcluster.objectstore import ObjectStore
from tests.integration.real_node.test_models_real import (
    INFER_BODY,
    MODEL_TIMEOUT,
    Client,
    IrisFromGit,
    failures,
    rolled_back_from,
    service_ip,
)
from tests.support.cluster import LocalCluster, RealNode
from tests.support.gitserver import GitHttpServer
from tests.support.kube import dict_condition
from tests.support.models import ready_on, train_iris

VENV_BIN = Path(sys.executable).parent
SAMPLE = "iris-rows"


@pytest.fixture(scope="module")
def shuffled(
    tmp_path_factory: pytest.TempPathFactory, trained: dict[str, tuple[bytes, list[int]]]
) -> tuple[bytes, list[int]]:
    """A model trained on shuffled labels: it loads and answers, wrongly."""
    path = tmp_path_factory.mktemp("shuffled") / "model.joblib"
    predictions = train_iris(wheels.ensure_host_venv("mlserver"), path, shuffle_seed=0)
    assert predictions != trained["1"][1]
    return path.read_bytes(), predictions


def validation(expected: list[int]) -> dict[str, Any]:
    """One sample: the rows of INFER_BODY (a file beside the manifest), and the answer
    the iris model must give them."""
    return {
        "samples": [
            {
                "name": SAMPLE,
                "path": "/v2/models/iris/infer",
                "bodyFile": "samples/iris-rows.body.json",
                "expect": {"json": [{"path": "$.outputs[0].data", "equals": expected}]},
            }
        ]
    }


def modelsync_test(local: LocalCluster, namespace: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "modelsync"), "test", "iris", "-n", namespace],
        env=local.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def gate_of(local: LocalCluster, namespace: str, version: str) -> list[dict[str, Any]]:
    """The inference gate's condition on each pod of `version`."""
    pods = CoreV1Api(local.api).list_namespaced_pod(
        namespace, label_selector=f"{c.LABEL_MODEL_VERSION}={version}"
    )
    return [
        next(
            (
                {"status": cond.status, "reason": cond.reason}
                for cond in pod.status.conditions or []
                if cond.type == c.CONDITION_VALIDATED
            ),
            {},
        )
        for pod in pods.items
    ]


def test_real_gate_keeps_a_wrong_model_out_of_its_service_and_lets_a_good_one_in(
    local_cluster: LocalCluster,
    real_node: RealNode,
    own_namespace: str,
    crds: list[str],
    git_server: GitHttpServer,
    node_images: dict[str, str],
    node_store: ObjectStore,
    trained: dict[str, tuple[bytes, list[int]]],
    shuffled: tuple[bytes, list[int]],
    tmp_path: Path,
) -> None:
    namespace = own_namespace
    good, right = trained["1"]
    versions = {"1": good, "2": shuffled[0], "3": good}
    iris = IrisFromGit.stored(local_cluster, real_node, namespace, git_server, node_store, versions)
    syncs, models = iris.syncs, iris.models
    iris.repo.write("samples/iris-rows.body.json", INFER_BODY + "\n")

    def commit(version: str, expected: list[int] = right) -> str:
        return iris.commit(version, validation=validation(expected))

    commit("1")
    with iris.served(node_images, tmp_path / "operator.log"):
        assert gate_of(local_cluster, namespace, "1") == [
            {"status": "True", "reason": c.REASON_SAMPLES_PASSED}
        ]
        ip, port = service_ip(local_cluster, namespace, "iris")

        # v2 answers wrongly: stopped at the gate, rolled back; the client sees only v1.
        (tmp_path / "v2").mkdir()
        client = Client(real_node, ip, port, tmp_path / "v2")
        serving = 0
        try:
            client.wait_for(right, timeout=60)
            # Before: the client's first calls, refused until kube-proxy on the node had the
            # new Service's rules (seen in CI). What counts is v2's rollout, from here on.
            serving = len(client.answers())
            commit("2")
            syncs.request("models")
            md = models.wait("iris", rolled_back_from("2"), timeout=MODEL_TIMEOUT)
        finally:
            answers = client.stop()[serving:]
        assert answers
        assert not failures(answers), failures(answers)[:5]
        assert all(a["answer"] == right for a in answers), {json.dumps(a) for a in answers}
        rolled_back = dict_condition(md, c.ROLLED_BACK) or {}
        assert rolled_back["reason"] == c.REASON_SAMPLES_FAILED, rolled_back
        said = rolled_back["message"]
        assert f"sample {SAMPLE} (POST /v2/models/iris/infer " in said, said
        assert f"expected $.outputs[0].data == {json.dumps(right, separators=(',', ':'))}" in said
        assert f"got {json.dumps(shuffled[1], separators=(',', ':'))}" in said, said
        assert md["status"]["history"][0]["result"] == c.HISTORY_ROLLED_BACK
        assert md["status"]["modelVersion"] == "1"
        # The live model (v1) answers git's samples: `modelsync test` passes.
        passed = modelsync_test(local_cluster, namespace)
        assert passed.returncode == 0, passed.stdout + passed.stderr
        assert f"PASS sample {SAMPLE}" in passed.stdout, passed.stdout

        # v3 answers rightly: it passes the gate and takes the traffic.
        commit("3")
        syncs.request("models")
        models.wait("iris", ready_on("3"), timeout=MODEL_TIMEOUT)
        assert gate_of(local_cluster, namespace, "3") == [
            {"status": "True", "reason": c.REASON_SAMPLES_PASSED}
        ]

        # Samples git now states wrongly: the live model fails them, `modelsync test` says so.
        wrong = shuffled[1]
        sha = commit("3", expected=wrong)
        syncs.request("models")

        def wants_wrong(found: dict[str, Any] | None) -> bool:
            annotations = ((found or {}).get("metadata") or {}).get("annotations") or {}
            return sha in str(annotations.get(c.ANNOTATION_REVISION))

        models.wait("iris", wants_wrong, timeout=120)
        failed = modelsync_test(local_cluster, namespace)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert f"FAIL sample {SAMPLE}" in failed.stdout, failed.stdout
        assert "0 of 1 samples passed" in failed.stdout, failed.stdout
