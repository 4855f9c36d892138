"""Benchmark the builds of every image the tests make without Docker: the model images
(mlserver, storage-initializer, kserve-custom), the test image, the operator image and
the versitygw object store.

For each: a cold build, in an empty cache directory of its own (`MODELSYNC_CACHE`, which
every builder's cache root follows, so the shared cache is never touched; pip's own cache
off), then the same build again in that directory: the warm time, a cache hit. Each build
runs in a process of its own, so nothing stays in memory between them.

    BENCH_COLD_IMAGES=0 python -m tests.bench.image_builds   # warm only, shared cache

With BENCH_COLD_IMAGES=0 the warm builds use the shared cache (what a test run finds);
the operator image is left out then, because its builder deletes older operator archives
from the cache it builds in (another checkout's included).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testcluster import build
from tests.bench.common import RESULTS, update_results

REPO = Path(__file__).resolve().parents[2]
# In build order: the names `--build NAME` takes.
IMAGES = (
    "mlserver",
    "storage-initializer",
    "kserve-custom",
    "test-image",
    "operator",
    "versitygw",
)
COLD_TIMEOUT = 3600.0

Step = Callable[[], Any]


def _steps(name: str) -> list[tuple[str, Step]]:
    """The build of `name` as timed steps; each step builds on the cache of the ones
    before it, and the last one yields the artifact (a path, or a (path, ref) tuple)."""
    from testcluster import images, modelimages, objectstore, operator_image, wheels

    if name in wheels.IMAGES:
        return [
            ("wheels", lambda: wheels.ensure_wheelhouse(name)),
            ("base", lambda: images.debian_base(modelimages.BASE_PACKAGES)),
            ("venv + archive", lambda: modelimages.model_image(name)),
        ]
    if name == "test-image":
        return [
            ("base", lambda: images.debian_base(("python3",))),
            ("archive", images.http_archive),
        ]
    if name == "operator":
        return [
            ("wheels", lambda: wheels.ensure_wheelhouse(operator_image.NAME)),
            ("base", lambda: images.debian_base(operator_image.package_list())),
            ("venv + wheel + archive", operator_image.operator_image),
        ]
    if name == "versitygw":
        return [("go install", objectstore.ensure_versitygw)]
    raise SystemExit(f"unknown image {name!r}: one of {', '.join(IMAGES)}")


def build_one(name: str) -> dict[str, Any]:
    """Build `name` in this process's cache; seconds per step and the artifact's size."""
    from testcluster import images

    steps: dict[str, float] = {}
    artifact: Any = None
    with build.build_lock(images.images_dir()):
        for step, run in _steps(name):
            started = time.monotonic()
            artifact = run()
            steps[step] = round(time.monotonic() - started, 2)
    path = Path(artifact[0] if isinstance(artifact, tuple) else artifact)
    return {"seconds": round(sum(steps.values()), 2), "steps": steps, "bytes": path.stat().st_size}


def run_build(name: str, cache: Path | None, log: Path) -> dict[str, Any]:
    """`build_one(name)` in a child process, with `cache` as its cache root (None: the
    shared one); its output goes to `log`."""
    env = dict(os.environ)
    if cache is not None:
        env["MODELSYNC_CACHE"] = str(cache)
        env["PIP_NO_CACHE_DIR"] = "1"  # a cold build downloads its wheels again
    with log.open("a") as out:
        done = subprocess.run(
            [sys.executable, "-m", "tests.bench.image_builds", "--build", name],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
            check=False,
            timeout=COLD_TIMEOUT,
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        return {"error": f"exit {done.returncode}; last lines of {log}:\n{tail}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(cold: bool, log_dir: Path) -> dict[str, dict[str, Any]]:
    """Image -> {"cold": ..., "warm": ...} (each seconds, steps, bytes, or an error)."""
    results: dict[str, dict[str, Any]] = {}
    for name in IMAGES:
        log = log_dir / f"{name}.log"
        if cold:
            print(f"[bench] image build: {name}, cold then warm", flush=True)
            cache = Path(tempfile.mkdtemp(prefix=f"modelsync-bench-cache-{name}-"))
            try:
                first = run_build(name, cache, log)
                second = run_build(name, cache, log) if "error" not in first else {}
                results[name] = {"cold": first, "warm": second}
            finally:
                shutil.rmtree(cache, ignore_errors=True)
        elif name == "operator":
            results[name] = {"warm": {"skipped": "only after its cold build"}}
        else:
            print(f"[bench] image build: {name}, warm (shared cache)", flush=True)
            # The first build fills the shared cache if it lacked the image; the second
            # is the cache hit a test run sees.
            run_build(name, None, log)
            results[name] = {"warm": run_build(name, None, log)}
    return results


def rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(image, cold, of which, warm) for the table."""
    table = []
    for name, figures in results.items():
        cold, warm = figures.get("cold") or {}, figures.get("warm") or {}
        size = (cold or warm).get("bytes")
        label = f"{name} ({size / 2**20:.0f} MiB)" if size else name
        table.append((label, _seconds(cold), _steps_text(cold), _seconds(warm)))
    return table


def _seconds(figures: dict[str, Any]) -> str:
    if not figures:
        return "skipped"
    if "skipped" in figures:
        return f"skipped: {figures['skipped']}"
    if "error" in figures:
        return "failed: " + str(figures["error"]).splitlines()[0]
    seconds = float(figures["seconds"])
    return f"{seconds:.1f} s" if seconds >= 10 else f"{seconds:.2f} s"


def _steps_text(figures: dict[str, Any]) -> str:
    steps = figures.get("steps") or {}
    return ", ".join(f"{step} {seconds:.0f} s" for step, seconds in steps.items())


def print_table(results: dict[str, dict[str, Any]]) -> None:
    header = ("image (archive size)", "cold build", "cold, by step", "warm (cache hit)")
    body = rows(results)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *body]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def cold_enabled() -> bool:
    return os.environ.get("BENCH_COLD_IMAGES", "1") not in {"0", "false", "no"}


def main(argv: list[str]) -> int:
    if argv[:1] == ["--build"] and len(argv) == 2:
        print(json.dumps(build_one(argv[1])))
        return 0
    if argv:
        print(f"usage: python -m tests.bench.image_builds [--build {'|'.join(IMAGES)}]")
        return 2
    with tempfile.TemporaryDirectory(prefix="modelsync-bench-logs-") as logs:
        results = measure(cold_enabled(), Path(logs))
        print_table(results)
    update_results("image_builds", results)
    print(f"\nfigures written to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
