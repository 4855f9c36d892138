"""The operator as a process of its own (`modelsync run`), for tests, benchmarks and the
demo: what a pod would run, with this checkout's code."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]


def spawn_operator(
    kubeconfig: Path,
    *args: str,
    log: IO[bytes] | int | None = subprocess.DEVNULL,
    detach: bool = False,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `modelsync run --kubeconfig KUBECONFIG ARGS...`; `detach` puts it in a
    session of its own, so it outlives the terminal that started it; `env` adds to
    (or overrides) the environment, e.g. MODELSYNC_GIT_TIMEOUT_SECONDS."""
    return subprocess.Popen(
        [sys.executable, "-m", "modelsync", "run", "--kubeconfig", str(kubeconfig), *args],
        env={**os.environ, **(env or {}), "PYTHONPATH": str(REPO / "controller")},
        stdout=log,
        stderr=log,
        start_new_session=detach,
    )
