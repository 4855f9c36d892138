"""The operator as a process of its own (`modelsync run`), for tests, benchmarks and the
demo: what a pod would run, with this checkout's code."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

# Imported here, not in the child: importing between fork and exec can deadlock.
from testcluster.launcher import _die_with_parent
from tests.support.kube import TENANT_ACCOUNT
from tests.support.paths import REPO


def spawn_operator(
    kubeconfig: Path,
    *args: str,
    log: IO[bytes] | int | None = subprocess.DEVNULL,
    detach: bool = False,
    env: Mapping[str, str] | None = None,
    die_with_parent: bool = False,
) -> subprocess.Popen[bytes]:
    """Start `modelsync run --kubeconfig KUBECONFIG ARGS...`; `detach` puts it in a
    session of its own, so it outlives the terminal that started it (and its process
    group, git included, can be killed at once, as a container's); `env` adds to (or
    overrides) the environment, e.g. MODELSYNC_GIT_TIMEOUT_SECONDS; `die_with_parent`
    has it killed when this process dies, so a killed test run leaves none behind."""
    if not any(
        arg.startswith(("--default-service-account", "--apply-as-operator")) for arg in args
    ):
        # Locked down, as a platform runs it (tests.support.kube.make_tenant makes the account).
        args = ("--default-service-account", TENANT_ACCOUNT, *args)
    return subprocess.Popen(
        [sys.executable, "-m", "modelsync", "run", "--kubeconfig", str(kubeconfig), *args],
        env={**os.environ, **(env or {}), "PYTHONPATH": str(REPO / "controller")},
        stdout=log,
        stderr=log,
        start_new_session=detach,
        preexec_fn=_die_with_parent if die_with_parent else None,
    )
