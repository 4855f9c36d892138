"""Ownership and prune as the chart runs the operator: its own account cannot read a
tenant's ConfigMaps (content is applied as the tenant's account), yet a ModelSync must
still see an object that was there before, and still prune what it applied."""

from __future__ import annotations

import secrets
from pathlib import Path

import kubernetes
import pytest
from kubernetes.client import CoreV1Api

from modelsync.api import constants as c
from tests.e2e.test_helm import chart_kubeconfig, helm, install_chart
from tests.integration.conftest import OWN_OPERATOR_PREFIX
from tests.integration.test_security_ownership import config_map
from tests.support.cluster import LocalCluster
from tests.support.gitserver import GitHttpServer, WorkRepo
from tests.support.kube import make_tenant
from tests.support.operatorproc import spawn_operator
from tests.support.syncs import Syncs


def test_security_chart_operator_sees_objects_it_cannot_read_before_taking_or_pruning(
    local_cluster: LocalCluster, namespace: str, tmp_path: Path, tenant_role: dict[str, object]
) -> None:
    core = CoreV1Api(local_cluster.api)
    team = f"{OWN_OPERATOR_PREFIX}{secrets.token_hex(4)}"
    core.create_namespace({"metadata": {"name": team}})
    make_tenant(local_cluster.api, team)
    core.create_namespaced_config_map(
        team, {"metadata": {"name": "legacy"}, "data": {"value": "by-hand"}}
    )
    operator = None
    try:
        install_chart(local_cluster, namespace, f"tenancy.namespaces={{{team}}}", "replicaCount=0")
        kubeconfig = chart_kubeconfig(local_cluster, namespace, tmp_path)
        # The premise: the operator's own account may not read the tenant's ConfigMaps.
        chart_api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        with pytest.raises(kubernetes.client.ApiException) as refused:
            CoreV1Api(chart_api).read_namespaced_config_map("legacy", team)
        assert refused.value.status == 403
        operator = spawn_operator(
            kubeconfig,
            "-n",
            team,
            "--http-port",
            "0",
            "--git-cache-dir",
            str(tmp_path / "cache"),
            "--allow-file-urls",  # the test's repository is a file:// one
            log=(tmp_path / "operator.log").open("wb"),
            die_with_parent=True,
        )
        unused = GitHttpServer(tmp_path)
        unused.server_close()
        (tmp_path / "git").mkdir()
        repo = WorkRepo(tmp_path / "git", "models")
        repo.write("keep.yaml", config_map("keep", "git"))
        repo.write("drop.yaml", config_map("drop", "git"))
        repo.write("legacy.yaml", config_map("legacy", "git"))
        repo.commit("three maps")
        syncs = Syncs(local_cluster, team, unused)
        syncs.create("prod", repo.file_url)
        ms = syncs.wait_failed("prod", c.REASON_OWNERSHIP_CONFLICT)
        assert "legacy.yaml:1" in str(ms["status"]["conditions"])
        assert core.read_namespaced_config_map("legacy", team).data == {"value": "by-hand"}

        sha = repo.remove("legacy.yaml").commit("not legacy")
        again = syncs.request("prod")
        syncs.wait_applied("prod", f"main@sha1:{sha}", again)
        sha = repo.remove("drop.yaml").commit("drop")
        again = syncs.request("prod")
        ms = syncs.wait_applied("prod", f"main@sha1:{sha}", again)
        assert "1 deleted" in str(ms["status"]["conditions"])
        names = {m.metadata.name for m in core.list_namespaced_config_map(team).items}
        assert "drop" not in names
        assert {"keep", "legacy"} <= names
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(10)
        helm(local_cluster, "uninstall", "modelsync", "--namespace", namespace, check=False)
        core.delete_namespace(team)
