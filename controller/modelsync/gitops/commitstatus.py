"""Record and tell, back to the git host: a commit status for each revision a ModelSync
handles (`pending` when fetched, then `success` or `failure`), under the context
`modelsync/<namespace>/<name>`, on Gitea, GitHub or GitLab.

Configured on the ModelSync itself (`spec.notify`), not in a resource of its own as
Flux's Provider/Alert: a status belongs to exactly one repository and revision, the
ModelSync's own, so a shared provider object would add a reference to check across
objects (and namespaces) without sharing anything. Each ModelSync names its Secret
(type `modelsync.io/git-provider`, key `token`), read in its own namespace only.

Pure parts: which host may be called (`api_base`: the repository URL's own host, or an
API URL the platform allows), the state a ModelSync's outcome means (`verdict`), and
the request per provider (`request`). The shell (`StatusWriter`) sends off the sync's
path: a bounded queue, a few threads shared by namespace (outbound.Sender), one request
at a time per ModelSync so that `pending` never lands after `success`, a wall-clock
deadline per request (connect to the last byte read: a host trickling its answer is cut
off), at most ANSWER_LIMIT bytes of an answer read, no redirects; a full queue drops and
counts, a failure is an Event, a metric and a log line. A sync never waits for it.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import re
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from modelsync.api import constants as c
from modelsync.api.origins import hidden_address, origin, origin_text, parse_origin
from modelsync.gitops.notices import REJECTED as _REJECTED
from modelsync.gitops.outbound import EventPoster, Getter, Sender
from modelsync.telemetry import metrics

log = logging.getLogger(__name__)

PROVIDERS = ("gitea", "github", "gitlab")
# RUNNING: applied, its models coming up. Gitea and GitHub know no such state (pending
# there); GitLab refuses pending -> pending, so a second pending must be running.
PENDING, RUNNING, SUCCESS, FAILURE = "pending", "running", "success", "failure"
# GitHub shows about this much of a description; the others keep more.
MAX_DESCRIPTION = 140
# Connect, send and read the whole answer of one request, by the wall clock (a status
# write takes well under a second on the hosts we know); one trickling host holds a
# thread this long at most.
DEADLINE_SECONDS = 5.0
ANSWER_LIMIT = 64 * 1024  # bytes of an answer read (the rest is never read)
PULLS_ANSWER_LIMIT = 1 << 20  # a listing of 100 open pull requests (GitHub's are large)
MAX_QUEUED = 1000  # status writes waiting, all ModelSyncs together; past it, dropped
WORKERS = 4  # ModelSyncs whose statuses are being sent at once
API_URLS_SETTING = "--commit-status-api-url"
# A model's rollback pull request comes from this branch + the model's name (writeback.py
# pushes it); found by it after a restart, never opened twice.
ROLLBACK_BRANCH_PREFIX = "modelsync/rollback/"
_SHA = re.compile(r"sha1:([0-9a-f]{40})$")
_GITHUB_COM = "github.com"


class RefusedError(ValueError):
    """spec.notify names what the operator will not call or send; the message says why."""


@dataclass(frozen=True)
class Target:
    """Where one ModelSync's statuses go: the provider, its API base URL and the
    repository's path there (owner/name, or a GitLab project's full path)."""

    provider: str
    api: str
    project: str


def sha_of(revision: str) -> str | None:
    """The commit of a revision name (`main@sha1:<40 hex>`)."""
    found = _SHA.search(revision or "")
    return found.group(1) if found else None


def context(namespace: str, name: str) -> str:
    return f"modelsync/{namespace}/{name}"


def _repo_parts(url: str) -> tuple[str, str, int | None, str]:
    """(scheme for the API, host, port, path) of a repository URL: https, ssh or
    scp-like. Only an http:// repository gets an http:// API; ssh ones get https."""
    scp = re.match(r"^[\w.-]+@([\w.-]+):(?!//)(.*)$", url.strip())
    if scp:
        host, path = scp.groups()
        if hidden := hidden_address(host):
            raise RefusedError(f"repository URL: {hidden}; commit status refused")
        return "https", host.lower(), None, path
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https", "ssh") or not parts.hostname:
        raise RefusedError(
            f"repository URL {url!r}: commit status needs an http(s) or ssh URL of a git host"
        )
    if hidden := hidden_address(parts.hostname):
        raise RefusedError(f"repository URL: {hidden}; commit status refused")
    scheme = "http" if parts.scheme == "http" else "https"
    port = parts.port if parts.scheme != "ssh" else None
    return scheme, parts.hostname.lower(), port, parts.path


def parse_api_url(text: str) -> str:
    """An allowed API URL as the platform writes it (scheme://host[:port]), in the one
    spelling `api_base` compares; ValueError says what is wrong with it."""
    return parse_origin(text, "a git host API", "https://git.example.com:8443")


def default_api(provider: str, repo_url: str) -> tuple[str, str]:
    """(API base URL, project path) derived from the repository URL alone."""
    scheme, host, port, path = _repo_parts(repo_url)
    project = path.strip("/").removesuffix(".git")
    if provider != "gitlab" and project.count("/") != 1:
        raise RefusedError(
            f"repository URL {repo_url!r}: expected <host>/<owner>/<repository> for {provider}; "
            "if the host serves under a sub-path, set spec.notify.apiURL"
        )
    if not project:
        raise RefusedError(f"repository URL {repo_url!r} names no repository")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    if provider == "github":
        base = "https://api.github.com" if host == _GITHUB_COM else f"{scheme}://{netloc}/api/v3"
    elif provider == "gitlab":
        base = f"{scheme}://{netloc}/api/v4"
    else:
        base = f"{scheme}://{netloc}/api/v1"
    return base, project


def api_base(notify: dict[str, Any], repo_url: str, allowed: tuple[str, ...]) -> Target:
    """The Target of spec.notify, or RefusedError before any connection. Without apiURL
    the API is derived from the repository URL; an apiURL must have the scheme, host and
    port of that derived API, or of an API URL the platform allows (`allowed`, as
    scheme://host:port): a tenant cannot point the operator's requests anywhere else."""
    provider = str(notify.get("provider") or "")
    if provider not in PROVIDERS:
        raise RefusedError(f"spec.notify.provider {provider!r}: use one of {', '.join(PROVIDERS)}")
    derived, project = default_api(provider, repo_url)
    wanted = str(notify.get("apiURL") or "").rstrip("/")
    if not wanted:
        return Target(provider, derived, project)
    endpoint = origin(wanted)
    own = origin(derived)
    if endpoint is not None and (endpoint == own or origin_text(endpoint) in allowed):
        return Target(provider, wanted, project)
    listed = ", ".join(allowed) if allowed else "none"
    raise RefusedError(
        f"spec.notify.apiURL {wanted!r} refused before any connection: the operator calls "
        f"only the repository's own host ({origin_text(own) if own else '?'}) or "
        f"the API URLs of its setting {API_URLS_SETTING} ({listed}). Remove apiURL, or ask "
        "the platform team to allow yours"
    )


def verdict(status: dict[str, Any]) -> tuple[str, str, str] | None:
    """(revision, state, description) that a ModelSync's status says of its last
    attempted revision; None while there is nothing to say (no revision yet, or the
    environment broke the attempt off: it is tried again, the revision stays pending)."""
    revision = str(status.get("lastAttemptedRevision") or "")
    if not sha_of(revision):
        return None
    ready: dict[str, Any] = next(
        (cond for cond in status.get("conditions") or [] if cond.get("type") == c.READY), {}
    )
    reason = str(ready.get("reason") or "")
    message = str(ready.get("message") or "")
    applied = status.get("lastAppliedRevision") == revision
    if ready.get("status") == "True" and applied:
        return revision, SUCCESS, _short(f"applied; its models are Ready ({reason})")
    if reason == c.REASON_ROLLED_BACK:
        return revision, FAILURE, _short(f"rolled back: {message}")
    if reason in _REJECTED:
        return revision, FAILURE, _short(f"{reason}: {message}")
    if reason == c.REASON_MODELS_NOT_READY and applied:
        failed = [entry for entry in status.get("modelsNotReady") or [] if _failed_rollout(entry)]
        if failed:
            return revision, FAILURE, _short(f"rollout failed: {failed[0]}")
        return revision, RUNNING, _short("applied; waiting for its models to be Ready")
    return None


_FAILED_ROLLOUT = (
    c.REASON_PROGRESS_DEADLINE_EXCEEDED,
    c.REASON_CRASH_LOOP,
    c.REASON_MODEL_DOWNLOAD_FAILED,
    c.REASON_ANALYSIS_FAILED,
    c.REASON_FAILED,
)


def _failed_rollout(entry: Any) -> bool:
    text = json.dumps(entry) if not isinstance(entry, str) else entry
    return any(reason in text for reason in _FAILED_ROLLOUT)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


def request(
    target: Target, sha: str, state: str, description: str, ctx: str, token: str
) -> Request:
    """The one HTTP request that sets a commit status, as each provider documents it:
    Gitea POST /repos/{owner}/{repo}/statuses/{sha}; GitHub the same path with its
    media type and API version; GitLab POST /projects/{url-encoded path}/statuses/{sha},
    whose states are pending/success/failed and whose context is `name`."""
    headers = _headers(target, token)
    if target.provider == "gitlab":
        url = f"{_project_url(target)}/statuses/{sha}"
        body = {
            "state": "failed" if state == FAILURE else state,
            "name": ctx,
            "description": description,
        }
    else:
        url = f"{_project_url(target)}/statuses/{sha}"
        body = {
            "state": PENDING if state == RUNNING else state,
            "context": ctx,
            "description": description,
        }
    return Request("POST", url, headers, json.dumps(body).encode())


def _headers(target: Target, token: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": "modelsync"}
    if target.provider == "gitlab":
        headers["PRIVATE-TOKEN"] = token
    elif target.provider == "github":
        headers["Accept"] = "application/vnd.github+json"
        headers["X-GitHub-Api-Version"] = "2022-11-28"
        headers["Authorization"] = f"Bearer {token}"
    else:
        headers["Accept"] = "application/json"
        headers["Authorization"] = f"token {token}"
    return headers


def _project_url(target: Target) -> str:
    if target.provider == "gitlab":
        return f"{target.api}/projects/{urllib.parse.quote(target.project, safe='')}"
    owner, _, repo = target.project.partition("/")
    quote = urllib.parse.quote
    return f"{target.api}/repos/{quote(owner, safe='')}/{quote(repo, safe='')}"


@dataclass(frozen=True)
class PullRequest:
    """The rollback pull request of one model: from its rollback branch (`head`, moved
    to each new failure's restore commit) into the followed branch (`base`)."""

    model: str
    head: str
    base: str
    failed: str  # the failed git revision
    restored: str  # the revision whose file it restores
    version: str  # the model version that serves again
    reason: str

    @property
    def title(self) -> str:
        return f"Roll back model {self.model} to version {self.version} (modelsync)"

    def body(self) -> str:
        return (
            f"Model **{self.model}** failed at `{self.failed}` and was rolled back "
            f"automatically: {self.reason}\n\n"
            f"This restores its file as it was at `{self.restored}` (version "
            f"{self.version}, which serves now), so that git says what the cluster runs. "
            "Merge it, or change the model in another pull request."
        )


def pulls_list(target: Target, token: str) -> Request:
    """The open pull (merge) requests, one page: a rollback PR is found by its head."""
    if target.provider == "gitlab":
        url = f"{_project_url(target)}/merge_requests?state=opened&per_page=100"
    else:
        url = f"{_project_url(target)}/pulls?state=open&per_page=100&limit=50"
    return Request("GET", url, _headers(target, token), b"")


def open_pulls(provider: str, answer: str) -> dict[str, tuple[int, str]]:
    """{head branch: (number, body)} of a listing's answer."""
    try:
        items = json.loads(answer)
    except ValueError:
        return {}
    found: dict[str, tuple[int, str]] = {}
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        if provider == "gitlab":
            head, number, body = item.get("source_branch"), item.get("iid"), item.get("description")
        else:
            head = (item.get("head") or {}).get("ref")
            number, body = item.get("number"), item.get("body")
        if isinstance(head, str) and isinstance(number, int):
            found[head] = (number, str(body or ""))
    return found


def pull_create(target: Target, token: str, pull: PullRequest) -> Request:
    if target.provider == "gitlab":
        url = f"{_project_url(target)}/merge_requests"
        body: dict[str, Any] = {
            "source_branch": pull.head,
            "target_branch": pull.base,
            "title": pull.title,
            "description": pull.body(),
        }
    else:
        url = f"{_project_url(target)}/pulls"
        body = {"head": pull.head, "base": pull.base, "title": pull.title, "body": pull.body()}
    return Request("POST", url, _headers(target, token), json.dumps(body).encode())


def pull_update(
    target: Target, token: str, number: int, *, title: str, body: str, close: bool = False
) -> Request:
    """Retitle and redescribe an open pull request; `close` closes it too."""
    if target.provider == "gitlab":
        url = f"{_project_url(target)}/merge_requests/{number}"
        data: dict[str, Any] = {"title": title, "description": body}
        if close:
            data["state_event"] = "close"
        return Request("PUT", url, _headers(target, token), json.dumps(data).encode())
    data = {"title": title, "body": body}
    if close:
        data["state"] = "closed"
    url = f"{_project_url(target)}/pulls/{number}"
    return Request("PATCH", url, _headers(target, token), json.dumps(data).encode())


class SendError(Exception):
    """The git host did not take the status; the message never holds the token.
    `status`: the HTTP status it answered (None: no answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@contextlib.contextmanager
def _deadline(connection: http.client.HTTPConnection, seconds: float) -> Iterator[threading.Event]:
    """Shut the connection's socket down `seconds` from now, under whatever read or write
    waits on it then (http.client's timeout bounds each socket operation alone); the
    event says whether that happened."""
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        if connection.sock is not None:
            with contextlib.suppress(OSError):  # closed already
                connection.sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(seconds, expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield expired
    finally:
        watchdog.cancel()


def send(
    req: Request, timeout: float = DEADLINE_SECONDS, limit: int = ANSWER_LIMIT, whole: bool = False
) -> str:
    """Send once: no redirect followed (a 3xx is an error); the answer, up to `limit`
    bytes (`whole`: an answer past it is an error, not cut). `timeout` bounds the whole
    request by the wall clock, not each socket read."""
    parts = urllib.parse.urlsplit(req.url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        with _deadline(connection, timeout) as expired:
            connection.request(req.method, target, body=req.body, headers=req.headers)
            answer = connection.getresponse()
            data = answer.read(limit + 1)
    except (OSError, http.client.HTTPException) as error:
        if expired.is_set() or isinstance(error, TimeoutError):
            raise SendError(f"timed out: no whole answer within {timeout:g}s") from None
        raise SendError(f"{type(error).__name__}: {error}") from None
    finally:
        connection.close()
    if expired.is_set():  # cut off, and what came looked like an answer that ended
        raise SendError(f"timed out: no whole answer within {timeout:g}s")
    if len(data) > limit and whole:
        raise SendError(f"answered more than {limit} bytes", answer.status)
    text = data[:limit].decode(errors="replace")
    if answer.status == 400 and "Cannot transition status" in text:
        return text  # GitLab: the commit has this state already (say, after a restart)
    if not 200 <= answer.status < 300:
        raise SendError(f"answered {answer.status} {answer.reason}: {_gist(text)}", answer.status)
    return text


def _gist(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:200]
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or data)[:200]
    return str(data)[:200]


QUEUED, DUPLICATE, DROPPED = "queued", "duplicate", "dropped"


def admit(
    last: tuple[str, ...] | None,
    said: tuple[str, ...],
    queued: int,
    max_queued: int,
) -> str:
    """Whether a status (revision, state, description) joins the queue: not when it is
    what was last queued for that ModelSync (a resync says the same again), nor when
    the queue is full (dropped and counted: the next verdict is sent instead)."""
    if last == said:
        return DUPLICATE
    if queued >= max_queued:
        return DROPPED
    return QUEUED


STATUS, PULL, CLOSE = "status", "pull", "close"


@dataclass(frozen=True)
class Job:
    ms: dict[str, Any]  # the ModelSync as it was (events name it)
    revision: str
    state: str
    description: str
    action: str = STATUS
    pull: PullRequest | None = None  # PULL: the pull request to open or update
    models: tuple[str, ...] = ()  # CLOSE: models whose rollback pull requests are superseded


Topic = tuple[str, str, str]  # namespace, name, what (the status, or a model's pull request)


class StatusWriter(Sender[tuple[Topic, Job]]):
    """Sends commit statuses (and rollback pull requests) off the sync's path
    (outbound.Sender): the same thing said twice for a ModelSync is sent once; a full
    queue drops the new item and counts it."""

    def __init__(
        self,
        get: Getter,
        event: EventPoster,
        allowed: tuple[str, ...] = (),
        *,
        max_queued: int = MAX_QUEUED,
        workers: int = WORKERS,
        timeout: float = DEADLINE_SECONDS,
    ) -> None:
        super().__init__(
            get,
            event,
            allowed,
            max_queued=max_queued,
            workers=workers,
            timeout=timeout,
            thread_prefix="commit-status",
        )
        self._last: dict[Topic, tuple[str, ...]] = {}

    def forget(self, namespace: str, name: str) -> None:
        """A ModelSync was deleted: what was said for it goes (what is queued still goes)."""
        with self._lock:
            for table in (self._last, self._failing):
                for topic in [t for t in table if t[:2] == (namespace, name)]:
                    table.pop(topic, None)

    def pending(self, ms: dict[str, Any], revision: str) -> None:
        """A revision was fetched that this ModelSync has not settled yet."""
        self.submit(ms, revision, PENDING, "fetched; validating and applying")

    def observe(self, ms: dict[str, Any], status: dict[str, Any]) -> None:
        """Whatever the ModelSync's new status says of its revision; once a revision is
        applied and healthy, the rollback pull requests of its models are superseded."""
        said = verdict(status)
        if said is None:
            return
        self.submit(ms, *said)
        if said[1] == SUCCESS and (ms.get("spec") or {}).get("rollbackWriteBack"):
            models = tuple(
                sorted(
                    entry["name"]
                    for entry in status.get("inventory") or []
                    if entry.get("kind") == c.MODELDEPLOYMENT_KIND
                )
            )
            if models:
                job = Job(ms, said[0], "", "", action=CLOSE, models=models)
                self._enqueue(ms, CLOSE, (said[0], *models), job)

    def submit(self, ms: dict[str, Any], revision: str, state: str, description: str) -> None:
        job = Job(ms, revision, state, description)
        self._enqueue(ms, STATUS, (revision, state, description), job)

    def pull_request(self, ms: dict[str, Any], pull: PullRequest) -> None:
        """Open (or bring up to date) the rollback pull request of `pull.model`."""
        job = Job(ms, pull.failed, "", "", action=PULL, pull=pull)
        self._enqueue(ms, f"{PULL}/{pull.model}", (pull.failed, pull.reason), job)

    def _enqueue(self, ms: dict[str, Any], what: str, said: tuple[str, ...], job: Job) -> None:
        if not ((ms.get("spec") or {}).get("notify") or {}).get("provider"):
            return  # receivers only: no commit status, no pull request
        meta = ms["metadata"]
        key = (meta["namespace"], meta["name"])
        topic = (*key, what)
        with self._lock:
            admitted = admit(self._last.get(topic), said, self._outbox.queued, self.max_queued)
            if admitted == DROPPED:
                metrics.COMMIT_STATUSES.labels(provider=_provider(ms), result=DROPPED).inc()
            if admitted != QUEUED:
                return
            self._last[topic] = said
            self._offer(key, (topic, job))

    def _send(self, item: tuple[Topic, Job]) -> None:  # never retried: the next verdict is news
        topic, job = item
        provider = _provider(job.ms)
        namespace, name = topic[0], topic[1]
        what = "commit status" if job.action == STATUS else "rollback pull request"
        token = ""
        try:
            target = api_base(job.ms["spec"]["notify"], job.ms["spec"]["repo"]["url"], self.allowed)
            token = self._token(namespace, job.ms["spec"]["notify"])
            done = self._act(target, token, (namespace, name), job)
        except (RefusedError, SendError) as error:
            metrics.COMMIT_STATUSES.labels(provider=provider, result="failed").inc()
            # A host may echo the request back: its answer goes out without the token.
            why = str(error).replace(token, "<token>") if token else str(error)
            subject = f"{job.state} " if job.action == STATUS else ""
            message = f"{what} {subject}for {job.revision} via {provider}: {why}"
            with self._lock:
                # The same may be sent again once the cause is mended.
                self._last.pop(topic, None)
                repeated = self._failing.get(topic) == why
                self._failing[topic] = why
            log.warning("%s/%s: %s", namespace, name, message)
            if not repeated:
                reason = (
                    c.EVENT_COMMIT_STATUS_FAILED
                    if job.action == STATUS
                    else c.EVENT_PULL_REQUEST_FAILED
                )
                self.event(job.ms, reason, message, True)
            return
        except Exception:  # a fault of ours must not stop the other ModelSyncs' statuses
            metrics.COMMIT_STATUSES.labels(provider=provider, result="failed").inc()
            log.exception("%s/%s: %s failed", namespace, name, what)
            return
        with self._lock:
            self._failing.pop(topic, None)
        if job.action == STATUS:
            metrics.COMMIT_STATUSES.labels(provider=provider, result="sent").inc()
        if done:
            log.info("%s/%s: %s", namespace, name, done)
            if job.action != STATUS:
                self.event(job.ms, c.EVENT_PULL_REQUEST, done, False)

    def _act(self, target: Target, token: str, key: tuple[str, str], job: Job) -> str:
        """Do what the job asks of the host; what was done, for the log and an Event."""
        if job.action == STATUS:
            sha = sha_of(job.revision)
            if sha is None:
                return ""
            req = request(target, sha, job.state, job.description, context(*key), token)
            send(req, self.timeout)
            return f"commit status {job.state} for {job.revision} via {target.provider}"
        listing = send(pulls_list(target, token), self.timeout, PULLS_ANSWER_LIMIT, whole=True)
        pulls = open_pulls(target.provider, listing)
        if job.action == PULL and job.pull is not None:
            pull = job.pull
            if pull.head not in pulls:
                send(pull_create(target, token, pull), self.timeout)
                return f"opened a pull request from {pull.head} into {pull.base}: {pull.title}"
            number, body = pulls[pull.head]
            if body == pull.body():
                return ""
            send(
                pull_update(target, token, number, title=pull.title, body=pull.body()),
                self.timeout,
            )
            return f"updated pull request #{number} ({pull.head}) for {pull.failed}"
        closed = []
        for model in job.models:
            head = f"{ROLLBACK_BRANCH_PREFIX}{model}"
            if head not in pulls:
                continue
            number, body = pulls[head]
            note = (
                f"Superseded: `{job.revision}` changed model {model} and it is healthy; "
                "closed by modelsync."
            )
            send(
                pull_update(
                    target,
                    token,
                    number,
                    title=f"Superseded: roll back model {model} (modelsync)",
                    body=f"{body}\n\n{note}",
                    close=True,
                ),
                self.timeout,
            )
            closed.append(f"#{number} ({model})")
        return f"closed superseded pull requests {', '.join(closed)}" if closed else ""

    def _token(self, namespace: str, notify: dict[str, Any]) -> str:
        """The `token` of the Secret spec.notify.secretRef names, in the ModelSync's own
        namespace, and only from a Secret made for it (never a service-account token)."""
        name = str((notify.get("secretRef") or {}).get("name") or "")
        if not name:
            raise RefusedError("spec.notify.secretRef names no Secret")
        try:
            secret = self.get("v1", "Secret", namespace, name)
        except Exception as error:  # the API server's answer (403: namespace not enabled)
            status = getattr(error, "status", "") or type(error).__name__
            raise RefusedError(
                f"Secret {namespace}/{name} (spec.notify.secretRef) could not be read: {status}"
            ) from None
        if secret is None:
            raise RefusedError(f"Secret {namespace}/{name} (spec.notify.secretRef) does not exist")
        if secret.get("type") != c.SECRET_TYPE_PROVIDER:
            raise RefusedError(
                f"Secret {namespace}/{name} (spec.notify.secretRef) has type "
                f"{secret.get('type') or 'Opaque'!r}; only Secrets of type "
                f"{c.SECRET_TYPE_PROVIDER!r} are sent to a git host's API: kubectl create "
                f"secret generic {name} --type={c.SECRET_TYPE_PROVIDER} --from-literal=token=..."
            )
        value = (secret.get("data") or {}).get("token")
        if not value:
            raise RefusedError(
                f"Secret {namespace}/{name} (spec.notify.secretRef) has no key token"
            )
        return base64.b64decode(value).decode().strip()


def _provider(ms: dict[str, Any]) -> str:
    provider = str(((ms.get("spec") or {}).get("notify") or {}).get("provider") or "")
    return provider if provider in PROVIDERS else "unknown"
