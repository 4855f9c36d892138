from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from testcluster import addresses, launcher, pki


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = launcher.free_ports(6)
    assert len(set(ports)) == 6
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def node(ready: str = "True", taints: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "status": {"conditions": [{"type": "Ready", "status": ready}]},
        "spec": {"taints": taints or []},
    }


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        (node(), True),
        (node(ready="False"), False),
        (node(taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]), False),
        (node(taints=[{"key": "x", "effect": "PreferNoSchedule"}]), True),
        ({"status": {}}, False),
    ],
)
def test_node_schedulable(candidate: dict[str, Any], expected: bool) -> None:
    assert launcher._node_schedulable(candidate) is expected


def test_fake_node_is_managed_by_kwok_and_offers_gpus() -> None:
    manifest = launcher.fake_node("kwok-node-0", "zone-a")
    assert manifest["metadata"]["annotations"][launcher.FAKE_NODE_ANNOTATION] == "fake"
    assert manifest["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    assert int(manifest["status"]["allocatable"]["pods"]) >= 1000  # the sync benchmark
    assert manifest["metadata"]["labels"]["topology.kubernetes.io/zone"] == "zone-a"


def test_kubeconfig_embeds_credentials(tmp_path: Path) -> None:
    created = pki.create(tmp_path / "pki", addresses.SERVICE_IP, addresses.HOST_IP)
    config = yaml.safe_load(launcher.kubeconfig_yaml("https://127.0.0.1:6443", created))
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert config["users"][0]["user"]["client-key-data"]
    assert config["current-context"] == config["contexts"][0]["name"]
    # Keys are private to the user running the cluster.
    assert (created.admin_key.stat().st_mode & 0o777) == 0o600
    assert (created.service_account_key.stat().st_mode & 0o777) == 0o600


def test_state_round_trips(tmp_path: Path) -> None:
    cluster = launcher.Cluster(
        root=tmp_path,
        server="https://127.0.0.1:1",
        kubeconfig=tmp_path / "kubeconfig",
        pids={"etcd": 1},
        ports={"apiserver": 1},
        nodes=["kwok-node-0"],
    )
    cluster.save()
    assert launcher.Cluster.load(tmp_path) == cluster
    (tmp_path / launcher.STATE_FILE).write_text("{not json")
    assert launcher.Cluster.load(tmp_path) is None


def test_only_our_own_processes_are_recognised(tmp_path: Path) -> None:
    ours = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "print('up', flush=True); import time; time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert ours.stdout is not None
        assert ours.stdout.readline() == "up\n"  # exec'd: /proc shows its own command line
        assert launcher._owned_pid_alive(ours.pid, tmp_path)
        # A live process that does not name our root (a recycled pid) is not ours.
        assert not launcher._owned_pid_alive(ours.pid, tmp_path / "other")
    finally:
        ours.kill()
        ours.wait()
    assert not launcher._owned_pid_alive(ours.pid, tmp_path)


def test_stop_without_a_cluster_is_a_no_op(tmp_path: Path) -> None:
    assert launcher.stop(tmp_path) is False
    assert launcher.status(tmp_path) is None
