"""Benchmark the local cluster: warm start to a schedulable node, idle memory, stop,
and the size of the build cache. `make bench` runs it; figures go to stdout.

    python -m tests.bench.cluster_start [--runs 3] [--idle-seconds 30]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from testcluster import build, launcher


def directory_size(path: Path) -> int:
    total = 0
    for base, _, files in os.walk(path):
        for name in files:
            file = Path(base) / name
            if not file.is_symlink():
                total += file.stat().st_size
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    args = parser.parse_args()

    started = time.monotonic()
    binaries = build.ensure_binaries()
    cache_check = time.monotonic() - started
    stamp = json.loads((binaries.directory / build.STAMP).read_text())

    starts: list[float] = []
    stops: list[float] = []
    memory: dict[str, int] = {}
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="modelsync-bench-") as tmp:
            root = Path(tmp) / "cluster"
            began = time.monotonic()
            cluster = launcher.start(root, binaries, log=io.StringIO(), die_with_parent=True)
            starts.append(time.monotonic() - began)
            if run == args.runs - 1:
                # Idle: no workload, controllers settled.
                time.sleep(args.idle_seconds)
                memory = cluster.memory_bytes()
            began = time.monotonic()
            launcher.stop(root, io.StringIO())
            stops.append(time.monotonic() - began)

    cache = build.cache_root()
    mib = 2**20
    rows = [
        (
            "versions",
            f"kubernetes {stamp['kubernetes']}, etcd {stamp['etcd']}, "
            f"kwok {stamp['kwok']}, helm {stamp['helm']}, {stamp['go']}",
        ),
        ("build of these binaries (recorded)", f"{stamp['seconds']:.0f} s"),
        ("cached-binaries check", f"{cache_check * 1000:.0f} ms"),
        ("binary size", f"{stamp['size'] / mib:.0f} MiB"),
        ("cache: binaries", f"{directory_size(binaries.directory) / mib:.0f} MiB"),
        ("cache: Go build + modules", f"{directory_size(cache / 'go') / mib:.0f} MiB"),
        (
            f"start to schedulable ({args.runs} runs)",
            f"median {statistics.median(starts):.1f} s, max {max(starts):.1f} s",
        ),
        ("stop", f"median {statistics.median(stops):.1f} s"),
    ]
    rows += [
        (f"idle RSS {name}", f"{value / mib:.0f} MiB") for name, value in sorted(memory.items())
    ]
    rows.append(
        (
            f"idle RSS total ({args.idle_seconds:.0f} s idle)",
            f"{sum(memory.values()) / mib:.0f} MiB",
        )
    )
    print("local cluster benchmark")
    for label, value in rows:
        print(f"  {label:<36} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
