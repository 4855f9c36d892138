"""Commit status on a real git host: a pull request merged in a real Gitea reaches the
operator through Gitea's own signed webhook, and the merge commit shows what became of
it; GitHub's and GitLab's requests checked against their documented APIs on loopback;
what a tenant may not make the operator call or send, each refused."""

from __future__ import annotations

import base64
import http.server
import ipaddress
import json
import secrets
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import kubernetes
import pytest

from modelsync.api import constants as c
from modelsync.runtime import operator
from modelsync.telemetry import metrics
from testcluster.gitea import ADMIN, Gitea
from tests.integration.test_rollback import DEADLINE, broken_model_yaml, rolled_back
from tests.support.gitserver import SlowHttpServer
from tests.support.httpserve import InThread
from tests.support.kube import TENANT_ACCOUNT, until, wait_for_items
from tests.support.models import Models
from tests.support.syncs import Syncs, model_yaml

WEBHOOK_TOKEN = "gitea-webhook-" + secrets.token_hex(8)
SHA_RE = r"[0-9a-f]{40}"

# Every connection this process opens while a test watches (the operator runs in it):
# one to an address outside loopback and the tests' 198.18.0.0/15 fails the test.
_OUTSIDE: list[Any] = []
_WATCHING = threading.Event()
_OURS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("198.18.0.0/15"))


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "socket.connect" or not _WATCHING.is_set():
        return
    address = args[1]
    if not isinstance(address, tuple):
        return  # a Unix socket
    try:
        ip = ipaddress.ip_address(address[0])
    except ValueError:
        _OUTSIDE.append(address)
        return
    if not (ip.is_loopback or any(ip in net for net in _OURS)):
        _OUTSIDE.append(address)


sys.addaudithook(_audit)


@pytest.fixture
def loopback_only() -> Iterator[None]:
    _OUTSIDE.clear()
    _WATCHING.set()
    yield
    _WATCHING.clear()
    assert not _OUTSIDE, f"connections outside loopback: {_OUTSIDE}"


def wait_until(check: Callable[[], Any], describe: str, timeout: float = 60) -> Any:
    """Gitea's API has no watch: ask until `check` returns something true, or fail."""
    last: list[Any] = [None]

    def found() -> bool:
        last[0] = check()
        return bool(last[0])

    until(describe, found, timeout, interval=0.25)
    return last[0]


def secret(syncs: Syncs, name: str, data: dict[str, str], type_: str, namespace: str = "") -> None:
    syncs.core.create_namespaced_secret(
        namespace or syncs.namespace,
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name=name),
            type=type_,
            data={k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        ),
    )


@dataclass
class GiteaRepo:
    gitea: Gitea
    name: str
    url: str  # what a ModelSync clones
    first: str  # the commit with the first model


@pytest.fixture
def gitea_repo(gitea: Gitea, syncs: Syncs) -> GiteaRepo:
    """A private repository in Gitea with models/iris.yaml, and in the test namespace the
    Secrets to clone it (git) and to set commit statuses on it (gitea-token)."""
    name = syncs.namespace
    gitea.create_repo(name)
    first = gitea.write(name, "models/iris.yaml", model_yaml("iris"))
    syncs.secret("git", ADMIN, gitea.token)
    secret(syncs, "gitea-token", {"token": gitea.token}, c.SECRET_TYPE_PROVIDER)
    return GiteaRepo(gitea, name, f"{gitea.url}/{ADMIN}/{name}.git", first)


def statuses_of(repo: GiteaRepo, sha: str, context: str) -> list[dict[str, Any]]:
    found = [s for s in repo.gitea.statuses(repo.name, sha) if s.get("context") == context]
    return sorted(found, key=lambda s: s["id"])


def wait_status(repo: GiteaRepo, sha: str, context: str, state: str) -> list[dict[str, Any]]:
    def latest_is() -> list[dict[str, Any]] | None:
        found = statuses_of(repo, sha, context)
        return found if found and found[-1]["status"] == state else None

    found: list[dict[str, Any]] = wait_until(latest_is, f"{state} on {sha[:8]} for {context}")
    return found


def test_gitea_pull_request_merged_reaches_operator_by_webhook_and_commit_status_follows(
    gitea_repo: GiteaRepo, syncs: Syncs, running_operator: operator.Operator
) -> None:
    repo, gitea = gitea_repo, gitea_repo.gitea
    syncs.core.create_namespaced_secret(
        syncs.namespace,
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name="webhook"),
            data={"token": base64.b64encode(WEBHOOK_TOKEN.encode()).decode()},
        ),
    )
    syncs.create(
        "prod",
        repo.url,
        secret="git",
        path="models",
        webhookSecretRef={"name": "webhook"},
        notify={"provider": "gitea", "secretRef": {"name": "gitea-token"}},
    )
    context = f"modelsync/{syncs.namespace}/prod"
    syncs.wait_applied("prod", f"main@sha1:{repo.first}")
    first = wait_status(repo, repo.first, context, "success")
    assert first[0]["status"] == "pending", first  # pending when fetched, then success

    # Gitea's own webhook, signed by Gitea with the ModelSync's token, on its own path.
    port = running_operator.settings.http_port
    gitea.add_webhook(
        repo.name, f"http://127.0.0.1:{port}/hooks/gitea/{syncs.namespace}/prod", WEBHOOK_TOKEN
    )
    queued = metrics.WEBHOOKS.labels(provider="gitea", result="queued")
    before = queued._value.get()
    gitea.write(repo.name, "models/iris.yaml", model_yaml("iris", "2"), new_branch="iris-2")
    merge = gitea.merge_pull_request(repo.name, "iris-2", "iris 2")
    # The interval is an hour: the webhook brings the merge.
    syncs.wait_applied("prod", f"main@sha1:{merge}")
    assert queued._value.get() > before, "Gitea's delivery was not taken"
    done = wait_status(repo, merge, context, "success")
    assert "Ready" in done[-1]["description"], done

    # A broken commit (through the same webhook): failure, with the reason.
    broken = gitea.write(repo.name, "models/bad.yaml", "kind: [unclosed\n")
    syncs.wait_failed("prod", c.REASON_VALIDATION_FAILED)
    failed = wait_status(repo, broken, context, "failure")
    assert c.REASON_VALIDATION_FAILED in failed[-1]["description"], failed


def test_gitea_commit_status_failure_when_a_rollout_fails_and_is_rolled_back(
    gitea_repo: GiteaRepo, syncs: Syncs, models: Models
) -> None:
    gitea, repo = gitea_repo.gitea, gitea_repo.name
    healthy = model_yaml("iris", version="1", replicas=2) + (
        f"  rollout:\n    progressDeadlineSeconds: {DEADLINE}\n"
    )
    good = gitea.write(repo, "models/iris.yaml", healthy)
    syncs.create(
        "prod",
        gitea_repo.url,
        secret="git",
        path="models",
        notify={"provider": "gitea", "secretRef": {"name": "gitea-token"}},
    )
    context = f"modelsync/{syncs.namespace}/prod"
    syncs.wait_applied("prod", f"main@sha1:{good}")
    wait_status(gitea_repo, good, context, "success")
    bad = gitea.write(repo, "models/iris.yaml", broken_model_yaml("iris", "2"))
    syncs.request("prod")
    models.wait("iris", rolled_back, timeout=DEADLINE + 30)
    failed = wait_status(gitea_repo, bad, context, "failure")
    assert "rolled back" in failed[-1]["description"], failed
    assert "iris" in failed[-1]["description"], failed


def open_rollback_pull(gitea: Gitea, repo: str, model: str) -> dict[str, Any] | None:
    pulls = gitea.api("GET", f"/repos/{ADMIN}/{repo}/pulls?state=open&limit=50")
    found = [p for p in pulls if p["head"]["ref"] == f"modelsync/rollback/{model}"]
    assert len(found) <= 1, f"more than one open rollback pull request: {found}"
    return found[0] if found else None


def failed_at(sha: str) -> Callable[[Any], bool]:
    def check(md: dict[str, Any] | None) -> bool:
        status = (md or {}).get("status") or {}
        return rolled_back(md) and status.get("failedGitRevision") == f"main@sha1:{sha}"

    check.__name__ = f"rolled back from {sha[:8]}"
    return check


def test_gitea_rollback_pull_request_opened_updated_and_closed_as_superseded(
    gitea_repo: GiteaRepo, syncs: Syncs, models: Models
) -> None:
    gitea, repo = gitea_repo.gitea, gitea_repo.name
    healthy = model_yaml("iris", version="1", replicas=2) + (
        f"  rollout:\n    progressDeadlineSeconds: {DEADLINE}\n"
    )
    good = gitea.write(repo, "models/iris.yaml", healthy)
    syncs.create(
        "prod",
        gitea_repo.url,
        secret="git",
        path="models",
        rollbackWriteBack=True,
        notify={"provider": "gitea", "secretRef": {"name": "gitea-token"}},
    )
    syncs.wait_applied("prod", f"main@sha1:{good}")

    # A failed rollout, rolled back: a pull request naming the model, the failed
    # revision, the reason and the version it restores.
    bad = gitea.write(repo, "models/iris.yaml", broken_model_yaml("iris", "2"))
    syncs.request("prod")
    models.wait("iris", failed_at(bad), timeout=DEADLINE + 30)
    pull = wait_until(lambda: open_rollback_pull(gitea, repo, "iris"), "a rollback pull request")
    assert pull["base"]["ref"] == "main"
    assert "iris" in pull["title"], pull["title"]
    assert "version 1" in pull["title"], pull["title"]
    assert f"main@sha1:{bad}" in pull["body"], pull["body"]
    assert f"main@sha1:{good}" in pull["body"], pull["body"]

    # A second failure of the model updates that pull request: no second one.
    worse = gitea.write(repo, "models/iris.yaml", broken_model_yaml("iris", "3"))
    syncs.request("prod")
    models.wait("iris", failed_at(worse), timeout=DEADLINE + 30)
    updated = wait_until(
        lambda: (p := open_rollback_pull(gitea, repo, "iris")) and worse in p["body"] and p,
        "the pull request to name the second failure",
    )
    assert updated["number"] == pull["number"]

    # A fix merged through another pull request closes it as superseded.
    fixed = model_yaml("iris", version="4", replicas=2)
    gitea.write(repo, "models/iris.yaml", fixed, new_branch="iris-4")
    merge = gitea.merge_pull_request(repo, "iris-4", "iris 4")
    syncs.request("prod")
    syncs.wait_applied("prod", f"main@sha1:{merge}")
    closed = wait_until(
        lambda: (
            (p := gitea.api("GET", f"/repos/{ADMIN}/{repo}/pulls/{pull['number']}"))["state"]
            == "closed"
            and p
        ),
        "the rollback pull request to be closed",
    )
    assert "Superseded" in closed["body"], closed["body"]
    assert not closed.get("merged"), closed


class HostApi(InThread, http.server.ThreadingHTTPServer):
    """A GitHub- or GitLab-like API on loopback that takes a commit status only as the
    provider documents it: the method, path, headers and body; anything else is a 4xx
    and a problem the test reports."""

    def __init__(self, provider: str, port: int, token: str, project: str) -> None:
        super().__init__(("127.0.0.1", port), _HostApiHandler)
        self.provider = provider
        self.token = token
        self.project = project
        self.taken: list[dict[str, Any]] = []
        self.last: dict[tuple[str, Any], Any] = {}
        self.problems: list[str] = []
        self.changed = threading.Condition()

    def wait_for(self, state: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for body in self.taken:
                    if body["state"] == state:
                        return body
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no {state} status within {timeout:.0f}s: {self.taken}"
                self.changed.wait(remaining)

    def check(  # noqa: C901 - each documented rule of the two hosts' APIs
        self, method: str, path: str, headers: Any, body: bytes
    ) -> str | None:
        """What is wrong with this request (None: as documented)."""
        owner, _, name = self.project.partition("/")
        if method != "POST":
            return f"method {method}"
        if headers.get("Content-Type") != "application/json":
            return f"Content-Type {headers.get('Content-Type')!r}"
        try:
            data = json.loads(body)
        except ValueError:
            return "body is not JSON"
        if self.provider == "github":
            # docs.github.com: POST /repos/{owner}/{repo}/statuses/{sha}
            prefix = f"/api/v3/repos/{owner}/{name}/statuses/"
            allowed, states, label = {"state", "target_url", "description", "context"}, {
                "error", "failure", "pending", "success"
            }, "context"  # fmt: skip
            if headers.get("Authorization") != f"Bearer {self.token}":
                return "Authorization is not 'Bearer <token>'"
            if headers.get("Accept") != "application/vnd.github+json":
                return f"Accept {headers.get('Accept')!r}"
            if not headers.get("X-GitHub-Api-Version"):
                return "no X-GitHub-Api-Version"
        else:
            # docs.gitlab.com: POST /projects/:id/statuses/:sha, id the URL-encoded path
            prefix = f"/api/v4/projects/{urllib.parse.quote(self.project, safe='')}/statuses/"
            allowed = {"state", "ref", "name", "context", "target_url", "description",
                       "coverage", "pipeline_id"}  # fmt: skip
            states, label = {"pending", "running", "success", "failed", "canceled"}, "name"
            if headers.get("PRIVATE-TOKEN") != self.token:
                return "PRIVATE-TOKEN is not the token"
            # GitLab refuses a state the commit has already (pending -> pending: 400).
            key = (path, data.get("name"))
            if self.last.get(key) == data.get("state"):
                return f"Cannot transition status from {data.get('state')}"
            self.last[key] = data.get("state")
        if not path.startswith(prefix) or len(path.removeprefix(prefix)) != 40:
            return f"path {path}"
        if set(data) - allowed or data.get("state") not in states or not data.get(label):
            return f"body {data}"
        return None


class _HostApiHandler(http.server.BaseHTTPRequestHandler):
    server: HostApi

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        problem = self.server.check("POST", self.path, self.headers, body)
        with self.server.changed:
            if problem:
                self.server.problems.append(problem)
            else:
                data = json.loads(body)
                if self.server.provider == "gitlab":
                    data["state"] = {"failed": "failure"}.get(data["state"], data["state"])
                self.server.taken.append(data)
            self.server.changed.notify_all()
        answer = json.dumps({"message": problem} if problem else {"id": 1}).encode()
        self.send_response(422 if problem else 201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_commit_status_github_and_gitlab_requests_match_their_documented_apis(
    provider: str,
    gitea_repo: GiteaRepo,
    syncs: Syncs,
    commit_status_ports: tuple[int, int],
    loopback_only: None,
) -> None:
    """Not run against github.com or gitlab.com: a loopback API that checks each request
    against their documentation (the platform allows it: --commit-status-api-url)."""
    port = commit_status_ports[0]
    token = f"{provider}-token-{secrets.token_hex(6)}"
    secret(syncs, "host-token", {"token": token}, c.SECRET_TYPE_PROVIDER)
    path = "/api/v3" if provider == "github" else "/api/v4"
    with HostApi(provider, port, token, f"{ADMIN}/{gitea_repo.name}") as api:
        syncs.create(
            "prod",
            gitea_repo.url,
            secret="git",
            path="models",
            notify={
                "provider": provider,
                "secretRef": {"name": "host-token"},
                "apiURL": f"http://127.0.0.1:{port}{path}",
            },
        )
        syncs.wait_applied("prod", f"main@sha1:{gitea_repo.first}")
        done = api.wait_for("success")
        assert not api.problems, api.problems
    context = f"modelsync/{syncs.namespace}/prod"
    assert done[("context" if provider == "github" else "name")] == context
    # Fetched, applied while its model comes up, then Ready; GitLab's own states.
    middle = "pending" if provider == "github" else "running"
    assert [body["state"] for body in api.taken] == ["pending", middle, "success"]


def wait_event(
    syncs: Syncs,
    name: str,
    *words: str,
    reason: str = c.EVENT_COMMIT_STATUS_FAILED,
    timeout: float = 60,
) -> str:
    """The note of the first `reason` Event of ModelSync `name` saying all of `words`."""
    events = kubernetes.dynamic.DynamicClient(syncs.cluster.api).resources.get(
        api_version="events.k8s.io/v1", kind="Event"
    )
    found = wait_for_items(
        events,
        lambda e: (
            e.get("reason") == reason
            and (e.get("regarding") or {}).get("name") == name
            and all(word in (e.get("note") or "") for word in words)
        ),
        namespace=syncs.namespace,
        timeout=timeout,
        describe=f"a {reason} event of {name} saying {words}",
    )
    return str(found["note"])


def test_commit_status_refused_for_other_hosts_other_namespaces_tokens_and_bad_tokens(
    gitea_repo: GiteaRepo,
    syncs: Syncs,
    own_namespace: str,
    commit_status_ports: tuple[int, int],
    loopback_only: None,
) -> None:
    """A tenant sets spec.notify: it may not make the operator call a host the platform
    has not allowed, nor send another namespace's token or a service-account token; a
    token the host refuses (401, 403 without write scope) or a host failing (5xx) is an
    Event naming the provider and the answer. None of it touches the sync, and no token
    appears in an Event."""
    gitea, repo = gitea_repo.gitea, gitea_repo.name
    names = ("m-a", "m-b", "m-c", "m-d", "m-e", "m-f")
    for model in names:
        gitea.write(repo, f"{model}/{model}.yaml", model_yaml(model))
    head = gitea.head(repo)
    listener = SlowHttpServer(delay=5).start()  # counts any connection made to it
    failing = SlowHttpServer(delay=0.2, port=commit_status_ports[0]).start()  # then 503
    read_only = gitea.new_token("read:repository")
    secret(syncs, "read-only", {"token": read_only}, c.SECRET_TYPE_PROVIDER)
    # Another tenant's token, in its own namespace; and a service-account token here.
    secret(syncs, "stolen", {"token": gitea.token}, c.SECRET_TYPE_PROVIDER, own_namespace)
    syncs.core.create_namespaced_secret(
        syncs.namespace,
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(
                name="sa-token", annotations={"kubernetes.io/service-account.name": TENANT_ACCOUNT}
            ),
            type="kubernetes.io/service-account-token",
        ),
    )
    secret(syncs, "revoked", {"token": "0" * 40}, c.SECRET_TYPE_PROVIDER)
    notify = {"provider": "gitea", "secretRef": {"name": "gitea-token"}}
    try:
        syncs.create("m-a", gitea_repo.url, secret="git", path="m-a", notify={
            **notify, "apiURL": f"http://127.0.0.1:{listener.port}/api/v1"})  # fmt: skip
        syncs.create("m-b", gitea_repo.url, secret="git", path="m-b",
                     notify={**notify, "secretRef": {"name": "stolen"}})  # fmt: skip
        syncs.create("m-c", gitea_repo.url, secret="git", path="m-c",
                     notify={**notify, "secretRef": {"name": "sa-token"}})  # fmt: skip
        syncs.create("m-d", gitea_repo.url, secret="git", path="m-d",
                     notify={**notify, "secretRef": {"name": "revoked"}})  # fmt: skip
        syncs.create("m-e", gitea_repo.url, secret="git", path="m-e",
                     notify={**notify, "secretRef": {"name": "read-only"}})  # fmt: skip
        syncs.create("m-f", gitea_repo.url, secret="git", path="m-f", notify={
            **notify, "apiURL": f"http://127.0.0.1:{commit_status_ports[0]}/api/v1"})  # fmt: skip
        for name in names:
            syncs.wait_applied(name, f"main@sha1:{head}")  # the sync itself unaffected
        notes = [
            wait_event(syncs, "m-a", "refused before any connection", "--commit-status-api-url"),
            wait_event(syncs, "m-b", f"{syncs.namespace}/stolen", "does not exist"),
            wait_event(syncs, "m-c", "kubernetes.io/service-account-token"),
            wait_event(syncs, "m-d", "via gitea", "401"),
            wait_event(syncs, "m-e", "via gitea", "403"),
            wait_event(syncs, "m-f", "via gitea", "503"),
        ]
        assert listener.total == 0, "a refused apiURL was connected to"
    finally:
        listener.stop()
        failing.stop()
    tokens = (gitea.token, "0" * 40, read_only)
    assert not any(token in note for token in tokens for note in notes), notes
    # Nothing reached Gitea for them: the head commit has no status of theirs.
    contexts = {s["context"] for s in gitea.statuses(repo, head)}
    assert not contexts & {f"modelsync/{syncs.namespace}/{n}" for n in ("m-a", "m-b", "m-c")}


def test_commit_status_silent_host_does_not_delay_five_commits(
    gitea_repo: GiteaRepo, syncs: Syncs, commit_status_ports: tuple[int, int]
) -> None:
    """A host that accepts connections and never answers: each status write waits out its
    deadline off the sync's path, and five commits in a row apply one after another."""
    gitea, repo = gitea_repo.gitea, gitea_repo.name
    silent = SlowHttpServer(delay=300, port=commit_status_ports[1]).start()
    try:
        syncs.create(
            "prod",
            gitea_repo.url,
            secret="git",
            path="models",
            notify={
                "provider": "gitlab",
                "secretRef": {"name": "gitea-token"},
                "apiURL": f"http://127.0.0.1:{commit_status_ports[1]}/api/v4",
            },
        )
        syncs.wait_applied("prod", f"main@sha1:{gitea_repo.first}")
        for version in range(2, 7):
            sha = gitea.write(repo, "models/iris.yaml", model_yaml("iris", str(version)))
            token = syncs.request("prod")
            syncs.wait_applied("prod", f"main@sha1:{sha}", token=token)
        assert silent.total >= 1, "no status write was even tried"
        wait_event(syncs, "prod", "via gitlab", "timed out")
    finally:
        silent.stop()


def test_commit_status_repository_url_without_a_host_api_is_an_event_and_the_sync_goes_on(
    syncs: Syncs,
) -> None:
    """A repository URL whose host API cannot be derived (file://): an Event naming the
    provider and why, and the revision applied all the same."""
    repo = syncs.repo("local")
    sha = repo.write("models/iris.yaml", model_yaml("iris")).commit()
    token = "local-token-" + secrets.token_hex(6)
    secret(syncs, "host-token", {"token": token}, c.SECRET_TYPE_PROVIDER)
    syncs.create(
        "prod",
        repo.file_url,
        path="models",
        notify={"provider": "gitea", "secretRef": {"name": "host-token"}},
    )
    syncs.wait_applied("prod", f"main@sha1:{sha}")
    note = wait_event(syncs, "prod", "via gitea", "http(s) or ssh URL")
    assert token not in note, note
