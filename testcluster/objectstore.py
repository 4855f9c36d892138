"""A real S3-compatible object store for the tests: versitygw, an S3 gateway over a
plain directory, built from its Go module and cached like the cluster.

`ensure_versitygw()` builds `github.com/versity/versitygw` at VERSITYGW once into
`<cache>/objectstore/versitygw-<version>-<go>/` (Go's module and build caches are the
cluster's, so a rebuild after a Go upgrade is quick); `ObjectStore.start()` runs it on
a host and a free port over a directory, with one access key and secret, until
`stop()`. Models reach it exactly as a user's would reach S3: the endpoint, the
credentials, the bucket.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from testcluster import build
from testcluster.launcher import stop_group

VERSITYGW = "v1.8.0"
PACKAGE = "github.com/versity/versitygw/cmd/versitygw"
BINARY = "versitygw"
STAMP = "BUILD-COMPLETE.json"
START_SECONDS = 30.0
STOP_GRACE_SECONDS = 5.0


class ObjectStoreError(RuntimeError):
    """The store could not be built or started; the message says why and what to do."""


def _toolchain(go: str, env: dict[str, str], where: Path) -> str:
    result = subprocess.run(
        [go, "env", "GOVERSION"], cwd=where, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ObjectStoreError(f"`go env GOVERSION` failed: {result.stderr.strip()}")
    return result.stdout.strip()


def ensure_versitygw(log: TextIO = sys.stderr) -> Path:
    """The versitygw binary of VERSITYGW, built first when the cache lacks it."""
    cache = build.cache_root()
    env = build.go_environment(cache)
    go = build.find_go()
    root = cache / "objectstore"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"versitygw-{VERSITYGW}-{_toolchain(go, env, root)}"
    if (final / STAMP).is_file() and (final / BINARY).is_file():
        return final / BINARY
    with build.build_lock(root):
        if (final / STAMP).is_file() and (final / BINARY).is_file():
            return final / BINARY  # another process built it while we waited
        for leftover in root.glob("*.partial-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
        scratch = root / f"{final.name}.partial-{os.getpid()}"
        scratch.mkdir()
        print(f"[objectstore] building versitygw {VERSITYGW} from its Go module", file=log)
        started = time.monotonic()
        try:
            # Outside any module: `go install pkg@version` builds with the module's own
            # go.mod and go.sum, checked against the checksum database.
            result = subprocess.run(
                [go, "install", f"{PACKAGE}@{VERSITYGW}"],
                cwd=scratch,
                env={**env, "GOBIN": str(scratch)},
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise ObjectStoreError(
                    f"go install {PACKAGE}@{VERSITYGW} failed (exit {result.returncode}); "
                    "check that the Go module proxy is reachable:\n"
                    + "\n".join(result.stderr.splitlines()[-30:])
                )
            seconds = round(time.monotonic() - started, 1)
            stamp = {"versitygw": VERSITYGW, "seconds": seconds}
            (scratch / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
            scratch.rename(final)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        print(f"[objectstore] built versitygw {VERSITYGW} in {seconds:.0f}s", file=log)
        return final / BINARY


def free_port(host: str) -> int:
    """A port free on `host` right now (another program may still take it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ObjectStore:
    """One running versitygw: `endpoint` with `access_key`/`secret_key`, over `directory`
    (each top-level directory there is a bucket)."""

    binary: Path
    directory: Path
    host: str = "127.0.0.1"
    port: int = 0
    access_key: str = field(default_factory=lambda: "AK" + secrets.token_hex(8).upper())
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(30))
    region: str = "us-east-1"
    _process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory.parent / f"{self.directory.name}.versitygw.log"

    def start(self) -> ObjectStore:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.host)
        # The root account's credentials come through the environment, not argv: a
        # process listing must not show the secret.
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ROOT_ACCESS_KEY": self.access_key,
            "ROOT_SECRET_KEY": self.secret_key,
            "VGW_REGION": self.region,
        }
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    str(self.binary),
                    "--port",
                    f"{self.host}:{self.port}",
                    "posix",
                    str(self.directory),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_listening()
        return self

    def _wait_listening(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_SECONDS
        while True:
            code = self._process.poll()
            if code is not None:
                raise ObjectStoreError(
                    f"versitygw exited with code {code} at start; its log "
                    f"({self.log_path}):\n{self.log_path.read_text(errors='replace')[-2000:]}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=1),
            ):
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise ObjectStoreError(
                    f"versitygw did not listen on {self.endpoint} within {START_SECONDS:.0f}s"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        stop_group(process, STOP_GRACE_SECONDS)

    def storage_secret(self) -> dict[str, str]:
        """The keys a storageSecretRef Secret holds for this store, named as kserve-storage
        0.21 reads them (AWS_ENDPOINT_URL; it no longer reads S3_ENDPOINT/S3_USE_HTTPS)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": self.region,
        }

    def request(
        self, method: str, path: str, body: bytes = b"", *, secret_key: str | None = None
    ) -> tuple[int, bytes]:
        """One signed S3 request (path-style, `/bucket/key`): the status and the body."""
        headers = sigv4_headers(
            method,
            f"{self.host}:{self.port}",
            path,
            body,
            access_key=self.access_key,
            secret_key=secret_key or self.secret_key,
            region=self.region,
            now=datetime.datetime.now(datetime.UTC),
        )
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.request(method, urllib.parse.quote(path), body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def create_bucket(self, bucket: str) -> None:
        self._expect(200, "PUT", f"/{bucket}")

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self._expect(200, "PUT", f"/{bucket}/{key}", body)

    def _expect(self, status: int, method: str, path: str, body: bytes = b"") -> None:
        got, answer = self.request(method, path, body)
        if got != status:
            raise ObjectStoreError(
                f"{method} {self.endpoint}{path}: {got} {answer.decode(errors='replace')[:500]}"
            )


def sigv4_headers(
    method: str,
    host: str,
    path: str,
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    region: str,
    now: datetime.datetime,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The headers that sign one S3 request with AWS Signature Version 4 (no query
    string, the payload hashed). A pure function: tested against AWS's own example.

    Plain signed requests rather than boto3: botocore pins python-dateutil < 3, the
    kubernetes client the tests use needs >= 3, so one venv cannot hold both."""
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = now.strftime("%Y%m%d")
    payload = hashlib.sha256(body).hexdigest()
    headers = {
        "host": host,
        "x-amz-content-sha256": payload,
        "x-amz-date": amz_date,
        **{name.lower(): value for name, value in (extra or {}).items()},
    }
    names = sorted(headers)
    canonical = "\n".join(
        [
            method,
            urllib.parse.quote(path, safe="/-_.~"),
            "",  # no query string
            "".join(f"{name}:{headers[name].strip()}\n" for name in names),
            ";".join(names),
            payload,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{secret_key}".encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return headers
