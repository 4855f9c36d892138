"""Handles on the local cluster that tests, the benchmarks and the demo share: the
cluster with its programs and API client (`LocalCluster`), a tenant namespace as a
platform team sets one up, and the session's real node (`RealNode`)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import kubernetes
import pytest

from testcluster import build, launcher
from testcluster import node as nodemod
from tests.support.kube import make_tenant

NAMESPACE_LABEL = "modelsync.io/test"


@dataclass(frozen=True)
class LocalCluster:
    """What a test needs to reach the cluster: its state, binaries and an API client."""

    cluster: launcher.Cluster
    binaries: build.Binaries
    api: kubernetes.client.ApiClient

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    def env(self) -> dict[str, str]:
        """An environment in which kubectl, helm and our CLI talk to this cluster."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.binaries.directory}{os.pathsep}{env.get('PATH', '')}"
        # helm keeps caches and repositories here; keep them out of the user's home.
        env.setdefault("HELM_CACHE_HOME", str(self.cluster.root / "helm" / "cache"))
        env.setdefault("HELM_CONFIG_HOME", str(self.cluster.root / "helm" / "config"))
        env.setdefault("HELM_DATA_HOME", str(self.cluster.root / "helm" / "data"))
        return env

    def run(
        self, program: str, *args: str, cwd: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run one of the cluster's programs (kubectl, helm) against it."""
        return subprocess.run(
            [str(self.binaries.path(program)), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
            cwd=cwd,
        )


def tenant_namespace(local_cluster: LocalCluster, name: str) -> str:
    """Namespace `name` as a platform team sets one up for a tenant: the account that
    applies its git content, bound to the chart's tenant ClusterRole."""
    core = kubernetes.client.CoreV1Api(local_cluster.api)
    core.create_namespace(
        kubernetes.client.V1Namespace(
            metadata=kubernetes.client.V1ObjectMeta(name=name, labels={NAMESPACE_LABEL: "true"})
        )
    )
    make_tenant(local_cluster.api, name)
    return name


class RealNode:
    """The session's real node (kubelet, kube-proxy, containerd in a network namespace),
    started on first use and again after a test stopped it."""

    def __init__(self, local: LocalCluster) -> None:
        self.local = local
        self.node: nodemod.Node | None = None

    def ensure(self) -> RealNode:
        reason = nodemod.why_not(self.local.binaries)
        if reason is not None:
            message = f"the real node cannot start here: {reason}"
            # CI must run these tests: a machine that cannot is a failure there.
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        if self.node is None:
            try:
                self.node = nodemod.start(
                    self.local.cluster, self.local.binaries, die_with_parent=True
                )
            except nodemod.NodeError as error:
                pytest.fail(str(error))
            # kubectl lists it beside the kwok nodes.
            self.local.cluster.nodes.append(nodemod.NAME)
        return self

    def stop(self) -> None:
        nodemod.stop(self.local.cluster.root)
        if nodemod.NAME in self.local.cluster.nodes:
            self.local.cluster.nodes.remove(nodemod.NAME)
        self.node = None

    @property
    def name(self) -> str:
        return nodemod.NAME

    def in_netns(self, *command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run `command` in the node's network namespace (where Service IPs work)."""
        assert self.node is not None
        return subprocess.run(
            self.node.netns_exec(*command),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )

    def log_tails(self, lines: int = 20) -> str:
        """The last lines of each component's log, for failure messages."""
        logs = self.local.cluster.root / "node" / "logs"
        return "\n".join(
            f"--- {path.name}:\n{launcher._log_tail(path, lines)}"
            for path in sorted(logs.glob("*.log"))
        )
