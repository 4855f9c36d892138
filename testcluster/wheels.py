"""Wheelhouses for the model-server images, downloaded on the host from lock files.

Each image under `images/<name>/` pins its Python packages with hashes in
`requirements.lock` (made from `requirements.in` by `python -m testcluster.wheels
lock`). `ensure_wheelhouse(name)` downloads exactly those wheels - binary only, for
the images' Python and platform whatever the host runs - into
`<cache>/wheels/<name>-<digest of the lock>/`, once; the image's root filesystem
installs from it offline (`pip install --no-index --find-links`). The host's pip
trusts the machine's CA bundle; the image needs none.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from testcluster import build

IMAGES_DIR = Path(__file__).resolve().parents[1] / "images"
LOCK = "requirements.lock"
SOURCE = "requirements.in"
STAMP = "DOWNLOAD-COMPLETE.json"
# What the images run: Debian bookworm's Python (MLServer 1.7.1 needs < 3.13) and glibc.
PYTHON_VERSION = "3.11"
GLIBC = (2, 36)  # bookworm's
# pip matches a wheel only against the platform tags it is given: every manylinux tag
# that bookworm's glibc runs, newest first, and the legacy aliases older wheels carry.
PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(GLIBC[1], 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)
IMAGES = ("mlserver", "storage-initializer", "kserve-custom")


class WheelError(RuntimeError):
    """The wheels could not be had; the message says why and what to do."""


def lock_file(image: str) -> Path:
    path = IMAGES_DIR / image / LOCK
    if not path.is_file():
        raise WheelError(f"{path} does not exist: run `python -m testcluster.wheels lock`")
    return path


def lock_digest(image: str) -> str:
    """Names the wheelhouse: a different lock (or target) is a different set of wheels."""
    digest = hashlib.sha256(lock_file(image).read_bytes())
    digest.update(f"{PYTHON_VERSION} {' '.join(PLATFORMS)}".encode())
    return digest.hexdigest()[:16]


def download_command(lock: Path, into: Path) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--no-deps",  # the lock lists every package
        "--only-binary=:all:",
        "--require-hashes",
        "--python-version",
        PYTHON_VERSION,
        "--implementation",
        "cp",
    ]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    return [*command, "--dest", str(into), "-r", str(lock)]


def ensure_wheelhouse(image: str, log: TextIO = sys.stderr) -> Path:
    """The directory holding every wheel of `image`'s lock, downloaded first if needed."""
    lock = lock_file(image)
    root = build.cache_root() / "wheels"
    final = root / f"{image}-{lock_digest(image)}"
    if (final / STAMP).is_file():
        return final
    with build.build_lock(root):
        if (final / STAMP).is_file():
            return final  # another process downloaded it while we waited
        for leftover in root.glob(f"{image}-*.partial-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        scratch = root / f"{final.name}.partial-{os.getpid()}"
        scratch.mkdir(parents=True)
        started = time.monotonic()
        print(f"[wheels] downloading the wheels of images/{image}/{LOCK}", file=log, flush=True)
        try:
            result = subprocess.run(
                download_command(lock, scratch), capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                raise WheelError(
                    f"pip download of images/{image}/{LOCK} failed (exit {result.returncode}): "
                    "is PyPI reachable? A package without a cp311 manylinux x86_64 wheel "
                    f"(glibc <= {GLIBC[0]}.{GLIBC[1]}) needs another pin.\n"
                    + "\n".join(result.stderr.splitlines()[-20:])
                )
            wheels = list(scratch.glob("*.whl"))
            seconds = round(time.monotonic() - started, 1)
            size = sum(p.stat().st_size for p in wheels)
            stamp = {
                "lock": str(lock.relative_to(IMAGES_DIR.parent)),
                "seconds": seconds,
                "wheels": len(wheels),
                "bytes": size,
            }
            (scratch / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
            scratch.rename(final)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        print(
            f"[wheels] {image}: {len(wheels)} wheels, {size / 2**20:.0f} MiB in {seconds:.0f}s",
            file=log,
        )
        return final


def install_command(python: str, wheelhouse: Path, lock: Path) -> list[str]:
    """Offline: only the wheelhouse, only the locked versions and hashes."""
    return [
        python,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-index",
        "--no-deps",
        "--require-hashes",
        "--only-binary=:all:",
        "--find-links",
        str(wheelhouse),
        "-r",
        str(lock),
    ]


def host_python() -> str:
    """The host's Python of the images' version, to try their contents without a node."""
    found = shutil.which(f"python{PYTHON_VERSION}")
    if found is None:
        raise WheelError(
            f"python{PYTHON_VERSION} is not on PATH: install it (Debian bookworm: python3) "
            "to run the images' packages on the host"
        )
    return found


def ensure_host_venv(image: str, log: TextIO = sys.stderr) -> Path:
    """A venv on the host with exactly `image`'s lock installed offline from its
    wheelhouse, as the image's root filesystem gets it: proves the lock installs and
    runs before any node does. Cached under `<cache>/host-venvs/`; returns its python."""
    wheelhouse = ensure_wheelhouse(image, log)
    root = build.cache_root() / "host-venvs"
    final = root / f"{image}-{lock_digest(image)}"
    python = final / "bin" / "python"
    if (final / STAMP).is_file():
        return python
    with build.build_lock(root):
        if (final / STAMP).is_file():
            return python
        shutil.rmtree(final, ignore_errors=True)
        started = time.monotonic()
        # Built in place: a venv's scripts name their own path, so it cannot be moved.
        subprocess.run([host_python(), "-m", "venv", str(final)], check=True)
        result = subprocess.run(
            install_command(str(python), wheelhouse, lock_file(image)),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            shutil.rmtree(final, ignore_errors=True)
            raise WheelError(
                f"offline install of images/{image}/{LOCK} from {wheelhouse} failed:\n"
                + "\n".join(result.stderr.splitlines()[-20:])
            )
        seconds = round(time.monotonic() - started, 1)
        (final / STAMP).write_text(json.dumps({"seconds": seconds}) + "\n")
        print(f"[wheels] {image}: host venv installed offline in {seconds:.0f}s", file=log)
        return python


def pip_compile(source: str, output: str, cwd: Path) -> None:
    """A hashed lock `output` of `source` (requirements.in or pyproject.toml), binary
    wheels only, with pip-tools; the machine's pip configuration (find-links) is no
    input of an image."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "piptools",
            "compile",
            "--quiet",
            "--generate-hashes",
            "--allow-unsafe",
            "--strip-extras",
            "--no-emit-find-links",
            "--pip-args",
            "--only-binary=:all:",
            "--output-file",
            output,
            source,
        ],
        cwd=cwd,
        check=True,
    )


def compile_locks(images: tuple[str, ...] = IMAGES) -> None:
    """Regenerate each image's requirements.lock from its requirements.in (pip-tools must
    be installed; resolving runs on the host, so the host's Python should be PYTHON_VERSION)."""
    for image in images:
        pip_compile(SOURCE, LOCK, IMAGES_DIR / image)


if __name__ == "__main__":
    if sys.argv[1:] == ["lock"]:
        compile_locks()
    elif sys.argv[1:2] == ["download"]:
        for name in sys.argv[2:] or IMAGES:
            print(ensure_wheelhouse(name))
    else:
        print("usage: python -m testcluster.wheels lock | download [IMAGE ...]", file=sys.stderr)
        sys.exit(2)
