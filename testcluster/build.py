"""Build the local cluster's binaries from Go modules, once per set of pinned versions.

The result is one multi-call binary (`gobuild/main.go`) plus a symlink per
program, cached under `~/.cache/modelsync/cluster/<kubernetes>-<key>/`, where
the key hashes everything that decides the output (go.mod, go.sum, main.go,
linker flags, Go version). A build happens in a scratch directory that is
renamed into place only when it succeeded, so an interrupted build leaves
nothing that looks finished; the next run sweeps it away and builds again.
Go's own caches live beside it, so a rebuild after a version bump is cheap.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from testcluster import versions

GOBUILD_DIR = Path(__file__).resolve().parent / "gobuild"
BINARY = "kubecluster"
# The pod sandbox ("pause") image's one static binary, built beside the multi-call one.
PAUSE = "pause"
STAMP = "BUILD-COMPLETE.json"
MIN_GO = (1, 21)  # the first Go that can fetch a newer toolchain by itself (GOTOOLCHAIN)


class BuildError(RuntimeError):
    """The binaries could not be built; the message says what to do."""


@dataclass(frozen=True)
class Binaries:
    """Where each program of the local cluster can be run from."""

    directory: Path

    def path(self, program: str) -> Path:
        return self.directory / program

    @property
    def etcd(self) -> Path:
        return self.path("etcd")

    @property
    def kube_apiserver(self) -> Path:
        return self.path("kube-apiserver")

    @property
    def kube_controller_manager(self) -> Path:
        return self.path("kube-controller-manager")

    @property
    def kube_scheduler(self) -> Path:
        return self.path("kube-scheduler")

    @property
    def kubelet(self) -> Path:
        return self.path("kubelet")

    @property
    def kube_proxy(self) -> Path:
        return self.path("kube-proxy")

    @property
    def kubectl(self) -> Path:
        return self.path("kubectl")

    @property
    def kwok(self) -> Path:
        return self.path("kwok")

    @property
    def helm(self) -> Path:
        return self.path("helm")

    @property
    def multicall(self) -> Path:
        return self.path(BINARY)

    @property
    def pause(self) -> Path:
        return self.path(PAUSE)


def cache_root() -> Path:
    """`$MODELSYNC_CACHE`, else `$XDG_CACHE_HOME/modelsync`, else `~/.cache/modelsync`."""
    explicit = os.environ.get("MODELSYNC_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "modelsync"


def go_environment(cache: Path) -> dict[str, str]:
    """The environment every `go` command of ours runs in."""
    env = dict(os.environ)
    env.update(
        {
            "GOCACHE": str(cache / "go" / "build"),
            "GOMODCACHE": str(cache / "go" / "mod"),
            # Pure-Go binaries, as Kubernetes releases them: no C compiler needed.
            "CGO_ENABLED": "0",
            "GOFLAGS": "-mod=readonly -trimpath",
        }
    )
    # An older local Go fetches the toolchain go.mod asks for, through the module proxy.
    env.setdefault("GOTOOLCHAIN", "auto")
    return env


def find_go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError(
            "the Go toolchain is not installed (no `go` on PATH): "
            f"install Go {MIN_GO[0]}.{MIN_GO[1]} or newer (https://go.dev/dl/), then run again"
        )
    return go


def go_version(go: str, env: dict[str, str]) -> str:
    """The version of the toolchain that will build gobuild/ (after any GOTOOLCHAIN switch)."""
    result = subprocess.run(
        [go, "env", "GOVERSION"],
        cwd=GOBUILD_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(
            f"`go env GOVERSION` failed in {GOBUILD_DIR}: {result.stderr.strip()}\n"
            f"install Go {MIN_GO[0]}.{MIN_GO[1]} or newer, or check that the Go module proxy "
            "is reachable (GOTOOLCHAIN=auto downloads the toolchain go.mod asks for)"
        )
    return result.stdout.strip()


def build_key(toolchain: str) -> str:
    """A digest of every input that decides what the build produces."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go", "pause/main.go"):
        digest.update(name.encode())
        digest.update((GOBUILD_DIR / name).read_bytes())
    digest.update(versions.ldflags().encode())
    digest.update(toolchain.encode())
    return digest.hexdigest()[:12]


def is_complete(directory: Path) -> bool:
    stamp = directory / STAMP
    if not stamp.is_file():
        return False
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    binary = directory / BINARY
    return (
        binary.is_file()
        and os.access(binary, os.X_OK)
        and recorded.get("size") == binary.stat().st_size
        and (directory / PAUSE).is_file()
        and all((directory / program).exists() for program in versions.PROGRAMS)
    )


@contextlib.contextmanager
def build_lock(root: Path) -> Iterator[None]:
    """One build at a time per cache, across processes (two test runs, a demo and a test)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / "build.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


Compiler = Callable[[str, dict[str, str], Path, str, TextIO], None]


def ensure_binaries(
    log: TextIO = sys.stderr, *, force: bool = False, compiler: Compiler | None = None
) -> Binaries:
    """Return the cached binaries, building them first when the cache lacks this version.

    `compiler` writes the multi-call binary into a directory; tests of the cache
    logic pass a quick one, everything else uses `compile_multicall`."""
    compiler = compiler or compile_multicall
    cache = cache_root()
    env = go_environment(cache)
    go = find_go()
    toolchain = go_version(go, env)
    clusters = cache / "cluster"
    final = clusters / f"{versions.KUBERNETES}-{build_key(toolchain)}"
    if not force and is_complete(final):
        return Binaries(final)
    with build_lock(clusters):
        if not force and is_complete(final):  # another process built it while we waited
            return Binaries(final)
        sweep_unfinished(clusters, log)
        if final.exists():
            print(f"[cluster] removing unfinished build {final}", file=log)
            shutil.rmtree(final)
        scratch = clusters / f"{final.name}.partial-{os.getpid()}"
        scratch.mkdir(parents=True)
        started = time.monotonic()
        try:
            compiler(go, env, scratch, toolchain, log)
            for program in versions.PROGRAMS:
                (scratch / program).symlink_to(BINARY)
            stamp = {
                "kubernetes": versions.KUBERNETES,
                "etcd": versions.ETCD,
                "kwok": versions.KWOK,
                "helm": versions.HELM,
                "go": toolchain,
                "seconds": round(time.monotonic() - started, 1),
                "size": (scratch / BINARY).stat().st_size,
            }
            (scratch / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
            scratch.rename(final)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        remove_superseded(clusters, keep=final, log=log)
        print(
            f"[cluster] built {versions.KUBERNETES} binaries in {stamp['seconds']:.0f}s "
            f"into {final}",
            file=log,
        )
        return Binaries(final)


def sweep_unfinished(clusters: Path, log: TextIO) -> None:
    """Remove scratch directories left by builds that were interrupted (we hold the lock)."""
    for leftover in clusters.glob("*.partial-*"):
        print(f"[cluster] removing interrupted build {leftover}", file=log)
        shutil.rmtree(leftover, ignore_errors=True)


def remove_superseded(clusters: Path, keep: Path, log: TextIO) -> None:
    """Drop binaries built from other pins: they are ~160 MiB each, and Go's caches
    make rebuilding one of them a matter of seconds if it is ever wanted again."""
    for old in clusters.glob("v*-*"):
        if old != keep and old.is_dir() and ".partial-" not in old.name:
            print(f"[cluster] removing superseded build {old.name}", file=log)
            shutil.rmtree(old, ignore_errors=True)


def compile_multicall(
    go: str, env: dict[str, str], output: Path, toolchain: str, log: TextIO
) -> None:
    print(
        f"[cluster] building Kubernetes {versions.KUBERNETES} (kubelet included), "
        f"etcd {versions.ETCD}, kwok {versions.KWOK}, helm {versions.HELM} with {toolchain} "
        "(a first build takes about 7 minutes on 2 cores and 5 GiB of disk; "
        "later ones reuse Go's caches)",
        file=log,
        flush=True,
    )
    listing = run_streaming(
        [go, "list", "-deps", "."], env, log, phase="resolving packages", count_prefix="go: "
    )
    total = sum(1 for line in listing if line and not line.startswith("go: "))
    command = [go, "build", "-v", "-ldflags", versions.ldflags(), "-o", str(output / BINARY), "."]
    run_streaming(command, env, log, phase="compiling", total=total)
    pause = [go, "build", "-ldflags", "-s -w", "-o", str(output / PAUSE), "./pause"]
    run_streaming(pause, env, log, phase="compiling pause")


def run_streaming(
    command: list[str],
    env: dict[str, str],
    log: TextIO,
    *,
    phase: str,
    total: int | None = None,
    count_prefix: str | None = None,
) -> list[str]:
    """Run a go command, reporting progress now and then; on failure say what failed and why."""
    lines: list[str] = []
    started = last_report = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=GOBUILD_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    done = 0
    for raw in process.stdout:
        line = raw.rstrip("\n")
        lines.append(line)
        if count_prefix is None or line.startswith(count_prefix):
            done += 1
        now = time.monotonic()
        if now - last_report >= 15:
            last_report = now
            of_total = f"/{total}" if total else ""
            print(
                f"[cluster] {phase}: {done}{of_total} ({now - started:.0f}s)", file=log, flush=True
            )
    code = process.wait()
    if code != 0:
        tail = "\n".join(lines[-40:])
        raise BuildError(
            f"build step failed (exit {code}) in {GOBUILD_DIR}:\n  {' '.join(command)}\n{tail}"
        )
    return lines
