"""Container images built on this machine, without a registry or a container engine.

An image is a list of layers (uncompressed tars) plus a config; `write_oci_archive`
packs them as an OCI image layout tar, which `ctr images import` loads into
containerd. Layers and archives are cached under `<cache>/images/`, named by a hash
of their inputs, so a second run only imports. Images share layers: the Debian base
(`debian_base`, made by mmdebstrap) is one layer every image on it reuses, stored once
in containerd's content store.

    base = debian_base(("python3",))
    app = files_layer("http-app", {"/app/serve.py": (SERVE_PY, 0o755)})
    archive = image_archive("modelsync.local/http:1", [base, app], ImageConfig(...))
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from testcluster.build import cache_root

SUITE = "bookworm"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
# A numeric user (the distroless "nonroot"), so `runAsNonRoot` can verify it without
# /etc/passwd inside the image.
NONROOT = "65532:65532"
# The annotation by which `ctr images import` names the image it imports.
CONTAINERD_NAME = "io.containerd.image.name"


class ImageError(RuntimeError):
    """An image could not be built; the message says which step and why."""


@dataclass(frozen=True)
class Layer:
    """An uncompressed layer tar; its digest is also its diff ID."""

    path: Path
    digest: str  # sha256:<hex>
    size: int


@dataclass(frozen=True)
class ImageConfig:
    """The part of an OCI image config the test images need."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    user: str = NONROOT
    workdir: str = "/"
    exposed_ports: tuple[int, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


def images_dir() -> Path:
    directory = cache_root() / "images"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _digest_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def _inputs_key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _atomic(final: Path) -> Iterator[Path]:
    """Write to a scratch file renamed to `final` only when complete: an interrupted
    build never leaves something that looks cached."""
    scratch = final.with_name(f"{final.name}.partial-{os.getpid()}")
    try:
        yield scratch
        scratch.rename(final)
    finally:
        scratch.unlink(missing_ok=True)


def _layer(path: Path) -> Layer:
    digest_file = path.with_name(path.name + ".sha256")
    if digest_file.is_file():
        digest = digest_file.read_text().strip()
    else:
        digest = _digest_file(path)
        digest_file.write_text(digest + "\n")
    return Layer(path=path, digest=digest, size=path.stat().st_size)


def mmdebstrap_version() -> str:
    binary = shutil.which("mmdebstrap")
    if binary is None:
        raise ImageError("mmdebstrap is not installed: `make test-deps` installs it (apt-get)")
    result = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return result.stdout.strip()


def debian_base(packages: Sequence[str], *, suite: str = SUITE) -> Layer:
    """A Debian root filesystem (minbase + `packages`) as one layer, cached by its inputs.

    Device nodes are left out (the runtime provides /dev), and so are apt's lists."""
    key = _inputs_key("debian", suite, sorted(packages), mmdebstrap_version())
    final = images_dir() / "layers" / f"debian-{suite}-{key}.tar"
    if final.is_file():
        return _layer(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with _atomic(final) as scratch:
        command = [
            "mmdebstrap",
            "--variant=minbase",
            "--mode=root",
            "--format=tar",
            "--skip=output/dev",
            "--customize-hook=rm -rf $1/var/lib/apt/lists/* $1/var/cache/apt/*",
            f"--include={','.join(packages)}" if packages else "--include=ca-certificates",
            suite,
            str(scratch),
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            raise ImageError(
                f"mmdebstrap failed (exit {result.returncode}) building the {suite} base "
                f"with {list(packages)}; it needs root and Debian's package mirror:\n{tail}"
            )
    return _layer(final)


def files_layer(name: str, files: Mapping[str, tuple[bytes, int]]) -> Layer:
    """A layer holding `files` (path -> (content, mode)), owned by root, reproducible:
    the same files give the same digest, so images that share it share the blob."""
    key = _inputs_key(
        name,
        {path: [hashlib.sha256(data).hexdigest(), mode] for path, (data, mode) in files.items()},
    )
    final = images_dir() / "layers" / f"{name}-{key}.tar"
    if final.is_file():
        return _layer(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with _atomic(final) as scratch, tarfile.open(scratch, "w", format=tarfile.PAX_FORMAT) as tar:
        directories: set[str] = set()
        for path in sorted(files):
            parts = path.strip("/").split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                if directory not in directories:
                    directories.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            data, mode = files[path]
            info = tarfile.TarInfo("/".join(parts))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return _layer(final)


def _config_json(layers: Sequence[Layer], config: ImageConfig) -> bytes:
    body: dict[str, object] = {
        "User": config.user,
        "Env": list(config.env),
        "WorkingDir": config.workdir,
        "Labels": dict(config.labels),
    }
    if config.entrypoint:
        body["Entrypoint"] = list(config.entrypoint)
    if config.cmd:
        body["Cmd"] = list(config.cmd)
    if config.exposed_ports:
        body["ExposedPorts"] = {f"{port}/tcp": {} for port in config.exposed_ports}
    document = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": body,
        "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
    }
    return json.dumps(document, sort_keys=True).encode()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def image_archive(reference: str, layers: Sequence[Layer], config: ImageConfig) -> Path:
    """The OCI image layout tar of an image, cached by its reference, layers and config."""
    config_blob = _config_json(layers, config)
    config_digest = f"sha256:{hashlib.sha256(config_blob).hexdigest()}"
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config_blob),
        },
        "layers": [
            {"mediaType": LAYER_MEDIA_TYPE, "digest": layer.digest, "size": layer.size}
            for layer in layers
        ],
    }
    manifest_blob = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = f"sha256:{hashlib.sha256(manifest_blob).hexdigest()}"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": manifest["mediaType"],
                "digest": manifest_digest,
                "size": len(manifest_blob),
                "annotations": {
                    CONTAINERD_NAME: reference,
                    "org.opencontainers.image.ref.name": reference,
                },
            }
        ],
    }
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in reference)
    final = images_dir() / f"{safe}-{manifest_digest.removeprefix('sha256:')[:16]}.tar"
    if final.is_file():
        return final
    with _atomic(final) as scratch, tarfile.open(scratch, "w") as tar:
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add_bytes(tar, "index.json", json.dumps(index).encode())
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for layer in layers:
            tar.add(str(layer.path), arcname=f"blobs/sha256/{layer.digest.removeprefix('sha256:')}")
        _add_bytes(tar, f"blobs/sha256/{config_digest.removeprefix('sha256:')}", config_blob)
        _add_bytes(tar, f"blobs/sha256/{manifest_digest.removeprefix('sha256:')}", manifest_blob)
    return final


def chroot_binary() -> str:
    """chroot(8) found on the host's PATH (the child's PATH is the image's)."""
    found = shutil.which("chroot") or shutil.which("chroot", path="/usr/sbin:/sbin")
    if found is None:
        raise ImageError("chroot is not installed (Debian: coreutils)")
    return found


def run_in_root(rootfs: Path, *command: str, bytecode: bool = True) -> None:
    """Run `command` in the image root `rootfs` (as root, with the image's PATH), e.g. its
    own Python building a venv offline; ImageError with the output's tail if it fails.
    `bytecode=False`: Python writes no .pyc files there (a layer that must not change)."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}
    if not bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    result = subprocess.run(
        [chroot_binary(), str(rootfs), *command],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise ImageError(f"`{' '.join(command)}` in the image's root failed:\n{tail}")


def import_image(ctr: Sequence[str], archive: Path) -> None:
    """Load an archive into containerd's `k8s.io` namespace (the CRI's), where the kubelet
    finds it. `ctr` is the command prefix naming the containerd socket."""
    result = subprocess.run(
        [*ctr, "-n", "k8s.io", "images", "import", "--no-unpack", str(archive)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        raise ImageError(
            f"`ctr images import {archive}` failed (exit {result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[-2000:]}"
        )


# --------------------------------------------------------------------------- the test images

PAUSE = "modelsync.local/pause:1"
HTTP = "modelsync.local/http:1"
HTTP_PORT = 8080

# The tiny HTTP server of the test image: GET /healthz -> 200, /status/<code> -> <code>,
# anything else -> 200 with the pod's hostname (tests tell replicas apart by it).
SERVE_PY = b"""\
import http.server, os, socket, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code, body = 200, socket.gethostname()
        if self.path.startswith("/status/"):
            code = int(self.path.rsplit("/", 1)[1])
            body = str(code)
        data = (body + "\\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

port = int(os.environ.get("PORT", sys.argv[1] if len(sys.argv) > 1 else "8080"))
http.server.ThreadingHTTPServer(("", port), Handler).serve_forever()
"""


def pause_archive(pause_binary: Path) -> Path:
    """The pod sandbox image: one static binary that sleeps until it is signalled."""
    layer = files_layer("pause", {"/pause": (pause_binary.read_bytes(), 0o755)})
    return image_archive(PAUSE, [layer], ImageConfig(entrypoint=("/pause",)))


def http_archive() -> Path:
    """bookworm + python3 answering HTTP on 8080 as a numeric non-root user."""
    base = debian_base(("python3",))
    app = files_layer("http-app", {"/app/serve.py": (SERVE_PY, 0o755)})
    config = ImageConfig(
        entrypoint=("python3", "/app/serve.py"),
        cmd=(str(HTTP_PORT),),
        exposed_ports=(HTTP_PORT,),
    )
    return image_archive(HTTP, [base, app], config)
