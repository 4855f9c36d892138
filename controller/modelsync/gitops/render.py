"""Render: a Kustomize directory or a Helm chart of one revision becomes plain objects.

Step two of the flow, between fetch and load. A `spec.path` holding a
kustomization is built with `kustomize build`; a ModelSync with `spec.helm`
renders that chart with `helm template` (objects we apply, prune and heal, never
a Helm release); anything else is plain YAML, read by `load` as before.

Rendering is a trust boundary: the input is a tenant's repository and the
renderers are programs that read files and, asked to, the network. So:
- every kustomization reachable from `spec.path` is read first, as kustomize
  reads it (gitops/kustomization.py: keys folded as Go folds them, every field
  handled or refused), and anything it names (resources, components, patches,
  generators' files...) must be a file of this revision, reached through no
  symlink; a URL is refused, and a remote base unless the platform allows remote
  bases (a file:// base always); helmCharts and plugins are refused; a cycle is
  named; kustomize is given the mapping that was checked, never the file's bytes;
- a chart's directory and its values files must be of this revision, with no
  symlink in the chart;
- the renderer runs in a private temporary directory holding a copy of this
  revision only (kustomize's own load restrictions let `../..` reach any
  directory, such as another tenant's snapshot; in the operator it is in the git
  cache, under its disk budget), with private homes, no
  kubeconfig, no plugins, a fixed Kubernetes version for Helm;
- its output is read as a stream and the renderer is killed past a size or a
  time limit; its memory is bounded (RLIMIT_AS and GOMEMLIMIT);
- unless remote bases are allowed, it has no network: a network namespace of its
  own where this process may create one, and in any case HTTP(S) proxies at a
  dead port and git refusing every transport — for what the inspection missed.
Every refusal is a RevisionError naming the file, the line and the fix.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import pickle
import re
import resource
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from modelsync.api import schemas
from modelsync.api.modelsync import HelmSource
from modelsync.gitops import budget
from modelsync.gitops import kustomization as kustomizationmod
from modelsync.gitops import load as loadmod
from modelsync.gitops.load import KUSTOMIZATION_FILES, Loaded, RevisionError, Source

# The versions the CLI asks for when a renderer is missing, from the pins the test
# harness builds too (modelsync/renderers.toml).
_PINS = tomllib.loads(resources.files("modelsync").joinpath("renderers.toml").read_text())
KUSTOMIZE_VERSION: str = _PINS["kustomize"]
HELM_VERSION: str = _PINS["helm"]
# Capabilities.KubeVersion of every chart: fixed, so a render is the same offline (the
# CLI) and in any cluster, and Helm never asks an API server.
HELM_KUBE_VERSION = "v1.37.0"

MAX_OUTPUT_BYTES = 32 << 20
TIMEOUT_SECONDS = 30.0
MEMORY_BYTES = 2 << 30
MAX_KUSTOMIZATIONS = 1_000
_STDERR_KEPT = 16 << 10

# What users write for a remote base (for the message when such a path is missing).
_REMOTE = re.compile(r"^([a-z][a-z0-9+.-]*://|git@|[^/\s]+\.[a-z]{2,}/)|\?ref=|//", re.IGNORECASE)
_HELM_SOURCE = re.compile(r"^# Source: (\S+)\s*$")


class RendererMissingError(RuntimeError):
    """The kustomize or helm binary is not where the settings say: the operator's
    environment, not the content; retried, and the CLI exits 2."""

    def __init__(self, name: str, binary: str, version: str, setting: str) -> None:
        super().__init__(
            f"{name} {version} is needed to render this path, and {binary!r} was not found: "
            f"install {name} {version} on PATH or name it with {setting}"
        )
        self.name, self.version = name, version


@dataclass(frozen=True)
class RenderSettings:
    """How the renderers run; the operator's come from OperatorSettings."""

    kustomize: str = "kustomize"
    helm: str = "helm"
    allow_remote_bases: bool = False
    timeout_seconds: float = TIMEOUT_SECONDS
    max_output_bytes: int = MAX_OUTPUT_BYTES
    memory_bytes: int = MEMORY_BYTES
    # What all renders at once may take (their address spaces summed): a render waits
    # for a slot past it. 0: no bound (the CLI renders one thing).
    memory_total_bytes: int = 0
    kustomize_setting: str = "--kustomize"
    helm_setting: str = "--helm"
    # Where a render's private directory comes from, given the bytes its copy of the
    # revision takes (the operator's: in its git cache, reserved in the disk budget).
    # None: a temporary directory (the CLI). Not part of what decides a render.
    scratch: Callable[[int], contextlib.AbstractContextManager[Path]] | None = field(
        default=None, compare=False, repr=False
    )


@dataclass
class Rendered(Loaded):
    """What `load` returns, plus the rendered text of each file that is not in the
    revision (an object's Source names it), for errors that quote a line."""

    texts: dict[str, str] = field(default_factory=dict)
    renderer: str = ""  # "", "kustomize" or "helm"

    def reader(self, root: Path) -> Callable[[str], str]:
        def read(file: str) -> str:
            if file in self.texts:
                return self.texts[file]
            return (root / file).read_text()

        return read


class _RefusedError(Exception):
    def __init__(self, error: RevisionError) -> None:
        super().__init__(str(error))
        self.error = error


def _relative(root: Path, target: Path) -> str:
    return target.relative_to(root).as_posix() if target != root else "."


def _inside(root: Path, base: Path, reference: str) -> Path | None:
    """`reference`, relative to `base`, as a path under `root` (lexically, no symlink
    followed), or None when it leads outside."""
    if reference.startswith("/"):
        return None
    joined = Path(os.path.normpath(base / reference))
    return joined if joined == root or joined.is_relative_to(root) else None


def _symlink_on_way(root: Path, target: Path) -> Path | None:
    """The first symlink between `root` and `target` (itself included), if any."""
    current = root
    for part in target.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            return current
    return None


def kustomization_in(directory: Path) -> Path | None:
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file() or candidate.is_symlink():
            return candidate
    return None


def _read_kustomization(root: Path, file: Path) -> kustomizationmod.Checked:
    """The kustomization `file` read and checked as kustomize would read it."""
    relative = _relative(root, file)
    if file.is_symlink():
        raise _RefusedError(
            RevisionError(
                Source(relative, 1), "a symlink; replace it with the kustomization itself"
            )
        )
    if file.stat().st_size > loadmod.MAX_FILE_BYTES:
        raise _RefusedError(
            RevisionError(Source(relative, 1), f"larger than {loadmod.MAX_FILE_BYTES} bytes")
        )
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _RefusedError(RevisionError(Source(relative, 1), "not UTF-8 text")) from None
    return kustomizationmod.check(text)


@dataclass
class Inspection:
    errors: list[RevisionError] = field(default_factory=list)
    # The files kustomize will read: all that is copied for it to render...
    files: set[Path] = field(default_factory=set)
    # ...but the kustomizations, written as they were checked (kustomization.Checked).
    documents: dict[Path, str] = field(default_factory=dict)


def inspect_kustomization(root: Path, directory: Path, allow_remote: bool) -> Inspection:  # noqa: C901 - each refusal of a kustomization, in order
    """Every kustomization reachable from `directory`, read before kustomize runs as
    kustomize reads it: what it names must be a file or directory of this revision
    reached through no symlink; no URL; remote bases only when allowed (file:// never);
    no helmCharts, no plugins; no cycle. Each kustomization is kept as it was checked,
    to be written in its place in the private copy."""
    root = root.resolve()
    inspection = Inspection()
    errors = inspection.errors
    done: set[Path] = set()

    def visit(directory: Path, chain: tuple[Path, ...]) -> None:
        if directory in chain:
            cycle = " -> ".join(_relative(root, d) for d in (*chain[chain.index(directory) :],))
            marker = kustomization_in(chain[-1]) or chain[-1]
            errors.append(
                RevisionError(
                    Source(_relative(root, marker), 1),
                    f"kustomizations form a cycle: {cycle} -> {_relative(root, directory)}; "
                    "remove one of the references",
                )
            )
            return
        if directory in done:
            return
        done.add(directory)
        if len(done) > MAX_KUSTOMIZATIONS:
            raise _RefusedError(
                RevisionError(
                    Source(_relative(root, directory), 1),
                    f"more than {MAX_KUSTOMIZATIONS} kustomizations",
                )
            )
        file = kustomization_in(directory)
        if file is None:  # pragma: no cover - callers check
            return
        relative = _relative(root, file)
        try:
            checked = _read_kustomization(root, file)
        except _RefusedError as refused:
            errors.append(refused.error)
            return
        inspection.documents[file] = checked.text()
        errors.extend(RevisionError(Source(relative, line), text) for line, text in checked.errors)
        for reference in checked.references:
            where = Source(relative, reference.line)
            found = _resolve(root, directory, reference, where, allow_remote)
            if isinstance(found, RevisionError):
                errors.append(found)
            elif found is not None and found.is_dir():
                visit(found, (*chain, directory))
            elif found is not None:
                inspection.files.add(found)

    try:
        visit(directory.resolve(), ())
    except _RefusedError as refused:
        errors.append(refused.error)
    return inspection


def _resolve(  # noqa: C901 - each refusal of one reference, in order
    root: Path,
    directory: Path,
    reference: kustomizationmod.Reference,
    where: Source,
    allow_remote: bool,
) -> RevisionError | Path | None:
    """What `reference` of the kustomization in `directory` is: the file (or, for a
    base, the directory holding a kustomization) of the revision it names, None for a
    remote base the platform allows, or why it is refused."""
    key, path = reference.field, reference.path
    if not path:
        return RevisionError(where, f"{key}: an empty path")
    if reference.base and (kustomizationmod.fetched(path) or kustomizationmod.cloned(path)):
        if kustomizationmod.cloned(path) == "file":
            return RevisionError(
                where,
                f"{key}: {path!r} is a file:// base: kustomize would clone it from the "
                "operator's own disk (other tenants' cached repositories); vendor it into "
                "the repository",
            )
        return None if allow_remote else _remote(where, key, path)
    if kustomizationmod.fetched(path):
        return RevisionError(
            where,
            f"{key}: {path!r} is a URL: kustomize would fetch it from the operator's pod; "
            "modelsync renders only files of this revision: commit the file",
        )
    target = _inside(root, directory, path)
    if target is None:
        return RevisionError(
            where,
            f"{key}: {path!r} is outside the revision (only files of this repository are "
            "rendered); copy what it needs into the repository",
        )
    link = _symlink_on_way(root, target)
    if link is not None:
        return RevisionError(
            where,
            f"{key}: {path!r} goes through the symlink {_relative(root, link)}; symlinks "
            "are not rendered, commit the files themselves",
        )
    if not target.exists():
        if reference.base and _REMOTE.search(path):
            return None if allow_remote else _remote(where, key, path)
        return RevisionError(
            where,
            f"{key}: {path!r} does not exist in the revision; fix the path or add the file",
        )
    if target.is_dir() and not reference.base:
        return RevisionError(where, f"{key}: {path!r} is a directory")
    if target.is_dir() and kustomization_in(target) is None:
        return RevisionError(
            where,
            f"{key}: the directory {path!r} holds no kustomization.yaml; add one, or list "
            "its files",
        )
    return target


def _remote(where: Source, key: str, reference: str) -> RevisionError:
    return RevisionError(
        where,
        f"{key}: {reference!r} is a remote base; modelsync renders only files of this "
        "revision (the platform setting --allow-remote-bases would fetch it): vendor it "
        "into the repository",
    )


def inspect_chart(root: Path, chart: Path, values: list[tuple[str, Path | None]]) -> list[Any]:
    """A chart directory and values files of this revision, with no symlink anywhere."""
    errors: list[RevisionError] = []
    relative = _relative(root, chart) if chart.is_relative_to(root) else str(chart)
    link = _symlink_on_way(root, chart) if chart.is_relative_to(root) else None
    if link is not None:
        return [
            RevisionError(
                Source(relative, 1),
                f"spec.helm.chart goes through the symlink {_relative(root, link)}; "
                "commit the chart itself",
            )
        ]
    if not (chart / "Chart.yaml").is_file():
        return [
            RevisionError(
                Source(relative, 1),
                "spec.helm.chart: no Chart.yaml in this directory of the revision; "
                "point spec.helm.chart at the chart's directory",
            )
        ]
    for base, dirs, names in os.walk(chart, followlinks=False):
        for name in sorted(dirs + names):
            path = Path(base) / name
            if path.is_symlink():
                errors.append(
                    RevisionError(
                        Source(_relative(root, path), 1),
                        "a symlink in the chart; symlinks are not rendered, commit the file itself",
                    )
                )
    for name, file in values:
        if file is None:
            errors.append(
                RevisionError(
                    Source(name, 1),
                    f"spec.helm.valuesFiles: {name!r} is outside the revision; name a file "
                    "of the repository, relative to its root",
                )
            )
            continue
        link = _symlink_on_way(root, file)
        if link is not None:
            errors.append(
                RevisionError(
                    Source(name, 1),
                    f"spec.helm.valuesFiles: {name!r} goes through the symlink "
                    f"{_relative(root, link)}; commit the file itself",
                )
            )
        elif not file.is_file():
            errors.append(
                RevisionError(
                    Source(name, 1),
                    f"spec.helm.valuesFiles: {name!r} does not exist in the revision; fix "
                    "spec.helm.valuesFiles or add the file",
                )
            )
    return errors


def _copy_files(root: Path, files: set[Path], destination: Path) -> None:
    """The files a render reads, at their places under `destination`: regular files of
    the revision only (the inspection refused symlinks), nothing else of the disk."""
    for file in sorted(files):
        target = destination / file.relative_to(root)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(file, target, follow_symlinks=False)


# The renderer's private homes (see _environment) and the copy's top, as directories.
_PRIVATE_DIRECTORIES = 8


@contextlib.contextmanager
def _private(
    settings: RenderSettings, root: Path, files: Iterable[Path], extra: int = 0
) -> Iterator[Path]:
    """The render's private directory (0700), room made for the copy of `files` (their
    blocks, and a block for each directory on the way) and `extra` bytes."""
    sizes, directories = [extra], {root}
    for file in files:
        sizes.append(file.stat().st_size)
        parent = file.parent
        while parent not in directories and parent.is_relative_to(root):
            directories.add(parent)
            parent = parent.parent
    size = sum(budget.blocks(s) for s in sizes) + budget.BLOCK * (
        len(directories) + _PRIVATE_DIRECTORIES
    )
    if settings.scratch is None:
        with tempfile.TemporaryDirectory(prefix="modelsync-render-") as scratch:
            yield Path(scratch)
    else:
        with settings.scratch(size) as scratch:
            yield scratch


def _chart_files(chart: Path) -> set[Path]:
    """The chart's files; a directory that vanishes under the walk fails the render (the
    snapshot changed: retried), never a copy without it."""

    def lost(error: OSError) -> None:
        raise loadmod.SnapshotChangedError(f"{error.filename}: {error.strerror}") from error

    return {
        Path(base) / name
        for base, _, names in os.walk(chart, followlinks=False, onerror=lost)
        for name in names
        if (Path(base) / name).is_file() and not (Path(base) / name).is_symlink()
    }


class RenderError(Exception):
    """The renderer failed, or was stopped at a limit; the message is the user's."""


# prlimit(1) (util-linux, as fetch uses it) sets RLIMIT_AS on the renderer from outside:
# Python code between fork and exec (preexec_fn) can deadlock in a threaded operator.
PRLIMIT = shutil.which("prlimit")
# unshare(1) (util-linux) gives the renderer a network namespace of its own, where this
# process may create one (root, or unprivileged user namespaces; not the chart's pod).
UNSHARE = shutil.which("unshare")
# Where the renderer's HTTP(S) requests go when remote bases are not allowed: a loopback
# port nothing listens on (Go's http.Client and git's curl both read these variables).
DEAD_PROXY = "http://127.0.0.1:9"
_PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
)
_namespaces: dict[str | None, tuple[tuple[str, ...], str]] = {}
_namespaces_lock = threading.Lock()


def network_namespace() -> tuple[tuple[str, ...], str]:
    """The command prefix that runs a renderer in a network namespace of its own (a
    loopback, down, and nothing else), tried once per process; ((), why not) where this
    process may not create one."""
    unshare = UNSHARE
    with _namespaces_lock:
        if unshare not in _namespaces:
            _namespaces[unshare] = _probe_namespace(unshare)
        return _namespaces[unshare]


def _probe_namespace(unshare: str | None) -> tuple[tuple[str, ...], str]:
    if unshare is None:
        return (), "unshare(1) is not installed"
    # Not root: a user namespace first, in which this uid may make the network one.
    prefix = (unshare, "--net", *(() if os.geteuid() == 0 else ("--map-root-user",)), "--")
    try:
        done = subprocess.run(
            [*prefix, "true"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return (), f"{' '.join(prefix[1:-1])}: {error}"
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return (), f"unshare {' '.join(prefix[1:-1])}: {why[0]}"
    return prefix, ""


def isolation(settings: RenderSettings) -> str:
    """What keeps the renderers off the network here: a sentence for the operator's log
    at start (and the README's account of it)."""
    if settings.allow_remote_bases:
        return (
            "remote bases are allowed (--allow-remote-bases): kustomize fetches them over "
            "the network, git over https, http and ssh only (never file://); the pod's "
            "egress policy is what bounds where"
        )
    prefix, why = network_namespace()
    held = (
        "HTTP(S) proxies at a dead port with NO_PROXY empty, and git refusing every "
        "transport (protocol.allow=never)"
    )
    if prefix:
        return f"renderers run in a network namespace of their own (unshare --net), with {held}"
    return (
        f"renderers run with no network namespace of their own ({why}): {held} keep them "
        "from fetching, but not from loopback, which Go never proxies; the pod's egress "
        "policy is the next bound"
    )


def _network_environment(settings: RenderSettings) -> dict[str, str]:
    """The renderer's proxy and git settings: no fetch at all unless remote bases are
    allowed, and then git over https, http and ssh only (never file://, ext::)."""
    git: tuple[tuple[str, str], ...] = (("protocol.allow", "never"),)
    env: dict[str, str] = {}
    if settings.allow_remote_bases:
        git += tuple((f"protocol.{name}.allow", "always") for name in ("https", "http", "ssh"))
    else:
        env = {name: DEAD_PROXY for name in _PROXY_VARIABLES} | {"NO_PROXY": "", "no_proxy": ""}
    env |= {"GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
    env["GIT_CONFIG_COUNT"] = str(len(git))
    for index, (key, value) in enumerate(git):
        env[f"GIT_CONFIG_KEY_{index}"], env[f"GIT_CONFIG_VALUE_{index}"] = key, value
    return env


def _limit_memory(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


class _Slots:
    """Renders running at once: as many as `memory_total_bytes` holds renderers of
    `memory_bytes` each (at least one), so that together they stay inside the memory the
    platform gave them (the container's limit less the operator's own headroom)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._running = 0

    @contextlib.contextmanager
    def slot(self, settings: RenderSettings) -> Iterator[None]:
        total = settings.memory_total_bytes
        at_once = max(1, total // settings.memory_bytes) if total > 0 else 0
        with self._changed:
            self._changed.wait_for(lambda: not at_once or self._running < at_once)
            self._running += 1
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()


_SLOTS = _Slots()


def run_bounded(
    argv: list[str], cwd: Path, env: dict[str, str], settings: RenderSettings, private: Path
) -> bytes:
    """The renderer's standard output, read as a stream: killed (its whole process
    group) past `max_output_bytes` or `timeout_seconds`; RLIMIT_AS bounds its memory, and
    unless remote bases are allowed it runs in a network namespace of its own where one
    may be made; `memory_total_bytes` bounds how many run at once (the others wait,
    before their clock starts)."""
    with _SLOTS.slot(settings):
        return _run_bounded(argv, cwd, env, settings, private)


def _run_bounded(  # noqa: C901 - a renderer's limits: time, size, exit
    argv: list[str], cwd: Path, env: dict[str, str], settings: RenderSettings, private: Path
) -> bytes:
    if not settings.allow_remote_bases:
        argv = [*network_namespace()[0], *argv]
    limited = [PRLIMIT, f"--as={settings.memory_bytes}", "--", *argv] if PRLIMIT else argv
    process = subprocess.Popen(
        limited,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        # Only where prlimit(1) is missing: setrlimit alone, between fork and exec.
        preexec_fn=None if PRLIMIT else _limit_memory(settings.memory_bytes),
    )
    assert process.stdout is not None
    assert process.stderr is not None
    chunks: list[bytes] = []
    size = 0
    stderr = b""
    deadline = time.monotonic() + settings.timeout_seconds
    problem = ""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        selector.register(process.stderr, selectors.EVENT_READ)
        open_streams = 2
        while open_streams:
            left = deadline - time.monotonic()
            if left <= 0:
                problem = (
                    f"rendering took longer than {settings.timeout_seconds:g}s and was "
                    "stopped (a template looping?); fix it, or the platform raises "
                    "--render-timeout-seconds"
                )
                break
            for key, _ in selector.select(timeout=min(left, 1.0)):
                stream = key.fileobj
                data = os.read(stream.fileno(), 1 << 16)  # type: ignore[union-attr]
                if not data:
                    selector.unregister(stream)
                    open_streams -= 1
                elif stream is process.stdout:
                    size += len(data)
                    if size > settings.max_output_bytes:
                        problem = (
                            f"rendered output is over {settings.max_output_bytes} bytes and "
                            "was stopped; render less, or the platform raises "
                            "--render-max-bytes"
                        )
                        break
                    chunks.append(data)
                else:
                    stderr = (stderr + data)[-_STDERR_KEPT:]
            if problem:
                break
    if problem:
        _kill(process)
        raise RenderError(problem)
    try:
        code = process.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill(process)
        raise RenderError(
            f"rendering took longer than {settings.timeout_seconds:g}s and was stopped"
        ) from None
    finally:
        process.stdout.close()
        process.stderr.close()
    if code != 0:
        text = stderr.decode("utf-8", "replace").replace(f"{private}/", "").strip()
        if "out of memory" in text or "cannot allocate memory" in text:
            raise RenderError(
                f"the renderer ran out of its {settings.memory_bytes >> 20} MiB of memory; "
                "render less, or the platform raises --render-memory-bytes"
            )
        lines = [line for line in text.splitlines() if line.strip()]
        raise RenderError("; ".join(lines[-5:]) or f"exited with {code}")
    return b"".join(chunks)


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    if process.stdout is not None:
        process.stdout.close()
    if process.stderr is not None:
        process.stderr.close()


def _environment(private: Path, settings: RenderSettings) -> dict[str, str]:
    """Nothing of the operator's own environment: private homes, no kubeconfig, no
    plugins, a Go heap limit below the address-space limit, no network unless remote
    bases are allowed (_network_environment)."""
    home = private / "home"
    for name in ("home", "home/cache", "home/config", "home/data", "home/plugins"):
        (private / name).mkdir(mode=0o700, exist_ok=True)
    return {
        "PATH": os.defpath,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_DATA_HOME": str(home / "data"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "HELM_PLUGINS": str(home / "plugins"),
        "KUBECONFIG": str(home / "no-kubeconfig"),
        "KUSTOMIZE_PLUGIN_HOME": str(home / "plugins"),
        "GOMEMLIMIT": str(settings.memory_bytes // 2),
        "GOTRACEBACK": "none",
        "TMPDIR": str(private),
        **_network_environment(settings),
    }


def _parse(text: str, name: str, rendered: Rendered) -> bool:
    """Rendered output, one document at a time: each under the per-file limit before it
    is parsed (a renderer writes 32 MiB from a few bytes of template), and all of them
    under the loaded budget; False once over it (read no further)."""
    rendered.texts[name] = text
    for line, piece in schemas.documents_of(text):
        if not piece.strip():
            continue
        size = len(piece.encode())
        if size > loadmod.MAX_FILE_BYTES:
            rendered.errors.append(
                RevisionError(
                    Source(name, line),
                    f"a rendered document of {size} bytes; the limit is "
                    f"{loadmod.MAX_FILE_BYTES}, as for a file (render smaller objects)",
                )
            )
            continue
        found = loadmod.Loaded()
        loadmod._documents(piece, name, found)
        shift = line - 1
        rendered.objects += [
            loadmod.LoadedObject(o.manifest, Source(name, o.source.line + shift))
            for o in found.objects
        ]
        rendered.errors += [
            dataclasses.replace(e, source=Source(name, e.source.line + shift)) for e in found.errors
        ]
        rendered.weight += found.weight
        if rendered.over_budget(Source(name, line)):
            return False
    return True


def _helm_documents(output: str, chart_dir: str, chart_name: str) -> dict[str, str]:
    """helm's output by the template each document came from (its `# Source:` line)."""
    groups: dict[str, list[str]] = collections.defaultdict(list)
    current = f"{chart_dir}/templates (rendered)"
    for document in re.split(r"^---\s*$", output, flags=re.MULTILINE):
        for line in document.splitlines():
            found = _HELM_SOURCE.match(line)
            if found:
                source = found[1]
                inside = source.split("/", 1)[1] if "/" in source else source
                current = f"{chart_dir}/{inside} (rendered)".removeprefix("./")
                break
        if document.strip():
            groups[current].append(document.strip("\n"))
    return {name: "\n---\n".join(docs) + "\n" for name, docs in groups.items()}


def _binary(configured: str, name: str, version: str, setting: str) -> str:
    found = shutil.which(configured) if "/" not in configured else configured
    if not found or not os.access(found, os.X_OK):
        raise RendererMissingError(name, configured, version, setting)
    return found


def render(
    root: Path,
    path: str,
    helm: HelmSource | None,
    settings: RenderSettings,
    *,
    namespace: str = "default",
    release: str = "release",
) -> Rendered:
    """The objects of `path` in the revision at `root`: rendered by kustomize when it
    holds a kustomization, by helm when `helm` (spec.helm) is set, else read as plain
    YAML. Never raises on content; RendererMissingError when a needed binary is not
    installed."""
    root = root.resolve()
    rendered = Rendered()
    try:
        directory = loadmod.resolve_path(root, path)
    except ValueError as error:
        rendered.errors.append(RevisionError(Source(path or ".", 1), str(error)))
        return rendered
    kustomization = kustomization_in(directory) if directory.is_dir() else None
    if helm and kustomization is not None:
        rendered.errors.append(
            RevisionError(
                Source(_relative(root, kustomization), 1),
                f"spec.path {path or '.'!r} holds a kustomization and spec.helm is set: "
                "modelsync renders one of them; remove spec.helm, or point spec.path "
                "elsewhere",
            )
        )
        return rendered
    if helm:
        return _render_helm(root, helm, settings, namespace, release)
    if kustomization is not None:
        return _render_kustomize(root, directory, kustomization, settings)
    loaded = loadmod.load(root, path)
    rendered.objects, rendered.errors, rendered.files = loaded.objects, loaded.errors, loaded.files
    return rendered


def _render_kustomize(
    root: Path, directory: Path, kustomization: Path, settings: RenderSettings
) -> Rendered:
    rendered = Rendered(renderer="kustomize")
    relative = _relative(root, kustomization)
    inspection = inspect_kustomization(root, directory, settings.allow_remote_bases)
    if inspection.errors:
        rendered.errors = inspection.errors
        return rendered
    binary = _binary(settings.kustomize, "kustomize", KUSTOMIZE_VERSION, settings.kustomize_setting)
    with _private(settings, root, inspection.files) as private:
        revision = private / "revision"
        revision.mkdir(mode=0o700)
        _copy_files(root, inspection.files - set(inspection.documents), revision)
        for file, text in inspection.documents.items():
            # What was checked, never the tenant's bytes (its spellings, anchors...).
            target = revision / file.relative_to(root)
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        (revision / directory.relative_to(root)).mkdir(mode=0o700, parents=True, exist_ok=True)
        argv = [binary, "build", "--load-restrictor=LoadRestrictionsRootOnly", "."]
        try:
            output = run_bounded(
                argv,
                revision / directory.relative_to(root),
                _environment(private, settings),
                settings,
                revision,
            )
        except RenderError as error:
            rendered.errors.append(RevisionError(Source(relative, 1), f"kustomize build: {error}"))
            return rendered
    _parse_output(output, f"{relative} (rendered)", relative, rendered)
    return rendered


def _parse_output(output: bytes, name: str, origin: str, rendered: Rendered) -> None:
    try:
        text = output.decode("utf-8")
    except UnicodeDecodeError:
        rendered.errors.append(RevisionError(Source(origin, 1), "rendered output is not UTF-8"))
        return
    rendered.files += 1
    _parse(text, name, rendered)


def _render_helm(
    root: Path, helm: HelmSource, settings: RenderSettings, namespace: str, release: str
) -> Rendered:
    rendered = Rendered(renderer="helm")
    chart_name = helm.chart
    chart = _inside(root, root, chart_name) if chart_name else None
    if chart is None or ".." in PurePosixPath(chart_name).parts:
        rendered.errors.append(
            RevisionError(
                Source(chart_name or ".", 1),
                "spec.helm.chart must be a directory of the repository, relative to its root",
            )
        )
        return rendered
    values = [(name, _inside(root, root, name)) for name in helm.values_files]
    errors = inspect_chart(root, chart, values)
    if errors:
        rendered.errors = errors
        return rendered
    chart_relative = _relative(root, chart)
    binary = _binary(settings.helm, "helm", HELM_VERSION, settings.helm_setting)
    needed = _chart_files(chart) | {file for _, file in values if file is not None}
    inline_bytes = len(json.dumps(helm.values)) if helm.values else 0
    with _private(settings, root, needed, inline_bytes) as private:
        revision = private / "revision"
        revision.mkdir(mode=0o700)
        _copy_files(root, needed, revision)
        argv = [
            binary,
            "template",
            helm.release_name or release,
            str(revision / chart.relative_to(root)),
            "--namespace",
            namespace,
            "--kube-version",
            HELM_KUBE_VERSION,
            "--include-crds",
            "--skip-tests",
            "--no-hooks",
        ]
        for _, file in values:
            assert file is not None
            argv += ["--values", str(revision / file.relative_to(root))]
        if helm.values:
            inline = private / "inline-values.json"
            inline.write_text(json.dumps(helm.values))
            argv += ["--values", str(inline)]
        try:
            output = run_bounded(
                argv, revision, _environment(private, settings), settings, revision
            )
        except RenderError as error:
            rendered.errors.append(
                RevisionError(Source(f"{chart_relative}/Chart.yaml", 1), f"helm template: {error}")
            )
            return rendered
    try:
        text = output.decode("utf-8")
    except UnicodeDecodeError:
        rendered.errors.append(
            RevisionError(Source(f"{chart_relative}/Chart.yaml", 1), "rendered output is not UTF-8")
        )
        return rendered
    for name, part in _helm_documents(text, chart_relative, chart.name).items():
        rendered.files += 1
        if not _parse(part, name, rendered):
            break
    return rendered


# Renders of immutable snapshots, by everything that decides them: a resync of the same
# revision renders nothing. Kept as the pickle of the objects (a few times smaller than
# them) and the rendered text, bounded in bytes of both; each hit unpickles objects of
# its own, so callers may change what they get.
@dataclass(frozen=True)
class _CachedRender:
    objects: bytes  # pickle of [(manifest, source), ...]
    texts: dict[str, str]
    files: int
    renderer: str
    weight: int

    @property
    def size(self) -> int:
        return len(self.objects) + sum(len(text) for text in self.texts.values())


_RENDERED: collections.OrderedDict[str, _CachedRender] = collections.OrderedDict()
_RENDERED_LIMIT = 64
_RENDERED_BYTES = 32 << 20
_rendered_lock = threading.Lock()


def render_snapshot(
    snapshot: Path,
    path: str,
    helm: HelmSource | None,
    settings: RenderSettings,
    *,
    namespace: str,
    release: str,
) -> Rendered:
    """`render` of an immutable snapshot (the operator's), remembered."""
    key = json.dumps(
        [str(snapshot), path, repr(helm), namespace, release, repr(settings)], sort_keys=True
    )
    with _rendered_lock:
        found = _RENDERED.get(key)
        if found is not None:
            _RENDERED.move_to_end(key)
    if found is None:
        fresh = render(snapshot, path, helm, settings, namespace=namespace, release=release)
        if not fresh.renderer or fresh.errors:
            # Plain YAML: load keeps its own cache, by file. A refusal is not kept: one
            # at the time limit may be the machine's load, and the next try renders again.
            return fresh
        pairs = [(o.manifest, o.source) for o in fresh.objects]
        cached = _CachedRender(
            pickle.dumps(pairs, protocol=pickle.HIGHEST_PROTOCOL),
            fresh.texts,
            fresh.files,
            fresh.renderer,
            fresh.weight,
        )
        if cached.size <= _RENDERED_BYTES // 4:
            with _rendered_lock:
                _RENDERED[key] = cached
                while len(_RENDERED) > _RENDERED_LIMIT or (
                    sum(r.size for r in _RENDERED.values()) > _RENDERED_BYTES
                ):
                    _RENDERED.popitem(last=False)
        return fresh  # its objects are the caller's: the cache holds their pickle
    # Ours alone wrote these bytes (never a tenant), so unpickling them is safe.
    objects: list[tuple[dict[str, Any], Source]] = pickle.loads(found.objects)  # noqa: S301
    return Rendered(
        objects=[loadmod.LoadedObject(manifest, source) for manifest, source in objects],
        files=found.files,
        texts=found.texts,
        renderer=found.renderer,
        weight=found.weight,
    )
