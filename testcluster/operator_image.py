"""The operator's own image, built here without Docker (issue 19, item 1).

The same inputs as the `Dockerfile`: Debian bookworm with the packages of
`images/operator/packages.txt`, a venv at /venv holding `images/operator/requirements.lock`
installed offline from its wheelhouse (testcluster/wheels.py), and our own wheel.
Four layers, each cached by a hash of its inputs, so that a change to the code
rebuilds only the last one (a few MiB):

1. the Debian root filesystem with the package list (`images.debian_base`);
2. /venv, made by bookworm's python3 in a chroot, with the lock installed;
3. kustomize and helm in /usr/local/bin (testcluster/renderers.py);
4. our wheel installed into that venv: exactly the files its RECORD lists.

The image runs as 10001:10001 (the chart's podSecurityContext) with HOME on the
git-cache emptyDir the chart mounts, so a read-only root filesystem works.

    archive, reference = operator_image()
    images.import_image(node.ctr(), archive)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from testcluster import build, images, renderers, wheels

NAME = "operator"
ROOT = Path(__file__).resolve().parents[1]
PACKAGES_FILE = wheels.IMAGES_DIR / NAME / "packages.txt"
REPOSITORY = "modelsync.local/modelsync"
VENV = "/venv"
UID = 10001  # helm/modelsync/values.yaml podSecurityContext.runAsUser
USER = f"{UID}:{UID}"
# The chart mounts its git-cache emptyDir here and passes --git-cache-dir with it; git
# and ssh want a writable HOME, and that is the only writable place besides /tmp.
HOME = "/var/cache/modelsync"
# The account of UID, as the Dockerfile makes it.
USERADD = (
    "useradd",
    "--uid",
    str(UID),
    "--user-group",
    "--no-create-home",
    "--home-dir",
    HOME,
    "--shell",
    "/usr/sbin/nologin",
    "modelsync",
)
ENTRYPOINT = (f"{VENV}/bin/modelsync",)
CMD = ("run",)
ENV = (
    f"PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    f"HOME={HOME}",
    "PYTHONUNBUFFERED=1",
    # The root is read-only: the .pyc files are written at install time, never later.
    "PYTHONDONTWRITEBYTECODE=1",
    "LANG=C.UTF-8",
)
HTTP_PORT = 8080
# What goes into our wheel; a change to anything else does not rebuild the image.
WHEEL_INPUTS = ("pyproject.toml", "README.md", "controller/modelsync", "crds")
STAMP = "UNPACKED"
# Seconds each step took in this process (for the report and `make bench`).
TIMINGS: dict[str, float] = {}


def packages(text: str) -> tuple[str, ...]:
    """The package names of a packages.txt: one a line, `#` starts a comment."""
    names = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return tuple(name for name in names if name)


def package_list() -> tuple[str, ...]:
    return packages(PACKAGES_FILE.read_text())


def _timed(step: str, started: float) -> None:
    TIMINGS[step] = round(time.monotonic() - started, 1)


def source_digest() -> str:
    """A hash of every file our wheel is built from (bytecode caches left out)."""
    digest = hashlib.sha256()
    for entry in WHEEL_INPUTS:
        path = ROOT / entry
        files = [path] if path.is_file() else sorted(path.rglob("*"))
        for file in files:
            if file.is_file() and "__pycache__" not in file.parts:
                digest.update(str(file.relative_to(ROOT)).encode() + b"\0")
                digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()[:16]


def build_wheel(log: TextIO = sys.stderr) -> Path:
    """Our own wheel (`pip wheel --no-deps .`), cached by the digest of its sources."""
    root = build.cache_root() / "operator-wheels"
    final = root / source_digest()
    found = sorted(final.glob("modelsync-*.whl"))
    if found:
        return found[0]
    started = time.monotonic()
    scratch = root / f"{final.name}.partial-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--disable-pip-version-check",
                "--no-deps",
                "--wheel-dir",
                str(scratch),
                str(ROOT),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if result.returncode != 0:
            raise images.ImageError(
                f"`pip wheel --no-deps {ROOT}` failed (exit {result.returncode}):\n"
                + "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            )
        shutil.rmtree(final, ignore_errors=True)
        scratch.rename(final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _timed("wheel", started)
    print(f"[operator-image] wheel built in {TIMINGS['wheel']:.0f}s", file=log, flush=True)
    return sorted(final.glob("modelsync-*.whl"))[0]


def _root_with(layers: Sequence[images.Layer], work: Path) -> None:
    """Unpack `layers` into `work` and give it the two devices pip and venv open."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for layer in layers:
        subprocess.run(["tar", "-C", str(work), "-xf", str(layer.path)], check=True, timeout=600)
    (work / "dev").mkdir(exist_ok=True)
    for name, minor in (("null", 3), ("urandom", 9)):
        os.mknod(work / "dev" / name, 0o666 | 0o020000, os.makedev(1, minor))


def _tar(work: Path, members: Sequence[str], final: Path) -> None:
    """A layer of `members` (paths relative to `work`), owned by root unless the rootfs
    says otherwise, in name order with one mtime: the same files, the same layer."""
    listing = work / ".layer-members"
    listing.write_text("".join(f"{member}\n" for member in sorted(members)))
    try:
        with images._atomic(final) as scratch:
            subprocess.run(
                [
                    "tar",
                    "-C",
                    str(work),
                    "--numeric-owner",
                    "--mtime=2026-01-01 00:00:00",
                    "--no-recursion",
                    "-cf",
                    str(scratch),
                    "-T",
                    str(listing),
                ],
                check=True,
                timeout=600,
            )
    finally:
        listing.unlink(missing_ok=True)


def _tree(work: Path, top: str) -> list[str]:
    """`top` and everything under it, as paths relative to `work`."""
    found = [top]
    for path in sorted((work / top).rglob("*")):
        found.append(str(path.relative_to(work)))
    return found


def venv_layer(base: images.Layer, log: TextIO = sys.stderr) -> images.Layer:
    """/venv: bookworm's python3 venv with the operator's lock installed offline; the
    image's user in /etc/passwd, and its HOME (for a runtime that mounts nothing there)."""
    wheelhouse = wheels.ensure_wheelhouse(NAME, log)
    key = images._inputs_key("operator-venv", base.digest, wheels.lock_digest(NAME), USERADD)
    final = images.images_dir() / "layers" / f"operator-venv-{key}.tar"
    if final.is_file():
        return images._layer(final)
    started = time.monotonic()
    work = images.images_dir() / f"rootfs-operator-venv.partial-{os.getpid()}"
    try:
        _root_with([base], work)
        shutil.copytree(wheelhouse, work / "tmp" / "wheels")
        shutil.copy(wheels.lock_file(NAME), work / "tmp" / "requirements.lock")
        images.run_in_root(work, "python3", "-m", "venv", VENV, bytecode=False)
        images.run_in_root(
            work,
            *wheels.install_command(
                f"{VENV}/bin/python", Path("/tmp/wheels"), Path("/tmp/requirements.lock")
            ),
            bytecode=False,
        )
        # ssh refuses to run for a uid without a passwd entry ("No user exists for uid").
        images.run_in_root(work, *USERADD, bytecode=False)
        home = work / HOME.lstrip("/")
        home.mkdir(parents=True, exist_ok=True)
        os.chown(home, UID, UID)
        home.chmod(0o700)
        final.parent.mkdir(parents=True, exist_ok=True)
        accounts = [f"etc/{name}" for name in ("passwd", "group", "shadow", "gshadow")]
        _tar(work, [*_tree(work, VENV.lstrip("/")), HOME.lstrip("/"), *accounts], final)
        # This root is base + venv already: keep it as the wheel's install root rather
        # than unpack both layers again (half a minute, cold).
        shutil.rmtree(work / "tmp" / "wheels")
        (work / "tmp" / "requirements.lock").unlink()
        _keep_as_install_root(work, base, images._layer(final))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _timed("venv layer", started)
    print(f"[operator-image] venv layer in {TIMINGS['venv layer']:.0f}s", file=log, flush=True)
    return images._layer(final)


def _install_root_path(base: images.Layer, venv: images.Layer) -> Path:
    key = images._inputs_key("operator-root", base.digest, venv.digest)
    return images.images_dir() / f"rootfs-operator-{key}"


def _keep_as_install_root(work: Path, base: images.Layer, venv: images.Layer) -> None:
    final = _install_root_path(base, venv)
    for leftover in images.images_dir().glob("rootfs-operator-*"):
        if leftover != work:
            shutil.rmtree(leftover, ignore_errors=True)  # an older venv's root, or a crash's
    work.rename(final)
    (final / STAMP).write_text(f"{base.digest} {venv.digest}\n")


def install_root(base: images.Layer, venv: images.Layer) -> Path:
    """The root whose Python installs our wheel: base + venv, kept from the venv's build
    (or unpacked once), cached by their digests. Unpacking per commit would cost more
    than the rest of a rebuild."""
    final = _install_root_path(base, venv)
    if (final / STAMP).is_file():
        return final
    work = images.images_dir() / f"rootfs-operator-root.partial-{os.getpid()}"
    try:
        _root_with([base, venv], work)
        _keep_as_install_root(work, base, venv)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def wheel_layer(
    base: images.Layer, venv: images.Layer, wheel: Path, log: TextIO = sys.stderr
) -> images.Layer:
    """Our wheel installed (no dependencies) into /venv by the image's own Python, under
    a staging `--root`: the layer holds what pip wrote there (package, dist-info, the
    console scripts naming /venv/bin/python) and nothing else."""
    wheel_digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    key = images._inputs_key("operator-wheel", base.digest, venv.digest, wheel_digest)
    final = images.images_dir() / "layers" / f"operator-wheel-{key}.tar"
    if final.is_file():
        return images._layer(final)
    started = time.monotonic()
    root = install_root(base, venv)
    stage = f"/tmp/stage-{os.getpid()}"
    try:
        shutil.copy(wheel, root / "tmp" / wheel.name)
        images.run_in_root(
            root,
            f"{VENV}/bin/python",
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-index",
            "--no-deps",
            "--root",
            stage,
            f"/tmp/{wheel.name}",
            bytecode=False,
        )
        staged = root / stage.lstrip("/")
        _tar(staged, _tree(staged, VENV.lstrip("/")), final)
    finally:
        (root / "tmp" / wheel.name).unlink(missing_ok=True)
        shutil.rmtree(root / stage.lstrip("/"), ignore_errors=True)
    _timed("wheel layer", started)
    print(f"[operator-image] wheel layer in {TIMINGS['wheel layer']:.0f}s", file=log, flush=True)
    return images._layer(final)


def renderers_layer(log: TextIO = sys.stderr) -> images.Layer:
    """/usr/local/bin/kustomize and helm (issue 21), built from their wrapper modules;
    below the wheel's layer, so a commit of ours does not rebuild it."""
    found = renderers.ensure_renderers(log)
    return images.files_layer(
        "operator-renderers",
        {f"usr/local/bin/{name}": (path.read_bytes(), 0o755) for name, path in found.items()},
    )


def image_config() -> images.ImageConfig:
    return images.ImageConfig(
        entrypoint=ENTRYPOINT,
        cmd=CMD,
        env=ENV,
        user=USER,
        workdir="/",
        exposed_ports=(HTTP_PORT,),
        labels={"org.opencontainers.image.source": "https://github.com/modelsync/modelsync"},
    )


def operator_image(log: TextIO = sys.stderr) -> tuple[Path, str]:
    """The operator image's OCI archive and its reference, modelsync.local/modelsync:<tag>
    where the tag is a digest of its layers (a new commit of the code, a new tag: the
    chart's `image.pullPolicy: Never` then never runs a stale image)."""
    with build.build_lock(images.images_dir() / "operator-lock"):
        started = time.monotonic()
        base = images.debian_base(package_list())
        _timed("base layer", started)
        venv = venv_layer(base, log)
        layers = [base, venv, renderers_layer(log), wheel_layer(base, venv, build_wheel(log), log)]
        tag = hashlib.sha256(" ".join(layer.digest for layer in layers).encode()).hexdigest()
        reference = f"{REPOSITORY}:{tag[:16]}"
        archive = images.image_archive(reference, layers, image_config())
        _prune_older(archive, layers)
        _timed("image", started)
        return archive, reference


def _prune_older(archive: Path, layers: Sequence[images.Layer]) -> None:
    """Delete the operator's older archives and layers: each commit makes a new archive
    (half a GiB, mostly the base and the venv), and only the newest is imported."""
    directory = images.images_dir()
    keep = {archive, *(layer.path for layer in layers)}
    keep |= {path.with_name(path.name + ".sha256") for path in keep}
    older = [
        *directory.glob(f"{REPOSITORY.replace('/', '_')}_*.tar"),
        *(directory / "layers").glob("operator-*.tar*"),
    ]
    for path in older:
        if path not in keep and ".partial-" not in path.name:
            path.unlink(missing_ok=True)
    wheels_dir = build.cache_root() / "operator-wheels"
    for built in wheels_dir.glob("*"):
        if built.name != source_digest():
            shutil.rmtree(built, ignore_errors=True)


def unpack_archive(archive: Path, into: Path) -> dict[str, Any]:
    """Unpack an OCI archive's layers, in order, into `into` (a root filesystem); returns
    the image's config (`config` of the OCI config document)."""
    with tarfile.open(archive) as tar:

        def blob(digest: str) -> bytes:
            member = tar.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}")
            if member is None:
                raise images.ImageError(f"{archive} lacks the blob {digest}")
            return member.read()

        index_member = tar.extractfile("index.json")
        if index_member is None:
            raise images.ImageError(f"{archive} has no index.json")
        index = json.loads(index_member.read())
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        into.mkdir(parents=True, exist_ok=True)
        for layer in manifest["layers"]:
            data = tar.extractfile(f"blobs/sha256/{layer['digest'].removeprefix('sha256:')}")
            if data is None:
                raise images.ImageError(f"{archive} lacks the layer {layer['digest']}")
            subprocess.run(
                ["tar", "-C", str(into), "--numeric-owner", "-xf", "-"],
                input=data.read(),
                check=True,
                timeout=600,
            )
        config: dict[str, Any] = json.loads(blob(manifest["config"]["digest"]))["config"]
        return config


def compile_lock() -> None:
    """Regenerate images/operator/requirements.lock from pyproject.toml's runtime
    dependencies (pip-tools must be installed; run it with Python 3.11, the image's)."""
    wheels.pip_compile("pyproject.toml", str(wheels.lock_file(NAME).relative_to(ROOT)), ROOT)


# Runs a command in an unpacked image the way the chart's pod does: the root read-only,
# /tmp and HOME fresh writable mounts (the chart's emptyDirs), /dev and /proc the host's,
# as the image's user, with exactly the image's environment. $1 is the root, $2 the
# user, $3 HOME; then `env` assignments and the command.
CONFINE = """
set -e
root=$1 user=$2 home=$3
shift 3
mkdir -p "$root/dev" "$root/proc" "$root/tmp" "$root$home"
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount -t tmpfs -o size=64m,mode=1777 tmpfs "$root/tmp"
mount -t tmpfs -o "size=64m,mode=0700,uid=${user%%:*},gid=${user##*:}" tmpfs "$root$home"
mount --rbind /dev "$root/dev"
mount -t proc proc "$root/proc"
exec chroot --userspec="$user" "$root" /usr/bin/env -i "$@"
"""


def inside(rootfs: Path, path: str) -> str:
    """`path` of the image with the symlinks of `rootfs` resolved inside it (an absolute
    link names a path of the image, not of the host)."""
    resolved: list[str] = []
    parts = [part for part in path.split("/") if part]
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            resolved = resolved[:-1]
            continue
        candidate = rootfs.joinpath(*resolved, part)
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise images.ImageError(f"too many symlinks resolving {path} in {rootfs}")
            link = os.readlink(candidate)
            if link.startswith("/"):
                resolved = []
            parts = [p for p in link.split("/") if p and p != "."] + parts
            continue
        resolved.append(part)
    return "/" + "/".join(resolved)


def confined_command(
    rootfs: Path,
    config: dict[str, Any],
    args: Sequence[str],
    *,
    env: Sequence[str] = (),
    binds: Sequence[tuple[Path, str]] = (),
) -> tuple[list[str], dict[str, str]]:
    """The command (and its environment) that runs the image's entrypoint with `args` in
    `rootfs` (from `unpack_archive`), in a mount namespace of its own (root only), as
    CONFINE says; `binds` are host paths mounted read-only at paths of the image."""
    image_env = [str(item) for item in config.get("Env") or []]
    entrypoint = [str(item) for item in config.get("Entrypoint") or []]
    home = next((item.split("=", 1)[1] for item in image_env if item.startswith("HOME=")), "/")
    script = CONFINE
    for index, (source, image_path) in enumerate(binds):
        # The mount point is made before the root turns read-only, as a runtime does, at
        # the path the image's own symlinks give (/var/run is /run): never the host's.
        target = inside(rootfs, image_path)
        point = rootfs / target.lstrip("/")
        if source.is_dir():
            point.mkdir(parents=True, exist_ok=True)
        else:
            point.parent.mkdir(parents=True, exist_ok=True)
            point.touch()
        script = script.replace(
            "exec chroot",
            f'mount --bind "$BIND{index}" "$root{target}"\n'
            f'mount -o remount,bind,ro "$root{target}"\nexec chroot',
        )
    host_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    host_env |= {f"BIND{index}": str(source) for index, (source, _) in enumerate(binds)}
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
    command += [str(rootfs), str(config.get("User") or "0:0"), inside(rootfs, home)]
    return [*command, *image_env, *env, *entrypoint, *args], host_env


def run_confined(
    rootfs: Path, config: dict[str, Any], args: Sequence[str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    command, env = confined_command(rootfs, config, args)
    return subprocess.run(
        command, env=env, capture_output=True, text=True, check=False, timeout=timeout
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["lock"]:
        compile_lock()
    else:
        built, name = operator_image()
        print(f"archive:   {built}\nreference: {name}\ntag:       {name.rsplit(':', 1)[1]}")
        print(f"seconds:   {TIMINGS}")
