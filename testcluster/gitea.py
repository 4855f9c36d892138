"""A real Gitea for the tests (pull requests, webhooks, commit statuses), built from
its Go module and cached outside the repository.

`ensure_gitea()` builds `giteabuild/` (a wrapper module that requires Gitea and
repeats the replace lines of its go.mod) once into
`<cache>/gitea-<version>/<key>/`, where the key hashes the wrapper's go.mod and
go.sum, the build flags and the Go version; the cluster's key is not touched, and only
this directory's own older keys are ever removed. SQLite is compiled in only with cgo
and the tags `sqlite sqlite_unlock_notify`; without the `bindata` tag Gitea reads its
templates and options from STATIC_ROOT_PATH, the module's directory in Go's module
cache. The build runs niced: it takes about 7 minutes cold on 2 cores.

`Gitea.start()` runs it on loopback over a scratch directory: INSTALL_LOCK, SQLite, no
ssh, an admin and an access token made with `gitea admin`, and webhooks allowed to
loopback only (ALLOWED_HOST_LIST), where the operator under test listens.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from testcluster import build
from testcluster.launcher import stop_group
from testcluster.objectstore import free_port

VERSION = "v1.27.3"
MODULE_DIR = Path(__file__).resolve().parent / "giteabuild"
PACKAGE = "gitea.dev"  # the module path Gitea's go.mod declares (served as code.gitea.io/gitea)
TAGS = "sqlite sqlite_unlock_notify"
BINARY = "gitea"
STAMP = "BUILD-COMPLETE.json"
START_SECONDS = 60.0
STOP_GRACE_SECONDS = 10.0
ADMIN = "modelsync"


class GiteaError(RuntimeError):
    """Gitea could not be built or started; the message says why and what to do."""


def ldflags() -> str:
    return f'-s -w -X "main.Version={VERSION.removeprefix("v")}" -X "main.Tags={TAGS}"'


def _environment(cache: Path) -> dict[str, str]:
    # Go's module and build caches are the cluster's (shared, content-addressed); the
    # output directory is ours alone.
    return {**build.go_environment(cache), "CGO_ENABLED": "1"}


def _go(go: str, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [go, *args], cwd=MODULE_DIR, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise GiteaError(
            f"`go {' '.join(args)}` failed in {MODULE_DIR}: {result.stderr.strip()[-2000:]}\n"
            "check that the Go module proxy is reachable"
        )
    return result.stdout.strip()


def build_key(toolchain: str) -> str:
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update(name.encode())
        digest.update((MODULE_DIR / name).read_bytes())
    digest.update(f"{TAGS}\n{ldflags()}\n{toolchain}".encode())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class GiteaBuild:
    binary: Path
    static_root: Path  # the module's directory: templates/, options/, public/


def ensure_gitea(log: TextIO = sys.stderr) -> GiteaBuild:
    """The Gitea of VERSION, built first when the cache lacks it."""
    cache = build.cache_root()
    env = _environment(cache)
    go = build.find_go()
    toolchain = _go(go, env, "env", "GOVERSION")
    root = cache / f"gitea-{VERSION}"
    final = root / build_key(toolchain)
    found = _complete(final)
    if found is not None:
        return found
    with build.build_lock(root):
        found = _complete(final)
        if found is not None:
            return found  # another process built it while we waited
        for leftover in root.glob("*.partial-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
        scratch = root / f"{final.name}.partial-{os.getpid()}"
        scratch.mkdir(parents=True)
        print(
            f"[gitea] building Gitea {VERSION} with {toolchain} (cgo, tags {TAGS!r}); a first "
            "build takes about 7 minutes on 2 cores",
            file=log,
            flush=True,
        )
        started = time.monotonic()
        try:
            command = ["nice", "-n", "19", go, "build", "-tags", TAGS, "-ldflags", ldflags()]
            command += ["-o", str(scratch / BINARY), PACKAGE]
            result = subprocess.run(
                command, cwd=MODULE_DIR, env=env, capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                raise GiteaError(
                    f"building Gitea failed (exit {result.returncode}):\n  {' '.join(command)}\n"
                    + "\n".join(result.stderr.splitlines()[-30:])
                )
            # After the build, which downloads it: before, a fresh module cache has no Dir.
            static_root = _go(go, env, "list", "-m", "-f", "{{.Dir}}", PACKAGE)
            if not (Path(static_root) / "templates").is_dir():
                raise GiteaError(f"Gitea's module directory {static_root!r} has no templates/")
            stamp = {
                "gitea": VERSION,
                "go": toolchain,
                "static_root": static_root,
                "seconds": round(time.monotonic() - started, 1),
                "size": (scratch / BINARY).stat().st_size,
            }
            (scratch / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
            scratch.rename(final)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        for old in root.iterdir():  # our own older keys only
            if old.is_dir() and old != final and ".partial-" not in old.name:
                shutil.rmtree(old, ignore_errors=True)
        print(f"[gitea] built Gitea {VERSION} in {stamp['seconds']:.0f}s into {final}", file=log)
        done = _complete(final)
        assert done is not None
        return done


def _complete(directory: Path) -> GiteaBuild | None:
    try:
        stamp = json.loads((directory / STAMP).read_text())
    except (OSError, ValueError):
        return None
    binary = directory / BINARY
    static_root = Path(stamp.get("static_root") or "")
    if not binary.is_file() or binary.stat().st_size != stamp.get("size"):
        return None
    if not (static_root / "templates").is_dir() or not (static_root / "options").is_dir():
        return None  # Go's module cache was cleaned: build again, which fetches it
    return GiteaBuild(binary, static_root)


@dataclass
class Gitea:
    """One running Gitea on loopback with an admin `ADMIN` and its access `token`."""

    build: GiteaBuild
    root: Path
    host: str = "127.0.0.1"
    port: int = 0
    token: str = ""
    password: str = field(default_factory=lambda: "Pw-" + secrets.token_urlsafe(16))
    _process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def config(self) -> Path:
        return self.root / "app.ini"

    @property
    def log_path(self) -> Path:
        return self.root / "gitea.log"

    def _write_config(self) -> None:
        r = self.root
        self.config.write_text(
            f"""\
APP_NAME = modelsync tests
RUN_MODE = prod
WORK_PATH = {r}
[database]
DB_TYPE = sqlite3
PATH = {r}/gitea.db
[repository]
ROOT = {r}/repositories
DEFAULT_BRANCH = main
[server]
PROTOCOL = http
HTTP_ADDR = {self.host}
HTTP_PORT = {self.port}
ROOT_URL = {self.url}/
DOMAIN = {self.host}
STATIC_ROOT_PATH = {self.build.static_root}
APP_DATA_PATH = {r}/data
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false
[security]
INSTALL_LOCK = true
SECRET_KEY = {secrets.token_hex(24)}
; Webhooks may go to loopback only: the operator under test, nowhere else.
ALLOWED_HOST_LIST = loopback
[webhook]
DELIVER_TIMEOUT = 10
[service]
DISABLE_REGISTRATION = true
[log]
MODE = file
LEVEL = Info
ROOT_PATH = {r}/log
[mailer]
ENABLED = false
[session]
PROVIDER = memory
[cache]
ADAPTER = memory
[actions]
ENABLED = false
[packages]
ENABLED = false
[indexer]
REPO_INDEXER_ENABLED = false
[cron]
ENABLED = false
"""
        )

    def _env(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root / "home"),
            "USER": os.environ.get("USER", "root"),
        }
        if os.geteuid() == 0:
            # Gitea refuses root unless told; the test machines run everything as root.
            env["GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT"] = "true"
        return env

    def _command(self) -> list[str]:
        return [str(self.build.binary), "--config", str(self.config), "--work-path", str(self.root)]

    def _admin(self, *args: str) -> str:
        command = [*self._command(), *args]
        result = subprocess.run(
            command, env=self._env(), capture_output=True, text=True, check=False, timeout=120
        )
        if result.returncode != 0:
            raise GiteaError(f"gitea {args[0]} failed: {result.stderr.strip()[-1500:]}")
        return result.stdout.strip()

    def start(self) -> Gitea:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "home").mkdir(exist_ok=True)
        self.port = self.port or free_port(self.host)
        self._write_config()
        self._admin("migrate")
        self._admin(
            "admin", "user", "create", "--admin", "--username", ADMIN,
            "--password", self.password, "--email", f"{ADMIN}@example.invalid",
            "--must-change-password=false",
        )  # fmt: skip
        self.token = self.new_token("all")
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [*self._command(), "web"],
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_serving()
        return self

    def new_token(self, scopes: str) -> str:
        """Another access token of the admin with these scopes (e.g. read:repository)."""
        return self._admin(
            "admin", "user", "generate-access-token", "--username", ADMIN,
            "--token-name", f"tests-{secrets.token_hex(4)}", "--scopes", scopes, "--raw",
        ).splitlines()[-1].strip()  # fmt: skip

    def _wait_serving(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_SECONDS
        while True:
            code = self._process.poll()
            if code is not None:
                raise GiteaError(
                    f"gitea exited with code {code} at start; its log ({self.log_path}):\n"
                    + self.log_path.read_text(errors="replace")[-2000:]
                )
            with contextlib.suppress(OSError, GiteaError):
                self.api("GET", "/version")
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise GiteaError(f"gitea did not answer on {self.url} within {START_SECONDS:.0f}s")
            time.sleep(0.2)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        stop_group(process, STOP_GRACE_SECONDS)

    # ------------------------------------------------------------------ its API

    def api(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, token: str = ""
    ) -> Any:
        """One call to /api/v1`path`; GiteaError with the status and Gitea's message."""
        request = urllib.request.Request(  # noqa: S310 - our Gitea, on loopback
            f"{self.url}/api/v1{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={
                "Authorization": f"token {token or self.token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
                text = answer.read()
        except urllib.error.HTTPError as error:
            raise GiteaError(
                f"{method} {path}: {error.code} {error.read().decode(errors='replace')[:500]}"
            ) from None
        return json.loads(text) if text else None

    def create_repo(self, name: str) -> dict[str, Any]:
        """A private repository of the admin with a first commit on main."""
        repo: dict[str, Any] = self.api(
            "POST",
            "/user/repos",
            {"name": name, "private": True, "auto_init": True, "default_branch": "main"},
        )
        return repo

    def write(
        self, repo: str, path: str, text: str, *, branch: str = "main", new_branch: str = ""
    ) -> str:
        """Commit `text` to `path` on `branch` (or on `new_branch`, made from it); the sha."""
        existing = None
        with contextlib.suppress(GiteaError):
            existing = self.api("GET", f"/repos/{ADMIN}/{repo}/contents/{path}?ref={branch}")
        body: dict[str, Any] = {
            "content": base64.b64encode(text.encode()).decode(),
            "message": f"{path}: {text.splitlines()[0] if text else 'empty'}",
            "branch": branch,
        }
        if new_branch:
            body["new_branch"] = new_branch
        if existing:
            body["sha"] = existing["sha"]
            answer = self.api("PUT", f"/repos/{ADMIN}/{repo}/contents/{path}", body)
        else:
            answer = self.api("POST", f"/repos/{ADMIN}/{repo}/contents/{path}", body)
        return str(answer["commit"]["sha"])

    def head(self, repo: str, branch: str = "main") -> str:
        return str(self.api("GET", f"/repos/{ADMIN}/{repo}/branches/{branch}")["commit"]["id"])

    def merge_pull_request(self, repo: str, head: str, title: str, timeout: float = 60) -> str:
        """Open a pull request from `head` into main and merge it; the merge commit.
        Gitea checks mergeability in the background: until it has, merging answers 405."""
        pull = self.api(
            "POST", f"/repos/{ADMIN}/{repo}/pulls", {"head": head, "base": "main", "title": title}
        )
        index = pull["number"]
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.api(
                    "POST",
                    f"/repos/{ADMIN}/{repo}/pulls/{index}/merge",
                    {"Do": "merge", "merge_message_field": title},
                )
                break
            except GiteaError as error:
                if time.monotonic() >= deadline:
                    raise
                if ": 405 " not in str(error):
                    raise
            time.sleep(0.5)
        merged = self.api("GET", f"/repos/{ADMIN}/{repo}/pulls/{index}")
        return str(merged["merge_commit_sha"])

    def statuses(self, repo: str, sha: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.api("GET", f"/repos/{ADMIN}/{repo}/statuses/{sha}")
        return found

    def add_webhook(self, repo: str, url: str, secret: str) -> dict[str, Any]:
        hook: dict[str, Any] = self.api(
            "POST",
            f"/repos/{ADMIN}/{repo}/hooks",
            {
                "type": "gitea",
                "config": {"url": url, "content_type": "json", "secret": secret},
                "events": ["push"],
                "active": True,
                "branch_filter": "*",
            },
        )
        return hook
