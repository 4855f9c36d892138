"""The model-server images of the real node, built here from the images/ lock files.

Each image is three uncompressed layers: the Debian bookworm base with python3 and
python3-venv (shared by all three, stored once in containerd), one venv under
/opt/<image> installed offline from the image's wheelhouse (testcluster/wheels.py)
by bookworm's own Python in a chroot, and for two of them the script they run. They
run as the numeric user 1000 the locked-down pod template uses. Every layer and
archive is cached by a hash of its inputs, so a warm run only imports.

    archive, reference = model_image("mlserver")
    images.import_image(node.ctr(), archive)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from testcluster import build, images, wheels

BASE_PACKAGES = ("python3", "python3-venv")
USER = "1000:1000"  # render.py's locked-down runAsUser/runAsGroup
REGISTRY = "modelsync.local"
# What each image runs when the pod names no command: the script of images/<name>/.
SCRIPTS = {"storage-initializer": "initializer.py", "kserve-custom": "server.py"}
APP_DIR = "/app"
# Seconds each build step took in this process (for `make bench` and the report).
TIMINGS: dict[str, float] = {}


def venv_dir(image: str) -> str:
    return f"/opt/{image}"


def venv_layer(image: str, base: images.Layer, log: TextIO = sys.stderr) -> images.Layer:
    """/opt/<image>: a venv of the base's Python with the image's lock installed offline."""
    wheelhouse = wheels.ensure_wheelhouse(image, log)
    key = hashlib.sha256(f"{base.digest} {wheels.lock_digest(image)}".encode()).hexdigest()[:16]
    final = images.images_dir() / "layers" / f"venv-{image}-{key}.tar"
    if final.is_file():
        return images._layer(final)
    started = time.monotonic()
    work = images.images_dir() / f"rootfs-{image}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        subprocess.run(["tar", "-C", str(work), "-xf", str(base.path)], check=True, timeout=600)
        # The base has no /dev (the runtime provides it); pip and venv want these two.
        (work / "dev").mkdir(exist_ok=True)
        for name, minor in (("null", 3), ("urandom", 9)):
            os.mknod(work / "dev" / name, 0o666 | 0o020000, os.makedev(1, minor))
        shutil.copytree(wheelhouse, work / "tmp" / "wheels")
        shutil.copy(wheels.lock_file(image), work / "tmp" / "requirements.lock")
        target = venv_dir(image)
        images.run_in_root(work, "python3", "-m", "venv", target)
        images.run_in_root(
            work,
            *wheels.install_command(
                f"{target}/bin/python", Path("/tmp/wheels"), Path("/tmp/requirements.lock")
            ),
        )
        final.parent.mkdir(parents=True, exist_ok=True)
        with images._atomic(final) as scratch:
            subprocess.run(
                [
                    "tar",
                    "-C",
                    str(work),
                    "--numeric-owner",
                    "--owner=0",
                    "--group=0",
                    "--sort=name",
                    "-cf",
                    str(scratch),
                    target.lstrip("/"),
                ],
                check=True,
                timeout=600,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    TIMINGS[f"venv {image}"] = round(time.monotonic() - started, 1)
    print(f"[images] {image}: venv layer in {TIMINGS[f'venv {image}']:.0f}s", file=log)
    return images._layer(final)


def model_image(image: str, log: TextIO = sys.stderr) -> tuple[Path, str]:
    """The OCI archive of images/<image> and the reference it is imported under,
    modelsync.local/<image>:<digest of its inputs>."""
    started = time.monotonic()
    base = images.debian_base(BASE_PACKAGES)
    TIMINGS.setdefault("base", round(time.monotonic() - started, 1))
    layers = [base, venv_layer(image, base, log)]
    venv_bin = f"{venv_dir(image)}/bin"
    entrypoint: tuple[str, ...] = ()
    script = SCRIPTS.get(image)
    if script is not None:
        source = (wheels.IMAGES_DIR / image / script).read_bytes()
        layers.append(images.files_layer(f"app-{image}", {f"{APP_DIR}/{script}": (source, 0o644)}))
        entrypoint = (f"{venv_bin}/python", f"{APP_DIR}/{script}")
    tag = hashlib.sha256(" ".join(layer.digest for layer in layers).encode()).hexdigest()[:16]
    reference = f"{REGISTRY}/{image}:{tag}"
    config = images.ImageConfig(
        entrypoint=entrypoint,
        env=(f"PATH={venv_bin}:/usr/local/bin:/usr/bin:/bin", "HOME=/tmp"),
        user=USER,
        workdir="/tmp",
    )
    archive = images.image_archive(reference, layers, config)
    TIMINGS[f"image {image}"] = round(time.monotonic() - started, 1)
    return archive, reference


def import_model_images(ctr: list[str], log: TextIO = sys.stderr) -> dict[str, str]:
    """Build (or find cached) every model image and import it into a node's containerd;
    returns image name -> reference. One build at a time across processes."""
    references: dict[str, str] = {}
    with build.build_lock(images.images_dir()):
        for image in wheels.IMAGES:
            archive, reference = model_image(image, log)
            started = time.monotonic()
            images.import_image(ctr, archive)
            TIMINGS[f"import {image}"] = round(time.monotonic() - started, 1)
            references[image] = reference
    return references


if __name__ == "__main__":
    for name in sys.argv[1:] or wheels.IMAGES:
        print(model_image(name)[1])
    print(TIMINGS)
