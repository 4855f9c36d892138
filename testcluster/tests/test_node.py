"""The real node's pieces that need no root: its configuration, and the OCI image
archives it imports (built here from plain files; mmdebstrap is not run)."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest

from testcluster import addresses, images
from testcluster import node as nodemod


@pytest.fixture
def node(tmp_path: Path) -> nodemod.Node:
    return nodemod.Node(root=tmp_path, pids={})


def test_kubelet_has_the_settings_this_machine_needs(node: nodemod.Node) -> None:
    config = nodemod.kubelet_config(node)
    assert config["failCgroupV1"] is False
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["cgroupsPerQOS"] is False
    assert config["failSwapOn"] is False
    assert config["evictionHard"] == {}
    assert config["address"] == addresses.NODE_IP
    assert config["registerWithTaints"] == [nodemod.TAINT]
    assert str(config["containerRuntimeEndpoint"]).endswith(str(node.socket))


def test_containerd_state_lives_under_the_cluster_root(node: nodemod.Node) -> None:
    config = tomllib.loads(nodemod.containerd_config(node))
    assert Path(config["root"]).is_relative_to(node.root)
    assert Path(config["state"]).is_relative_to(node.root)
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["sandbox_image"] == images.PAUSE
    assert Path(cri["cni"]["conf_dir"]).is_relative_to(node.root)


def test_pods_get_addresses_of_the_node_range(node: nodemod.Node) -> None:
    plugins: list[dict[str, Any]] = nodemod.cni_config(node)["plugins"]  # type: ignore[assignment]
    (bridge,) = plugins
    (subnet,) = bridge["ipam"]["ranges"][0]
    assert ipaddress.ip_network(subnet["subnet"]) == ipaddress.ip_network(addresses.NODE_POD_CIDR)
    assert Path(bridge["ipam"]["dataDir"]).is_relative_to(node.root)


def test_kube_proxy_leaves_the_hosts_conntrack_settings_alone(node: nodemod.Node) -> None:
    config = nodemod.kube_proxy_config(node)
    assert config["mode"] == "iptables"
    assert config["clusterCIDR"] == addresses.CLUSTER_CIDR
    assert config["conntrack"] == {
        "maxPerCore": 0,
        "min": 0,
        "tcpEstablishedTimeout": "0s",
        "tcpCloseWaitTimeout": "0s",
    }


def test_a_node_needs_root_and_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    reason = nodemod.why_not()
    assert reason is not None
    assert "root" in reason
    assert "\n" not in reason


def _archive(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {
            member.name: tar.extractfile(member).read()  # type: ignore[union-attr]
            for member in tar.getmembers()
            if member.isfile()
        }


def test_image_archive_is_an_oci_layout_containerd_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELSYNC_CACHE", str(tmp_path))
    base = images.files_layer("base", {"/usr/bin/tool": (b"#!/bin/sh\n", 0o755)})
    app = images.files_layer("app", {"/app/serve.py": (images.SERVE_PY, 0o644)})
    config = images.ImageConfig(entrypoint=("python3", "/app/serve.py"))
    archive = images.image_archive("modelsync.local/test:1", [base, app], config)
    files = _archive(archive)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    (entry,) = json.loads(files["index.json"])["manifests"]
    assert entry["annotations"][images.CONTAINERD_NAME] == "modelsync.local/test:1"
    # Every blob is named by its own digest.
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert name.rsplit("/", 1)[1] == hashlib.sha256(data).hexdigest()
    manifest = json.loads(files[f"blobs/sha256/{entry['digest'].removeprefix('sha256:')}"])
    layers = manifest["layers"]
    assert [layer["mediaType"] for layer in layers] == [images.LAYER_MEDIA_TYPE] * 2
    image_config = json.loads(files[f"blobs/sha256/{manifest['config']['digest'][7:]}"])
    # Uncompressed layers: each diff ID is the layer's digest.
    assert image_config["rootfs"]["diff_ids"] == [layer["digest"] for layer in layers]
    assert image_config["config"]["User"] == images.NONROOT
    assert image_config["config"]["User"].split(":")[0].isdigit()


def test_images_share_layers_and_are_cached_by_their_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELSYNC_CACHE", str(tmp_path))
    base = images.files_layer("base", {"/etc/motd": (b"hello\n", 0o644)})
    again = images.files_layer("base", {"/etc/motd": (b"hello\n", 0o644)})
    assert again == base
    first = images.image_archive("modelsync.local/a:1", [base], images.ImageConfig())
    second = images.image_archive("modelsync.local/b:1", [base], images.ImageConfig(cmd=("x",)))
    assert first != second
    shared = f"blobs/sha256/{base.digest.removeprefix('sha256:')}"
    assert shared in _archive(first)
    assert shared in _archive(second)
    mtime = first.stat().st_mtime_ns
    assert images.image_archive("modelsync.local/a:1", [base], images.ImageConfig()) == first
    assert first.stat().st_mtime_ns == mtime  # not written again
    changed = images.files_layer("base", {"/etc/motd": (b"bye\n", 0o644)})
    assert changed.digest != base.digest


def test_a_container_is_known_as_a_real_nodes_by_the_snapshots_under_its_root() -> None:
    ours = "/tmp/pytest-of-root/pytest-539/cluster0/node"
    mountinfo = (
        "140 91 0:63 / / ro,relatime - overlay overlay rw,lowerdir="
        f"{ours}/{nodemod.SNAPSHOTS}1/fs,upperdir={ours}/{nodemod.SNAPSHOTS}4/fs\n"
        "141 140 0:64 / /proc rw,nosuid - proc proc rw\n"
    )
    assert nodemod.runs_on_snapshots(mountinfo, f"{ours}/{nodemod.SNAPSHOTS}")
    assert nodemod.runs_on_snapshots(mountinfo, f"/node/{nodemod.SNAPSHOTS}")
    # Another node of ours, or a containerd of the machine's own: not this node's.
    assert not nodemod.runs_on_snapshots(mountinfo, f"/tmp/other/node/{nodemod.SNAPSHOTS}")
    system = mountinfo.replace(f"{ours}/containerd/root", "/var/lib/containerd")
    assert not nodemod.runs_on_snapshots(system, f"/node/{nodemod.SNAPSHOTS}")
    # Only the root mount counts: a volume from the snapshots elsewhere does not.
    volume = f"150 140 0:70 / /data rw - overlay overlay lowerdir={ours}/{nodemod.SNAPSHOTS}9/fs\n"
    assert not nodemod.runs_on_snapshots(
        "140 91 0:63 / / rw - ext4 /dev/vda rw\n" + volume, f"/node/{nodemod.SNAPSHOTS}"
    )
