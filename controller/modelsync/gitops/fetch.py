"""Fetch: resolve a ModelSync's ref to a commit, and check that commit out.

Resolving is one `git ls-remote` (cheap: no objects move). Fetching happens
only when the commit is not in the local cache yet, shallow (depth 1), into a
bare repository per URL (spellings every host reads the same share one:
`repo_key`), leaving out blobs over the byte budget where the server can filter;
a commit becomes an immutable snapshot directory keyed by its sha. A snapshot holds
the whole tree of its revision, measured before it is written (`budget`) and
streamed to disk from `git archive`: a huge file in a repository is refused
with its name, never read into the operator's memory.

The whole cache (snapshots, repositories, and the scratch directories of renders
and write-backs) stays under one disk budget (`disk`): each fetch, extract, render
copy and clone reserves its worst case first, and what no running sync uses is
trimmed, least recently used first. A sync holds a lease on its snapshot
(`leased`) from checkout to its end: a snapshot being read is never trimmed.

Credentials reach git through the environment of the one command that needs
them (GIT_ASKPASS for https, GIT_SSH_COMMAND with a 0600 key file for ssh);
they never appear in a URL, a log line, a status or an event. The askpass
script and key files live in a private directory (0700) made for that one
command and removed when it ends, never in the shared cache a repository's
content could reach.

A tenant names the URL, so git may speak only https, http, ssh (and file, when
the operator allows it); `--end-of-options` comes before every URL and ref, so
neither can be read as an option. A cached commit is served to a ModelSync
only after it proved its own access to that URL, and only if the commit came
from that URL: the snapshot cache is keyed by sha and shared.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import git
import semantic_version

from modelsync.api import constants as c
from modelsync.api.origins import hidden_address
from modelsync.gitops import budget, disk
from modelsync.telemetry import metrics

GIT_TIMEOUT_SECONDS = 120.0
# Overrides GIT_TIMEOUT_SECONDS: a slow git host, or a test that cannot wait two minutes.
GIT_TIMEOUT_ENV = "MODELSYNC_GIT_TIMEOUT_SECONDS"
# The git commands that talk to a server (counted in modelsync_git_requests_total).
REMOTE_COMMANDS = frozenset({"ls-remote", "fetch", "clone", "push"})
SHA = re.compile(r"^[0-9a-f]{40}$")
BIG_FILE_THRESHOLD = 1 << 20  # bytes; see checkout
# A snapshot being written: snapshots/.scratch-<repository key>-<sha>-<random>; one left
# behind by a crash is swept by the next holder of that repository's lock.
SCRATCH_PREFIX = ".scratch-"
# What a fetch may write, as a multiple of the budget (see _fetch).
FETCH_FACTOR = 4
# The git cache's disk budget by default (the chart's: operator.gitCacheMaxBytes).
MAX_CACHE_BYTES = 3 << 30
# What one sync may need of the disk budget at once, in fetch cut-offs (`fetch_cap`): a
# fetch's pack and index (each cut off at it), the repository's earlier packs (started
# afresh past one cut-off), and its snapshot with a render's copy or a write-back's
# clone (a pack and an index again). A budget below it could refuse a sync alone.
SYNC_CAPS = 6
# Snapshots and repositories being deleted, and scratch directories, in the cache.
TRASH, SCRATCH = "trash", "scratch"
# A repository's own small files (config, HEAD, shallow, FETCH_HEAD, refs, a lock file)
# beside its packs, in blocks: what a fetch or a clone writes besides its pack and index.
REPOSITORY_BYTES = 64 << 10
DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22}
# prlimit(1) (util-linux; in Debian's base images) bounds what a fetch writes.
PRLIMIT = shutil.which("prlimit")
MAX_REFUSED = 1024  # revisions remembered as too large (each a message of a few hundred bytes)
# The transports a tenant's URL may use; everything else (ext::, git://, fd::...) is
# refused by git itself too (protocol.allow=never). http is kept: the CRD admits it
# and git hosts inside a cluster often speak it; file only when the operator says so.
PROTOCOLS = ("https", "http", "ssh")
SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:")

# Answers git's username and password prompts from the environment of one command.
ASKPASS = """#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "$MODELSYNC_GIT_USERNAME" ;;
  *) printf '%s\\n' "$MODELSYNC_GIT_PASSWORD" ;;
esac
"""


class FetchError(Exception):
    """The repository could not be read; the message is safe to show (no secrets)."""


class RevisionTooLargeError(FetchError):
    """The revision's files exceed the byte budget: its content, not the server, is at
    fault, so trying again does not help until the repository changes."""


@dataclass(frozen=True)
class Credentials:
    username: str | None = None
    password: str | None = None  # a password or a token
    ssh_key: str | None = None
    known_hosts: str | None = None

    @property
    def secrets(self) -> list[str]:
        return [value for value in (self.password, self.ssh_key) if value]


@dataclass(frozen=True)
class Ref:
    branch: str | None = None
    tag: str | None = None
    semver: str | None = None
    commit: str | None = None

    @classmethod
    def from_spec(cls, spec: dict[str, str] | None) -> Ref:
        spec = spec or {"branch": "main"}
        return cls(spec.get("branch"), spec.get("tag"), spec.get("semver"), spec.get("commit"))


@dataclass(frozen=True)
class Revision:
    """A resolved ref: `name` is what status shows, e.g. main@sha1:<40 hex>."""

    name: str
    sha: str
    fetch_ref: str  # what to fetch: a ref name, or the sha itself


def revision_name(label: str, sha: str) -> str:
    return f"{label}@sha1:{sha}"


def pick_ref(ref: Ref, listing: dict[str, str]) -> Revision:
    """Choose the commit `ref` means among `ls-remote` output (ref name -> sha). Pure."""
    if ref.commit:
        if not SHA.match(ref.commit):
            raise FetchError(f"commit {ref.commit!r} is not a 40-hex sha; check spec.repo.ref")
        return Revision(revision_name(ref.commit[:12], ref.commit), ref.commit, ref.commit)
    if ref.branch:
        name = f"refs/heads/{ref.branch}"
        if name not in listing:
            raise FetchError(f"branch {ref.branch!r} does not exist in the repository")
        return Revision(revision_name(ref.branch, listing[name]), listing[name], name)
    tags = {
        name.removeprefix("refs/tags/").removesuffix("^{}"): sha
        for name, sha in sorted(listing.items(), key=lambda item: item[0].endswith("^{}"))
        if name.startswith("refs/tags/")
    }  # a peeled entry (^{}) names the commit an annotated tag points at: it wins
    if ref.tag:
        if ref.tag not in tags:
            raise FetchError(f"tag {ref.tag!r} does not exist in the repository")
        return Revision(
            revision_name(ref.tag, tags[ref.tag]), tags[ref.tag], f"refs/tags/{ref.tag}"
        )
    assert ref.semver is not None
    try:
        spec = semantic_version.NpmSpec(ref.semver)
    except ValueError as error:
        raise FetchError(f"semver range {ref.semver!r} is not valid: {error}") from error
    versions: dict[semantic_version.Version, str] = {}
    for tag in tags:
        with contextlib.suppress(ValueError):
            versions[semantic_version.Version(tag.removeprefix("v"))] = tag
    best = spec.select(versions)
    if best is None:
        raise FetchError(f"no tag matches semver range {ref.semver!r}")
    tag = versions[best]
    return Revision(revision_name(tag, tags[tag]), tags[tag], f"refs/tags/{tag}")


def parse_ls_remote(text: str) -> dict[str, str]:
    listing: dict[str, str] = {}
    for line in text.splitlines():
        sha, _, name = line.partition("\t")
        if SHA.match(sha) and name:
            listing[name] = sha
    return listing


def redact(text: str, credentials: Credentials | None) -> str:
    for secret in credentials.secrets if credentials else []:
        text = text.replace(secret, "[redacted]")
    # Whatever git echoes of a URL, user:password@ never goes further.
    return re.sub(r"(://)[^/@\s]+@", r"\1", text)


def check_url(url: str, allow_file: bool, cache_dir: Path | None = None) -> None:
    """Refuse a repository URL git must not be pointed at: a transport other than https,
    http, ssh (file only when allowed), or anything git could read as an option. Pure."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if url.startswith("-") or not url.strip():
        raise FetchError(f"repository URL {url!r} is not a URL; check spec.repo.url")
    if scheme == "file":
        if not allow_file:
            raise FetchError(
                f"file:// URLs are turned off in this operator ({url}): they would read any "
                "repository on its disk. Use an https:// or ssh:// URL in spec.repo.url "
                "(the platform team can allow file:// with "
                f"`modelsync run {c.FLAG_ALLOW_FILE_URLS}`)"
            )
        path = Path(url.removeprefix("file://")).resolve()
        if cache_dir is not None and path.is_relative_to(cache_dir.resolve()):
            raise FetchError(f"{url} is inside the operator's git cache; check spec.repo.url")
        return
    if scheme in PROTOCOLS or (not scheme and SCP_LIKE.match(url)):
        _check_authority(url, scheme)
        return
    raise FetchError(
        f"repository URL {url!r}: only https://, http://, ssh:// and user@host:path URLs "
        "are allowed; check spec.repo.url"
    )


def _check_authority(url: str, scheme: str) -> None:
    """No credential in the URL (over http(s) not even a user name: a token is one, and
    the URL is shown in status, Events and logs), and no `hidden_address` host."""
    if scheme:
        parts = urllib.parse.urlsplit(url)
        userinfo, _, _ = parts.netloc.rpartition("@")
        host = parts.hostname or ""
    else:  # user@host:path
        userinfo, _, rest = url.partition("@")
        host = rest.partition(":")[0]
    if userinfo and (scheme in ("http", "https") or ":" in userinfo):
        raise FetchError(
            f"repository URL {redact(url, None)!r} must not carry credentials, not even a "
            "token as user name: put them in the Secret named by spec.repo.secretRef"
        )
    if hidden := hidden_address(host):
        raise FetchError(f"repository URL {redact(url, None)!r}: {hidden}; check spec.repo.url")


def repo_key(url: str) -> str:
    """The cached repository a URL is kept in: spellings that every git host reads as
    the same repository share one (the scheme's and host's case, the default port, one
    trailing `/`, then one `.git`); the path's case, another port and the user never
    fold — a repository shared by two URLs serves one's cached commits to the other.
    A file:// path keeps its `.git` (another directory). Pure."""
    scheme, sep, rest = url.partition("://")
    if not sep:  # user@host:path (scp-like): the host's case only, and the suffixes
        user, _, rest = url.rpartition("@")
        host, _, path = rest.partition(":")
        return f"scp:{user}@{host.lower()}:{_fold_path(path)}"
    scheme = scheme.lower()
    if scheme == "file":
        return f"file://{rest.rstrip('/') or rest}"
    authority, slash, path = rest.partition("/")
    user, at, hostport = authority.rpartition("@")
    parsed = urllib.parse.urlsplit(f"//{hostport}")
    try:
        port = parsed.port
    except ValueError:
        port = None  # not a port: kept as written, below
    host = (parsed.hostname or hostport).lower()
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address, as written in a URL
    if port is None and ":" in hostport.rpartition("]")[2]:
        host = hostport.lower()
    elif port is not None and port != DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    return f"{scheme}://{user}{at}{host}{slash}{_fold_path(path)}"


def _fold_path(path: str) -> str:
    path = path.removesuffix("/")
    return path.removesuffix(".git")


def protocol_config(allow_file: bool) -> list[str]:
    """`git -c` arguments that let git use the allowed transports and no other."""
    allowed = [*PROTOCOLS, *(["file"] if allow_file else [])]
    config = ["-c", "protocol.allow=never"]
    for name in allowed:
        config += ["-c", f"protocol.{name}.allow=always"]
    return config


class GitFetcher:
    """Resolves and fetches repositories into a cache directory (one per operator)."""

    def __init__(
        self,
        cache_dir: Path,
        max_snapshots: int = 32,
        timeout: float | None = None,
        max_revision_bytes: int = budget.MAX_REVISION_BYTES,
        allow_file_urls: bool = False,
        max_cache_bytes: int = MAX_CACHE_BYTES,
    ) -> None:
        least = least_cache_bytes(max_revision_bytes)
        if max_cache_bytes < least:
            raise ValueError(
                f"--git-cache-max-bytes {max_cache_bytes} is below what one sync may need at "
                f"--max-revision-bytes {max_revision_bytes} ({least} bytes: {SYNC_CAPS} times "
                "a fetch's cut-off); raise the first or lower the second"
            )
        self.cache_dir = cache_dir
        self.max_snapshots = max_snapshots
        self.max_revision_bytes = max_revision_bytes
        self.allow_file_urls = allow_file_urls
        self.disk = disk.DiskBudget(max_cache_bytes)
        self._trimming = threading.Lock()
        # Read once, at start: a bad value stops the operator instead of every sync.
        self.timeout = timeout if timeout is not None else git_timeout_seconds()
        for name in ("repos", "snapshots", TRASH, SCRATCH):
            (cache_dir / name).mkdir(parents=True, exist_ok=True)
        # An older operator kept its askpass script here, where a repository's content
        # could be written through a symlink; it is never used again.
        (cache_dir / "askpass.sh").unlink(missing_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # Snapshots in use, by sha: how many syncs hold each (see `leased`).
        self._leases: dict[str, int] = {}
        # Revisions refused for their size, by (repository key, sha): why, in a few words.
        self._refused: dict[tuple[str, str], str] = {}
        self._sweep_all()
        # The cache's own directories, then what it holds (a repository with its lock file).
        self.disk.keep(cache_dir, 5 * budget.BLOCK)
        for kept in self._snapshots():
            self.disk.keep(kept, disk.usage(kept))
        for kept in (cache_dir / "repos").glob("*.git"):
            self.disk.keep(kept, disk.usage(kept) + budget.BLOCK)

    @property
    def fetch_cap(self) -> int:
        """Bytes one file a fetch writes may hold (its pack; its index): see `_fetch`."""
        return fetch_cap(self.max_revision_bytes)

    @property
    def clone_bytes(self) -> int:
        """What a fetch into a new repository may write: a pack and an index, each up to
        the cut-off, and the repository's own small files."""
        return 2 * self.fetch_cap + REPOSITORY_BYTES

    # ------------------------------------------------------------------ git plumbing

    @contextlib.contextmanager
    def _environment(self, credentials: Credentials | None) -> Iterator[dict[str, str]]:
        with private_environment(credentials) as env:
            yield env

    def run_git(
        self,
        args: list[str],
        credentials: Credentials | None,
        git_dir: Path | None = None,
        max_file_bytes: int | None = None,
    ) -> str:
        """`max_file_bytes`: no file git writes may grow past it (RLIMIT_FSIZE, for git
        and its children; git dies writing past it) where prlimit(1) is installed."""
        command = [
            "git",
            "-c",
            "credential.helper=",
            "-c",
            "protocol.version=2",
            *protocol_config(self.allow_file_urls),
        ]
        if max_file_bytes is not None and PRLIMIT:
            command = [PRLIMIT, f"--fsize={max_file_bytes}", "--", *command]
        if git_dir is not None:
            command += ["--git-dir", str(git_dir)]
        remote = args[0] if args[0] in REMOTE_COMMANDS else None
        started = time.monotonic()
        with self._environment(credentials) as env:
            try:
                output: str = git.Git().execute(
                    [*command, *args],
                    env=env,
                    kill_after_timeout=self.timeout,
                )
            except git.GitCommandError as error:
                stderr = redact(str(error.stderr or "").strip(), credentials)
                if remote:
                    timed_out = "did not complete in" in stderr
                    _count(remote, "timeout" if timed_out else "error", started)
                raise FetchError(_explain(stderr) or f"git {args[0]} failed") from None
        if remote:
            _count(remote, "success", started)
        return output

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    # ------------------------------------------------------------------ the two steps

    def resolve(self, url: str, ref: Ref, credentials: Credentials | None = None) -> Revision:
        """The commit `ref` points at now: one ls-remote, no objects fetched. A pinned
        commit asks the server too: the ls-remote proves this ModelSync's own access,
        whatever the cache already holds."""
        check_url(url, self.allow_file_urls, self.cache_dir)
        if ref.commit:
            patterns = ["HEAD"]
        elif ref.branch:
            patterns = [f"refs/heads/{ref.branch}"]
        else:
            patterns = ["refs/tags/*"]
        listing = parse_ls_remote(
            self.run_git(["ls-remote", "--end-of-options", url, *patterns], credentials)
        )
        return pick_ref(ref, listing)

    def checkout(
        self, url: str, revision: Revision, credentials: Credentials | None = None
    ) -> Path:
        """An immutable directory with the files of `revision`, fetched if needed. The
        cached snapshot of a sha is shared by every URL that has that commit; it is used
        only when the commit is in this URL's own cached repository (so came from it):
        another tenant's sha named with one's own repository is fetched from it, and fails.
        Unless `leased`, the snapshot may be trimmed as soon as this returns."""
        check_url(url, self.allow_file_urls, self.cache_dir)
        snapshot = self.cache_dir / "snapshots" / revision.sha
        repo = self.repo_dir(url)
        if snapshot.is_dir() and self._has_commit(repo, revision.sha):
            _used(snapshot, repo)
            return snapshot
        with self._exclusive(repo):
            with self._locks_guard:
                refused = self._refused.get((_key(repo), revision.sha))
            if refused:  # the same content fails the same way: not fetched again
                raise RevisionTooLargeError(refused)
            if repo.exists() and self.disk.kept(repo) > self.fetch_cap:
                # The packs of many revisions (pinned ones, a long run of syncs): a shallow
                # fetch needs none of them, so the repository starts afresh.
                self._delete(repo)
            if not repo.exists():
                self._init(repo)
            if not self._has_commit(repo, revision.sha):
                self._fetch(repo, url, revision, credentials)
                if not self._has_commit(repo, revision.sha):
                    raise FetchError(
                        f"{revision.fetch_ref} moved while fetching (wanted {revision.sha[:12]});"
                        " the next sync takes the new commit"
                    )
            _used(repo)
            if snapshot.is_dir():
                _used(snapshot)
                return snapshot
            self._extract(repo, revision.sha, snapshot)
        # Old snapshots go in the background: deleting a thousand files is no reason to
        # keep a sync (and the webhook's latency) waiting.
        threading.Thread(target=self._trim_now, name="trim-snapshots", daemon=True).start()
        return snapshot

    @contextlib.contextmanager
    def leased(
        self, url: str, revision: Revision, credentials: Credentials | None = None
    ) -> Iterator[Path]:
        """`checkout`, with the snapshot held until the block ends: a sync reads its
        snapshot from render to apply, and no trim deletes it meanwhile."""
        with self._locks_guard:
            self._leases[revision.sha] = self._leases.get(revision.sha, 0) + 1
        try:
            yield self.checkout(url, revision, credentials)
        finally:
            with self._locks_guard:
                left = self._leases.pop(revision.sha) - 1
                if left:
                    self._leases[revision.sha] = left

    @contextlib.contextmanager
    def scratch(self, size: int, what: str) -> Iterator[Path]:
        """A private directory (0700) in the cache for `what` (a render's copy of a
        revision, a write-back's clone) to write up to `size` bytes in, reserved in the
        disk budget while the block runs; removed when it ends. DiskFullError when the
        budget has no room for it."""
        with self.disk.reserve(size, what, self._trim):
            directory = Path(tempfile.mkdtemp(prefix="work-", dir=self.cache_dir / SCRATCH))
            try:
                yield directory
            finally:
                shutil.rmtree(directory, ignore_errors=True)

    def fetch_commits(
        self,
        git_dir: Path,
        url: str,
        shas: list[str],
        credentials: Credentials | None,
        max_blob_bytes: int,
    ) -> None:
        """These commits alone into a new bare repository at `git_dir` (a write-back's):
        shallow, blobs over `max_blob_bytes` left out where the server can filter, every
        file git writes cut off at `fetch_cap`. Nothing is fetched lazily later (its own
        config says protocol.allow=never): a left-out blob stays missing."""
        self._init(git_dir)
        for key, value in (("protocol.allow", "never"), ("push.negotiate", "true")):
            self.run_git(["config", key, value], None, git_dir)
        self.run_git(
            [
                "fetch",
                "--quiet",
                "--depth=1",
                "--no-tags",
                f"--filter=blob:limit={max_blob_bytes + 1}",
                "--end-of-options",
                url,
                *shas,
            ],
            credentials,
            git_dir=git_dir,
            max_file_bytes=self.fetch_cap,
        )

    def repo_dir(self, url: str) -> Path:
        """The cached bare repository of `url` (of every spelling `repo_key` folds)."""
        name = hashlib.sha256(repo_key(url).encode()).hexdigest()[:20]
        return self.cache_dir / "repos" / f"{name}.git"

    def _init(self, repo: Path) -> None:
        # No template: nothing but what git needs (no sample hooks, 60 KiB a repository).
        self.run_git(["init", "--quiet", "--bare", "--template=", str(repo)], None)
        # git streams blobs above this instead of holding each whole (index-pack on fetch,
        # archive on extract): its memory stays small. Every fetch becomes one pack file
        # (no loose objects), which max_file_bytes bounds.
        for key, value in (
            ("core.bigFileThreshold", str(BIG_FILE_THRESHOLD)),
            ("transfer.unpackLimit", "1"),
        ):
            self.run_git(["config", key, value], None, repo)

    @contextlib.contextmanager
    def _exclusive(self, repo: Path) -> Iterator[None]:
        """One cached repository, for this thread alone: this process's lock, and a lock
        file other processes sharing the cache respect (flock: the kernel releases it when
        its holder dies, however it dies). Holding both, no git runs in `repo`, so a git
        lock file found there was left by a git killed mid-command along with its operator
        (the cache, an emptyDir, outlives the container): it would fail every fetch."""
        with self._lock(str(repo)), (repo.parent / f"{repo.name}.flock").open("a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            for stale in [*repo.glob("*.lock"), *repo.glob("refs/**/*.lock")]:
                stale.unlink(missing_ok=True)
            self._sweep(repo)
            yield

    def _sweep(self, repo: Path) -> None:
        """What a process killed mid-command left of `repo`'s work, its lock held: half a
        pack from a fetch, half a snapshot from an extract (either can be large)."""
        for partial in repo.glob("objects/pack/tmp_*"):
            partial.unlink(missing_ok=True)
        for scratch in (self.cache_dir / "snapshots").glob(f"{SCRATCH_PREFIX}{_key(repo)}-*"):
            shutil.rmtree(scratch, ignore_errors=True)

    def _sweep_all(self) -> None:
        """At start: sweep every cached repository no other process is working in (one
        that is, sweeps when it next takes the lock), and what a killed operator left
        being deleted or in a scratch directory (one operator uses a cache at a time)."""
        for name in (TRASH, SCRATCH):
            for left in (self.cache_dir / name).iterdir():
                shutil.rmtree(left, ignore_errors=True)
        for flock in (self.cache_dir / "repos").glob("*.git.flock"):
            repo = flock.with_suffix("")
            with flock.open("a") as held:
                try:
                    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                self._sweep(repo)

    def _fetch(
        self, repo: Path, url: str, revision: Revision, credentials: Credentials | None
    ) -> None:
        """The commit and its whole tree, but blobs over the budget where the server can
        filter (uploadpack.allowFilter; one that cannot sends them, and git warns). What it
        sends is cut at FETCH_FACTOR times the budget: enough to name the files of a
        revision somewhat over it, never a disk filled by one tenant."""
        cap = self.fetch_cap
        try:
            # Its pack and the pack's index, each up to the cut-off, in the disk budget.
            with self.disk.reserve(self.clone_bytes, "a fetch", self._trim):
                try:
                    self.run_git(
                        [
                            "fetch",
                            "--quiet",
                            "--depth=1",
                            "--no-tags",
                            f"--filter=blob:limit={self.max_revision_bytes + 1}",
                            "--end-of-options",
                            url,
                            revision.fetch_ref,
                        ],
                        credentials,
                        git_dir=repo,
                        max_file_bytes=cap,
                    )
                finally:
                    self.disk.keep(repo, disk.usage(repo) + budget.BLOCK)
        except FetchError as error:
            cut = any(p.stat().st_size >= cap for p in repo.glob("objects/pack/tmp_pack_*"))
            self._sweep(repo)
            self.disk.keep(repo, disk.usage(repo) + budget.BLOCK)
            if not cut and "not our ref" in str(error):
                raise FetchError(
                    f"commit {revision.sha[:12]} is not in {url}; check spec.repo.ref"
                ) from None
            if not cut:
                raise
            raise self._refuse(
                repo,
                revision.sha,
                f"the server sent more than {cap} bytes for this revision and was cut off; "
                f"{budget.too_large_fetch(self.max_revision_bytes)}",
            ) from None

    def _refuse(self, repo: Path, sha: str, message: str) -> RevisionTooLargeError:
        """The refusal of `sha`, remembered: the same content fails the same way."""
        with self._locks_guard:
            self._refused[(_key(repo), sha)] = message
            while len(self._refused) > MAX_REFUSED:
                del self._refused[next(iter(self._refused))]
        return RevisionTooLargeError(message)

    def _has_commit(self, repo: Path, sha: str) -> bool:
        # Locally only: in a repository a filtered fetch made, a plain `cat-file -e` asks
        # the server for a missing commit alone (no trees), and the fetch would be skipped.
        if not repo.is_dir():
            return False
        try:
            list(self._local_git(repo, ["cat-file", "-e", "--end-of-options", f"{sha}^{{commit}}"]))
        except FetchError:
            return False
        return True

    def _extract(self, repo: Path, sha: str, snapshot: Path) -> None:
        """Measure the revision (no blob read), then stream its whole tree to a scratch
        directory, renamed into place only when complete."""
        missing = budget.parse_missing(
            self._local_git(repo, ["rev-list", "--objects", "--no-walk", "--missing=print", sha])
        )
        sizes = [] if missing else ["-l"]  # -l would read (lazily fetch) a missing blob
        footprint = budget.Footprint()
        with contextlib.closing(
            self._local_git(repo, ["ls-tree", "-r", "-z", "--full-tree", *sizes, sha], "\0")
        ) as listing:
            refused = budget.refusal(
                footprint.count(budget.parse_ls_tree(listing, missing)), self.max_revision_bytes
            )
        # Beside its repository (locked by this thread), the most the budget holds.
        if not refused and footprint.bytes > self.disk.limit - self.disk.kept(repo):
            raise self._refuse(
                repo,
                sha,
                f"the revision's files take {footprint.bytes} bytes on disk once written "
                f"(blocks of {budget.BLOCK} bytes, one a file at least), more than the "
                f"operator's git cache has room for ({self.disk.limit} bytes, "
                "--git-cache-max-bytes); keep generated or vendored trees out of the "
                "repository the operator reads",
            )
        if refused:
            # The cached repository goes: big blobs a server that does not filter sent
            # would stay for good, and blobs a filter left out would stay missing (so
            # refused) after the budget is raised. It is only a cache: the next fetch
            # (of this revision after a restart, or of the next) starts afresh.
            self._delete(repo)
            raise self._refuse(repo, sha, refused)
        with self.disk.reserve(footprint.bytes, "a snapshot", self._trim):
            self._write_snapshot(repo, sha, snapshot)
            self.disk.keep(snapshot, disk.usage(snapshot))

    def _write_snapshot(self, repo: Path, sha: str, snapshot: Path) -> None:
        scratch = Path(
            tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{_key(repo)}-{sha}-", dir=snapshot.parent)
        )
        try:
            written = 0
            # Stream mode ("r|"): one member at a time, straight from git's pipe to disk.
            with (
                self._git_process(repo, ["archive", "--format=tar", sha]) as stdout,
                tarfile.open(fileobj=stdout, mode="r|") as tar,
            ):
                for member in tar:
                    written += member.size
                    if written > self.max_revision_bytes:  # measured above; a guard
                        raise RevisionTooLargeError(
                            f"the revision's files exceed {self.max_revision_bytes} bytes"
                        )
                    checked = snapshot_filter(member, str(scratch))
                    if checked is None:
                        continue
                    if _HAS_FILTERS:
                        tar.extract(checked, scratch, filter="fully_trusted")  # checked above
                    else:
                        tar.extract(checked, scratch)
            try:
                scratch.rename(snapshot)
            except OSError:
                if not snapshot.is_dir():
                    raise
                shutil.rmtree(scratch)  # another URL's sync wrote the same commit meanwhile
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise

    def _local_git(
        self, repo: Path, args: list[str], separator: str = "\n"
    ) -> Generator[str, None, None]:
        """The records of a git command's output, read as they come (a listing of a large
        tree is never held whole)."""
        with self._git_process(repo, args) as stdout:
            pending = b""
            while chunk := stdout.read(1 << 16):
                *records, pending = (pending + chunk).split(separator.encode())
                for record in records:
                    yield record.decode("utf-8", "surrogateescape")
            if pending:
                yield pending.decode("utf-8", "surrogateescape")

    @contextlib.contextmanager
    def _git_process(self, repo: Path, args: list[str]) -> Iterator[IO[bytes]]:
        """A local git command in `repo`, its stdout to read. It may not reach any server
        (protocol.allow=never: an object a filtered fetch left out is never fetched lazily,
        whatever asks for it), and it is killed at the timeout or when the reader stops."""
        command = [
            "git",
            "-c",
            "protocol.allow=never",
            "-c",
            f"core.bigFileThreshold={BIG_FILE_THRESHOLD}",
            "--git-dir",
            str(repo),
            *args,
        ]
        with (
            # A HOME of its own, no global or system config: the cache directory (every
            # tenant's repositories) is no HOME, where a .gitconfig or a
            # .config/git/attributes (export-ignore, filters) would change what git
            # reads and writes of a revision.
            private_environment(None) as private,
            tempfile.TemporaryFile() as stderr,
            subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env={**private, "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            ) as process,
        ):
            assert process.stdout is not None
            timed_out = threading.Event()

            def kill() -> None:
                timed_out.set()
                process.kill()

            timer = threading.Timer(self.timeout, kill)
            timer.start()
            try:
                yield process.stdout
            except BaseException:
                process.kill()  # the reader gave up (a refusal, an error): git need not go on
                raise
            finally:
                timer.cancel()
                process.stdout.close()
            if process.wait() != 0:
                stderr.seek(0)
                complaint = stderr.read(4096).decode("utf-8", "replace").strip()
                if timed_out.is_set():
                    complaint = f"timed out after {self.timeout:g}s ({GIT_TIMEOUT_ENV})"
                raise FetchError(f"git {args[0]} failed in the cache: {complaint}")

    def _trim_now(self) -> None:
        """Snapshots beyond `max_snapshots` go, oldest use first (each costs inodes
        whatever its bytes); one at a time, and never one in use."""
        if not self._trimming.acquire(blocking=False):
            return  # one trim at a time; the next checkout trims again
        try:
            snapshots = sorted(self._snapshots(), key=_last_use)
            for old in snapshots[: max(0, len(snapshots) - self.max_snapshots)]:
                self._drop_snapshot(old)
        finally:
            self._trimming.release()

    def _trim(self, need: int) -> int:
        """Delete what no running step uses (a snapshot no sync holds, a repository no
        git works in), least recently used first, until `need` bytes are freed; the
        bytes freed (0: nothing could go)."""
        freed = 0
        candidates = [*self._snapshots(), *(self.cache_dir / "repos").glob("*.git")]
        for path in sorted(candidates, key=_last_use):
            if freed >= need:
                break
            if path.parent.name == "snapshots":
                freed += self._drop_snapshot(path)
            else:
                freed += self._drop_repo(path)
        return freed

    def _drop_snapshot(self, snapshot: Path) -> int:
        with self._locks_guard:
            if self._leases.get(snapshot.name) or not snapshot.is_dir():
                return 0
            # Gone from its name at once: a lease taken from now on finds no snapshot and
            # extracts the revision anew.
            trash = self._to_trash(snapshot)
        return self._empty_trash(trash, snapshot)

    def _drop_repo(self, repo: Path) -> int:
        lock = self._lock(str(repo))
        if not lock.acquire(blocking=False):
            return 0  # a fetch or an extract works in it
        try:
            with (repo.parent / f"{repo.name}.flock").open("a") as held:
                try:
                    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return 0  # another process's git works in it
                if not repo.is_dir():
                    return 0
                trash = self._to_trash(repo)
                # Its lock file goes too (one per URL ever named would stay), still locked:
                # whoever waits for the thread lock opens a new one after this.
                (repo.parent / f"{repo.name}.flock").unlink(missing_ok=True)
        finally:
            lock.release()
        return self._empty_trash(trash, repo)

    def _delete(self, path: Path) -> None:
        """Delete a cached repository or snapshot whose guard this thread holds."""
        self._empty_trash(self._to_trash(path), path)

    def _to_trash(self, path: Path) -> Path:
        trash = self.cache_dir / TRASH / f"{path.name}-{os.urandom(6).hex()}"
        path.rename(trash)
        return trash

    def _empty_trash(self, trash: Path, path: Path) -> int:
        """Delete what was at `path` (now in `trash`); its bytes leave the budget once
        they left the disk."""
        size = self.disk.kept(path)
        shutil.rmtree(trash, ignore_errors=True)
        self.disk.forget(path)
        return size

    def _snapshots(self) -> list[Path]:
        return [p for p in (self.cache_dir / "snapshots").iterdir() if SHA.match(p.name)]


def fetch_cap(max_revision_bytes: int) -> int:
    """Bytes any one file a fetch writes may hold (RLIMIT_FSIZE): FETCH_FACTOR times the
    revision budget, and a MiB for the trees and commits."""
    return max_revision_bytes * FETCH_FACTOR + (1 << 20)


def least_cache_bytes(max_revision_bytes: int) -> int:
    """The smallest disk budget in which one sync at `max_revision_bytes` always fits."""
    return SYNC_CAPS * fetch_cap(max_revision_bytes)


def _last_use(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _used(*paths: Path) -> None:
    """Mark cached repositories and snapshots used now (the trim goes by last use)."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.utime(path)


@contextlib.contextmanager
def private_environment(credentials: Credentials | None) -> Iterator[dict[str, str]]:
    """The environment of one git command: its askpass script, ssh key and known_hosts in
    a directory of its own (0700, removed when the command ends), which is also its HOME
    (no ~/.gitconfig, no credential store). Nothing in it is shared with another command
    or reachable from a repository's files."""
    with tempfile.TemporaryDirectory(prefix="modelsync-git-") as private:
        home = Path(private)
        askpass = home / "askpass.sh"
        askpass.touch(mode=0o700)
        askpass.write_text(ASKPASS)
        env = {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": str(askpass),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes",
            "MODELSYNC_GIT_USERNAME": "",
            "MODELSYNC_GIT_PASSWORD": "",
            "HOME": private,
            "XDG_CONFIG_HOME": private,
        }
        if credentials is not None:
            env["MODELSYNC_GIT_USERNAME"] = credentials.username or "git"
            env["MODELSYNC_GIT_PASSWORD"] = credentials.password or ""
        if credentials is not None and credentials.ssh_key:
            key = home / "identity"
            key.touch(mode=0o600)
            key.write_text(credentials.ssh_key.rstrip("\n") + "\n")
            known = home / "known_hosts"
            known.write_text(credentials.known_hosts or "")
            env["GIT_SSH_COMMAND"] = (
                f"ssh -i {key} -o IdentitiesOnly=yes -o BatchMode=yes "
                f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes"
            )
        yield env


def _key(repo: Path) -> str:
    """The cached repository's name without .git (a hash of its URL)."""
    return repo.name.removesuffix(".git")


class UnsafeMemberError(tarfile.TarError):
    """A member of a revision's archive that would land outside its snapshot, or is not
    a file, directory or symlink (raised where tarfile has no filters of its own)."""


# tarfile's extraction filters came with Python 3.11.4; Debian bookworm's python3 (the
# operator image's) is 3.11.2. Where they exist, extract() is told that the member was
# checked already (without a filter, 3.12 and 3.13 warn and 3.14 applies 'data' again).
_HAS_FILTERS = hasattr(tarfile, "data_filter")


def snapshot_filter(member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo | None:
    """tarfile's 'data' filter (no absolute paths, no '..', no devices, nothing written
    through a link), except that a symlink pointing outside is kept as a symlink: `load`
    then names it, with its file, instead of the whole checkout failing obscurely."""
    if not _HAS_FILTERS:
        return data_filter_311(member, destination)
    try:
        return tarfile.data_filter(member, destination)
    except (tarfile.AbsoluteLinkError, tarfile.LinkOutsideDestinationError):
        if not member.issym():
            raise
        return tarfile.tar_filter(member, destination)


def data_filter_311(member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo:
    """What `snapshot_filter` checks, for a Python without tarfile's filters: the member
    (an absolute name made relative) lands inside `destination` (resolving the symlinks
    already written there, so nothing is written through one), is a file, directory or
    symlink (kept even when it points outside, as above), and loses setuid, setgid,
    sticky and group/other write bits."""
    root = os.path.realpath(destination)
    member.name = member.name.lstrip("/")  # as the 'data' filter: below the snapshot
    target = os.path.realpath(os.path.join(root, member.name))
    if os.path.commonpath([root, target]) != root:
        raise UnsafeMemberError(f"{member.name!r} would be written outside the snapshot")
    if not (member.isreg() or member.isdir() or member.issym()):
        raise UnsafeMemberError(f"{member.name!r}: not a file, directory or symlink")
    if not member.issym():
        member.mode = (member.mode & 0o755) | 0o600
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    return member


def git_message(error: git.GitCommandError) -> str:
    """git's own complaint, on one line, without GitPython's framing."""
    stderr = re.sub(r"^\s*stderr: '|'\s*$", "", str(error.stderr or "")).strip()
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
    return (fatal or lines or [f"git exited with {error.status}"])[0]


def _count(command: str, result: str, started: float) -> None:
    metrics.GIT_REQUESTS.labels(type=command, result=result).inc()
    metrics.GIT_SECONDS.labels(type=command).observe(time.monotonic() - started)


def git_timeout_seconds() -> float:
    """How long one git command may run before it is killed: $MODELSYNC_GIT_TIMEOUT_SECONDS,
    else GIT_TIMEOUT_SECONDS."""
    text = os.environ.get(GIT_TIMEOUT_ENV, "").strip()
    if not text:
        return GIT_TIMEOUT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise ValueError(f"{GIT_TIMEOUT_ENV}={text!r}: expected a number of seconds above 0")
    return seconds


def _explain(stderr: str) -> str:
    """git's complaint, with what to do about the usual ones."""
    stderr = re.sub(r"^\s*stderr: '|'\s*$", "", stderr)  # GitPython's framing
    timeout = re.search(r"did not complete in ([\d.]+) secs", stderr)
    if timeout:
        # GitPython killed git at the timeout; its own message is the whole command line.
        return (
            f"could not reach the repository: git timed out after {timeout[1]}s (a slow or "
            f"hung server; {GIT_TIMEOUT_ENV} sets the limit)"
        )
    lowered = stderr.lower()
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith(("fatal:", "error:", "ERROR:"))]
    last = (fatal or lines or [""])[0].removeprefix("fatal: ").removeprefix("error: ")
    if (
        "authentication failed" in lowered
        or "could not read username" in lowered
        or "permission denied (publickey" in lowered
        or "403" in lowered
    ):
        return f"authentication failed: check the Secret named by spec.repo.secretRef ({last})"
    if "host key verification failed" in lowered:
        return "the server's ssh host key is not in the Secret's known_hosts"
    if (
        "not found" in lowered
        or "does not appear to be a git repository" in lowered
        or ("repository" in lowered and "not exist" in lowered)
    ):
        return f"repository not found: check spec.repo.url ({last})"
    if (
        "could not resolve host" in lowered
        or "connection refused" in lowered
        or "timed out" in lowered
        or "unable to access" in lowered
    ):
        return f"could not reach the repository: {last}"
    return last
