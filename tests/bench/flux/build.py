"""Build Flux's source-controller and kustomize-controller from their Go modules, once
per set of pinned versions, for the side-by-side benchmark.

Each controller has a wrapper module under `gobuild/<name>/` that lists it as a
`tool` (its main package is at its module root, so it cannot be imported) and
repeats the `replace` directives of its own go.mod (Go ignores a dependency's).
The versions live in those go.mod files; `go mod tidy` there resolves exactly the
versions each release pins. Binaries are cached under
`~/.cache/modelsync/flux/<versions>-<key>/`, key hashing every build input, and
installed the way testcluster does it: built in a `.partial-<pid>` directory,
renamed into place with a stamp only when both succeeded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from testcluster.build import BuildError, build_lock, cache_root, find_go, go_environment

GOBUILD_DIR = Path(__file__).resolve().parent / "gobuild"
SOURCE = "source-controller"
KUSTOMIZE = "kustomize-controller"
CONTROLLERS = (SOURCE, KUSTOMIZE)
STAMP = "BUILD-COMPLETE.json"
LDFLAGS = "-s -w"  # as Flux releases them: no symbol table, no DWARF


@dataclass(frozen=True)
class FluxBinaries:
    """Where the two controllers can be run from, and the CRDs their releases ship."""

    directory: Path
    versions: dict[str, str]

    @property
    def source_controller(self) -> Path:
        return self.directory / SOURCE

    @property
    def kustomize_controller(self) -> Path:
        return self.directory / KUSTOMIZE


def module(name: str) -> str:
    return f"github.com/fluxcd/{name}"


def pinned_version(name: str) -> str:
    """The version of controller `name` that its wrapper's go.mod requires."""
    text = (GOBUILD_DIR / name / "go.mod").read_text()
    found = re.search(rf"^\s*(?:require\s+)?{re.escape(module(name))} (v\S+)", text, re.MULTILINE)
    if found is None:
        raise BuildError(f"{GOBUILD_DIR / name / 'go.mod'} does not require {module(name)}")
    return found.group(1)


def pinned_versions() -> dict[str, str]:
    return {name: pinned_version(name) for name in CONTROLLERS}


def go_version(go: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [go, "env", "GOVERSION"],
        cwd=GOBUILD_DIR / SOURCE,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(f"`go env GOVERSION` failed: {result.stderr.strip()}")
    return result.stdout.strip()


def build_key(toolchain: str) -> str:
    """A digest of every input that decides what the build produces."""
    digest = hashlib.sha256()
    for name in CONTROLLERS:
        for file in ("go.mod", "go.sum"):
            digest.update(f"{name}/{file}".encode())
            digest.update((GOBUILD_DIR / name / file).read_bytes())
    digest.update(LDFLAGS.encode())
    digest.update(toolchain.encode())
    return digest.hexdigest()[:12]


def is_complete(directory: Path) -> bool:
    try:
        recorded = json.loads((directory / STAMP).read_text())
    except (OSError, ValueError):
        return False
    sizes = recorded.get("sizes") or {}
    return all(
        (directory / name).is_file()
        and os.access(directory / name, os.X_OK)
        and sizes.get(name) == (directory / name).stat().st_size
        for name in CONTROLLERS
    )


def ensure_binaries(log: TextIO = sys.stderr, *, force: bool = False) -> FluxBinaries:
    """The cached controllers, built first when the cache lacks these versions."""
    cache = cache_root()
    env = go_environment(cache)
    go = find_go()
    versions = pinned_versions()
    root = cache / "flux"
    label = f"source-{versions[SOURCE]}-kustomize-{versions[KUSTOMIZE]}"
    final = root / f"{label}-{build_key(go_version(go, env))}"
    if not force and is_complete(final):
        return FluxBinaries(final, versions)
    with build_lock(root):
        if not force and is_complete(final):  # another process built it while we waited
            return FluxBinaries(final, versions)
        for leftover in [*root.glob("*.partial-*"), final]:
            if leftover.exists():
                print(f"[flux] removing unfinished build {leftover}", file=log)
                shutil.rmtree(leftover, ignore_errors=True)
        install(go, env, final, versions, log)
        for old in root.glob("source-*"):
            if old != final and old.is_dir() and ".partial-" not in old.name:
                print(f"[flux] removing superseded build {old.name}", file=log)
                shutil.rmtree(old, ignore_errors=True)
    return FluxBinaries(final, versions)


def install(
    go: str, env: dict[str, str], final: Path, versions: dict[str, str], log: TextIO
) -> None:
    """Build both controllers into a scratch directory, stamp it, rename it into place."""
    scratch = final.with_name(f"{final.name}.partial-{os.getpid()}")
    scratch.mkdir(parents=True)
    started = time.monotonic()
    try:
        for name in CONTROLLERS:
            compile_controller(go, env, name, versions[name], scratch / name, log)
        stamp = {
            **versions,
            "go": go_version(go, env),
            "seconds": round(time.monotonic() - started, 1),
            "sizes": {name: (scratch / name).stat().st_size for name in CONTROLLERS},
        }
        (scratch / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        scratch.rename(final)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    print(f"[flux] built both controllers in {stamp['seconds']:.0f}s into {final}", file=log)


def compile_controller(
    go: str, env: dict[str, str], name: str, version: str, output: Path, log: TextIO
) -> None:
    print(
        f"[flux] building {name} {version} (a first build takes 10-20 minutes on 2 cores; "
        "later ones reuse Go's caches)",
        file=log,
        flush=True,
    )
    command = [go, "build", "-v", "-ldflags", LDFLAGS, "-o", str(output), module(name)]
    run_streaming(command, env, GOBUILD_DIR / name, log, phase=f"compiling {name}")


def run_streaming(
    command: list[str], env: dict[str, str], cwd: Path, log: TextIO, *, phase: str
) -> None:
    """Run a go command at low priority (the machine is shared), reporting progress now
    and then; on failure say what failed and why."""
    lines: list[str] = []
    started = last_report = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: os.nice(10),
    )
    assert process.stdout is not None
    for raw in process.stdout:
        lines.append(raw.rstrip("\n"))
        now = time.monotonic()
        if now - last_report >= 30:
            last_report = now
            print(
                f"[flux] {phase}: {len(lines)} packages ({now - started:.0f}s)",
                file=log,
                flush=True,
            )
    code = process.wait()
    if code != 0:
        tail = "\n".join(lines[-40:])
        raise BuildError(
            f"build step failed (exit {code}) in {cwd}:\n  {' '.join(command)}\n{tail}"
        )


def crd_files(binaries: FluxBinaries) -> list[Path]:
    """The CRDs shipped in each controller's module (config/crd/bases), from Go's module
    cache, downloaded there first if it lacks them."""
    env = go_environment(cache_root())
    found: list[Path] = []
    for name in CONTROLLERS:
        found += sorted(
            (module_dir(name, binaries.versions[name], env) / "config/crd/bases").glob("*.yaml")
        )
    return found


def module_dir(name: str, version: str, env: dict[str, str]) -> Path:
    cached = Path(env["GOMODCACHE"]) / f"{module(name)}@{version}"
    if cached.is_dir():
        return cached
    result = subprocess.run(
        [find_go(), "mod", "download", "-json", f"{module(name)}@{version}"],
        cwd=GOBUILD_DIR / name,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    info = json.loads(result.stdout or "{}")
    if result.returncode != 0 or "Dir" not in info:
        raise BuildError(
            f"cannot download {module(name)}@{version}: {info.get('Error', result.stderr)}"
        )
    return Path(info["Dir"])


if __name__ == "__main__":
    print(ensure_binaries().directory)
