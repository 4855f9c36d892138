"""The launcher survives what a developer's machine throws at it: a crashed run's
leftovers, and a port taken between choosing it and binding it."""

from __future__ import annotations

import io
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from testcluster import build, launcher
from tests.support.kube import until


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "cluster"
    launcher.stop(tmp_path / "cluster", io.StringIO())


def assert_all_stopped(pids: dict[str, int], root: Path) -> None:
    survivors = {name for name, pid in pids.items() if launcher._owned_pid_alive(pid, root)}
    assert survivors == set(), f"processes left behind: {survivors}"


def test_cluster_start_recovers_from_a_crashed_run(binaries: build.Binaries, root: Path) -> None:
    crashed = launcher.start(root, binaries, nodes=1, die_with_parent=True, log=io.StringIO())
    # The API server dies hard; etcd lives on with its data, the state file stays.
    os.kill(crashed.pids["kube-apiserver"], signal.SIGKILL)
    until(  # a signal is delivered, not obeyed, at once
        "the API server to die of SIGKILL",
        lambda: not launcher._owned_pid_alive(crashed.pids["kube-apiserver"], root),
        10,
    )
    assert launcher.status(root) is None

    log = io.StringIO()
    fresh = launcher.start(root, binaries, nodes=1, die_with_parent=True, log=log)
    assert "clearing the stale cluster" in log.getvalue()
    assert_all_stopped(crashed.pids, root)
    assert fresh.server != crashed.server or fresh.pids != crashed.pids
    assert launcher.status(root) == fresh

    assert launcher.stop(root, io.StringIO()) is True
    assert_all_stopped(fresh.pids, root)
    assert launcher.status(root) is None


def test_cluster_start_retries_when_a_port_is_taken(binaries: build.Binaries, root: Path) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    picks: list[list[int]] = []

    def pick(count: int) -> list[int]:
        ports = launcher.free_ports(count)
        if not picks:
            ports[0] = taken  # etcd's client port, as if another program got there first
        picks.append(ports)
        return ports

    log = io.StringIO()
    try:
        cluster = launcher.start(
            root, binaries, nodes=1, die_with_parent=True, log=log, pick_ports=pick
        )
    finally:
        squatter.close()
    assert len(picks) == 2
    assert "retrying" in log.getvalue()
    assert cluster.ports["etcd-client"] != taken
    assert launcher.status(root) == cluster
