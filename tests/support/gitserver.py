"""Real git repositories for tests, served over real protocols.

`GitHttpServer` runs git's own smart-HTTP server (`git http-backend`, as CGI)
behind a small HTTP server on loopback that demands basic auth. `WorkRepo` is
a working clone a test commits to and pushes from, like a developer merging a
pull request. For fault tests, `GitHttpServer` can come back on its port after a
stop and hold fetches half-answered, and honours partial-clone filters only when
asked (`allow_filter`); `SlowHttpServer` is a git host that hangs.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import http.server
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from tests.support.httpserve import InThread

HTTP_BACKEND = "git-http-backend"


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.strip()


def http_backend() -> str:
    exec_path = _git("--exec-path")
    return str(Path(exec_path) / HTTP_BACKEND)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: GitHttpServer

    def log_message(self, format: str, *args: object) -> None:
        return  # quiet tests

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        with self.server.counter_lock:
            self.server.requests += 1
        expected = base64.b64encode(
            f"{self.server.username}:{self.server.password}".encode()
        ).decode()
        anonymous = self.server.anonymous and "git-receive-pack" not in self.path
        if not anonymous and self.headers.get("Authorization") != f"Basic {expected}":
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        if self.server.read_only and "git-receive-pack" in self.path:
            self.send_response(403)  # this user may read, not push
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ.get("PATH", ""),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": self.server.username,
            "REMOTE_ADDR": self.client_address[0],
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        if self.server.allow_filter:  # partial clones: --filter=blob:limit=... is honoured
            env |= {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "uploadpack.allowFilter",
                "GIT_CONFIG_VALUE_0": "true",
            }
        if self.headers.get("Content-Encoding") == "gzip":
            env["HTTP_CONTENT_ENCODING"] = "gzip"
        result = subprocess.run(
            [self.server.backend], input=body, env=env, capture_output=True, timeout=60, check=False
        )
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.server.stall_fetches.is_set() and self._is_fetch(body):
            self._stall(payload)
            return
        self.wfile.write(payload)

    def _is_fetch(self, body: bytes) -> bool:
        """A protocol v2 `fetch` command (not the `ls-refs` of ls-remote)."""
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return self.command == "POST" and b"command=fetch" in body

    def _stall(self, payload: bytes) -> None:
        """Answer a fetch up to the start of its pack and no further: the client has taken
        its locks (shallow.lock, for a shallow fetch) and waits for the pack, until
        `stall_fetches` is cleared; then the connection closes, the pack never sent."""
        start = payload.find(b"packfile\n")
        self.wfile.write(payload[: start + len(b"packfile\n")] if start >= 0 else b"")
        self.wfile.flush()
        with self.server.counter_lock:
            self.server.stalled_fetches += 1
        while self.server.stall_fetches.is_set():
            time.sleep(0.05)
        self.close_connection = True


class GitHttpServer(InThread, http.server.ThreadingHTTPServer):
    """Smart HTTP for every bare repository under `root`, at http://HOST:PORT/<name>
    (`host` loopback, or the host's end of the real node's veth for pods to reach)."""

    def __init__(
        self,
        root: Path,
        username: str = "git",
        password: str | None = None,
        read_only: bool = False,
        port: int = 0,
        allow_filter: bool = False,
        anonymous: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__((host, port), _Handler)
        self.host = host
        self.root = root
        self.read_only = read_only
        # git's default is off: a server that sends every blob, whatever the client asks.
        self.allow_filter = allow_filter
        # Anyone may read (a public repository host); pushing still takes the password.
        self.anonymous = anonymous
        self.username = username
        self.password = password or secrets.token_hex(12)
        self.backend = http_backend()
        # While set, fetches hang half-answered (see _Handler._stall); counted here.
        self.stall_fetches = threading.Event()
        self.stalled_fetches = 0
        self.requests = 0  # every HTTP request, answered or refused
        self.counter_lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.server_address[1]}"

    def stop(self) -> None:
        self.stall_fetches.clear()  # a stalled handler ends
        super().stop()

    def restarted(self) -> GitHttpServer:
        """After `stop`: the same server again, on the same port, root and credentials
        (a git host back from an outage), started."""
        return GitHttpServer(
            self.root,
            self.username,
            self.password,
            read_only=self.read_only,
            port=self.server_address[1],
            allow_filter=self.allow_filter,
            anonymous=self.anonymous,
            host=self.host,
        ).start()

    def url(self, repo: str) -> str:
        return f"{self.base_url}/{repo}"


class SlowHttpServer:
    """A git host that hangs: it accepts every connection on loopback, reads the request,
    and answers nothing for `delay` seconds (then 503). It counts connections open at once
    (`peak`, `total`) and notices a client hanging up at once, so a client killed by its
    timeout no longer counts and a second connection while one is open is a real pile-up."""

    def __init__(self, delay: float = 300.0, port: int = 0) -> None:
        self.delay = delay
        self.open = 0
        self.peak = 0
        self.total = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", port))
        self._listener.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept, name="slow-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def url(self, repo: str) -> str:
        return f"http://127.0.0.1:{self.port}/{repo}"

    def start(self) -> SlowHttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.open += 1
                self.total += 1
                self.peak = max(self.peak, self.open)
            threading.Thread(target=self._hang, args=(connection,), daemon=True).start()

    def _hang(self, connection: socket.socket) -> None:
        deadline = time.monotonic() + self.delay
        try:
            with connection:
                connection.settimeout(0.2)
                while time.monotonic() < deadline and not self._stopped.is_set():
                    try:
                        if not connection.recv(65536):
                            return  # the client hung up (or was killed)
                    except TimeoutError:
                        continue
                with contextlib.suppress(OSError):
                    connection.sendall(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
                    )
        except OSError:
            return  # reset by the client
        finally:
            with self._lock:
                self.open -= 1


class WorkRepo:
    """A bare repository (what the server serves) and a working clone to commit in."""

    def __init__(self, root: Path, name: str) -> None:
        self.bare = root / f"{name}.git"
        self.work = root / f"{name}-work"
        _git("init", "--quiet", "--bare", "--initial-branch=main", str(self.bare))
        _git("init", "--quiet", "--initial-branch=main", str(self.work))
        _git("remote", "add", "origin", str(self.bare), cwd=self.work)

    @property
    def file_url(self) -> str:
        return f"file://{self.bare}"

    def write(self, path: str, text: str) -> WorkRepo:
        file = self.work / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
        return self

    def symlink(self, path: str, target: str) -> WorkRepo:
        link = self.work / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
        return self

    def remove(self, path: str) -> WorkRepo:
        target = self.work / path
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
        return self

    def commit(self, message: str = "change", branch: str = "main") -> str:
        """Commit everything and push: returns the new commit's sha."""
        _git("add", "--all", cwd=self.work)
        _git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.work)
        _git("push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{branch}", cwd=self.work)
        return _git("rev-parse", "HEAD", cwd=self.work)

    def tag(self, name: str, annotated: bool = False) -> None:
        args = ["tag", "-a", name, "-m", name] if annotated else ["tag", name]
        _git(*args, cwd=self.work)
        _git("push", "--quiet", "origin", f"refs/tags/{name}", cwd=self.work)

    def reset_hard(self, ref: str) -> str:
        """Move main back (a force-push to an older commit)."""
        _git("reset", "--quiet", "--hard", ref, cwd=self.work)
        _git("push", "--quiet", "--force", "origin", "HEAD:refs/heads/main", cwd=self.work)
        return _git("rev-parse", "HEAD", cwd=self.work)

    def revert(self, ref: str = "HEAD") -> str:
        """`git revert` a commit and push, as a pull request that reverts would."""
        _git("revert", "--no-edit", ref, cwd=self.work)
        _git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=self.work)
        return _git("rev-parse", "HEAD", cwd=self.work)

    def head(self) -> str:
        return _git("rev-parse", "HEAD", cwd=self.work)


class GitSshServer:
    """OpenSSH's sshd on a loopback port, key authentication only, serving the bare
    repositories under `root` to `git` over ssh (ssh://root@127.0.0.1:PORT/<path>)."""

    SSHD = "/usr/sbin/sshd"

    def __init__(self, root: Path, state: Path, port: int) -> None:
        self.root = root
        self.state = state
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        state.mkdir(parents=True, exist_ok=True)
        self.host_key = state / "host_ed25519"
        self.client_key = state / "client_ed25519"
        for key in (self.host_key, self.client_key):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                check=True,
                timeout=30,
            )
        (state / "authorized_keys").write_text(self.client_key.with_suffix(".pub").read_text())
        (state / "sshd_config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"PidFile {state / 'sshd.pid'}\nAuthorizedKeysFile {state / 'authorized_keys'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "StrictModes no\nPermitRootLogin prohibit-password\n"
            f"SetEnv PATH={os.environ.get('PATH', '/usr/bin:/bin')}\n"
        )

    @property
    def known_hosts(self) -> str:
        public = self.host_key.with_suffix(".pub").read_text().split()
        return f"[127.0.0.1]:{self.port} {public[0]} {public[1]}\n"

    @property
    def private_key(self) -> str:
        return self.client_key.read_text()

    def url(self, repo: str) -> str:
        return f"ssh://root@127.0.0.1:{self.port}{self.root / repo}"

    def start(self) -> GitSshServer:
        # sshd insists on its privilege-separation directory, made by its service unit.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.process = subprocess.Popen(
            [self.SSHD, "-D", "-e", "-f", str(self.state / "sshd_config")],
            stdout=subprocess.DEVNULL,
            stderr=(self.state / "sshd.log").open("wb"),
        )
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
