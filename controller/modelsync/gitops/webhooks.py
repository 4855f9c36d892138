"""Webhook receivers: a push to a watched repository and branch syncs at once.

Pure parts here: the route, signature checks (constant-time), the replay window,
body parsing per provider, and matching a push to its ModelSync. The operator's
HTTP server calls them.

Each ModelSync has a URL of its own, `POST /hooks/<provider>/<namespace>/<name>`,
so the request is authenticated with that one ModelSync's token before its body
is parsed: nothing an unauthenticated sender writes reaches the JSON parser.

| provider | authenticity | delivery id |
|---|---|---|
| github | X-Hub-Signature-256: sha256=HMAC-SHA256(token, body) | X-GitHub-Delivery |
| gitlab | X-Gitlab-Token: token | X-Gitlab-Event-UUID |
| gitea | X-Gitea-Signature: HMAC-SHA256(token, body), hex | X-Gitea-Delivery |
| generic | X-Modelsync-Signature: sha256=HMAC-SHA256(token, body) | X-Modelsync-Delivery |

The token is the key `token` of the Secret named by the ModelSync's
`spec.webhookSecretRef`. A delivery id seen again within `REPLAY_WINDOW_SECONDS`
is ignored (git hosts redeliver; a captured delivery can be replayed).

Anyone who reaches the port can post: a delivery is decided from what the operator's
ModelSync watch already holds (`target`, kept for every ModelSync of every shard), so a
name that does not exist costs no API request and answers like a wrong signature; the
body is read within `BODY_SECONDS`, at most `MAX_READING` at once, and GitLab's token (a
header) is checked before any of it is read.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from modelsync.api.constants import LABEL_SHARD
from modelsync.api.manifest import get, labels, text

Sync = TypeVar("Sync", bound=Mapping[str, object])

MAX_BODY_BYTES = 1 << 20
# A git host sends its few KiB at once (GitHub gives up on a delivery after 10 s): a
# sender trickling its body is cut off, and no more than this many bodies are read at
# once (MAX_READING x MAX_BODY_BYTES is the memory they may hold).
BODY_SECONDS = 10.0
MAX_READING = 32
PROVIDERS = ("github", "gitlab", "gitea", "generic")
DELIVERY_HEADERS = {
    "github": "X-GitHub-Delivery",
    "gitlab": "X-Gitlab-Event-UUID",
    "gitea": "X-Gitea-Delivery",
    "generic": "X-Modelsync-Delivery",
}
# Git hosts retry for minutes, not hours; ten minutes of ids is a few KiB.
REPLAY_WINDOW_SECONDS = 600.0
REPLAY_CAPACITY = 10_000


def route(provider: str, namespace: str = "<namespace>", name: str = "<modelsync>") -> str:
    """The path a git host posts to for one ModelSync."""
    return f"/hooks/{provider}/{namespace}/{name}"


def target(ms: Mapping[str, object]) -> dict[str, object]:
    """What of a ModelSync a delivery is decided on: its name, shard label, repository,
    ref, suspend and webhook Secret (never its status: an inventory can hold 10,000
    entries, and this is kept for every ModelSync of every shard)."""
    shard = text(ms, "metadata", "labels", LABEL_SHARD)
    repo: dict[str, object] = {"url": text(ms, "spec", "repo", "url")}
    if ref := labels(ms, "spec", "repo", "ref"):
        repo["ref"] = ref
    spec: dict[str, object] = {"repo": repo, "suspend": bool(get(ms, "spec", "suspend"))}
    if secret := labels(ms, "spec", "webhookSecretRef"):
        spec["webhookSecretRef"] = secret
    return {
        "metadata": {
            "namespace": text(ms, "metadata", "namespace"),
            "name": text(ms, "metadata", "name"),
            "labels": {LABEL_SHARD: shard} if shard else {},
        },
        "spec": spec,
    }


class BadRequestError(ValueError):
    """A body that is not a push we understand (HTTP 400)."""


@dataclass(frozen=True)
class Push:
    urls: tuple[str, ...]
    ref: str  # refs/heads/<branch> or refs/tags/<tag>


MAX_LOGGED_SEGMENT = 253  # a Kubernetes name is never longer


def loggable(segment: str) -> str:
    """A path segment as a log line may hold it: anyone who reaches the port writes the
    path, and aiohttp has decoded it (%0A is a newline, %1B a terminal escape). Every
    character outside printable ASCII is escaped (a backslash too), and a segment longer
    than any name is cut."""
    escaped = segment.encode("unicode_escape").decode("ascii")
    escaped = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in escaped)
    if len(escaped) > MAX_LOGGED_SEGMENT:
        return escaped[:MAX_LOGGED_SEGMENT] + "…"
    return escaped


def _digest(token: bytes, body: bytes) -> str:
    return hmac.new(token, body, hashlib.sha256).hexdigest()


def signature(token: bytes, body: bytes) -> str:
    """X-Modelsync-Signature of `body`: what `authentic` checks for the generic provider
    (and what our notifications to a generic webhook carry)."""
    return "sha256=" + _digest(token, body)


def authentic(provider: str, headers: Mapping[str, str], body: bytes, token: bytes) -> bool:
    """Whether the request was signed (or carries the token) for `token`."""
    if provider == "gitlab":
        given = headers.get("X-Gitlab-Token", "")
        return bool(given) and hmac.compare_digest(given.encode(), token)
    if provider == "gitea":
        given = headers.get("X-Gitea-Signature", "")
        return bool(given) and hmac.compare_digest(given, _digest(token, body))
    header = "X-Hub-Signature-256" if provider == "github" else "X-Modelsync-Signature"
    given = headers.get(header, "")
    return given.startswith("sha256=") and hmac.compare_digest(
        given.removeprefix("sha256="), _digest(token, body)
    )


def is_ping(provider: str, headers: Mapping[str, str]) -> bool:
    return provider == "github" and headers.get("X-GitHub-Event") == "ping"


def parse(provider: str, body: bytes) -> Push:
    """The repository URLs and ref of a push event body."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequestError(f"body is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise BadRequestError("body is not a JSON object")
    ref = data.get("ref")
    keys: tuple[str, ...]
    if provider == "gitlab":
        repo = data.get("project") or data.get("repository") or {}
        keys = ("git_http_url", "git_ssh_url", "web_url", "url", "homepage")
    elif provider == "generic":
        repo = {"url": data.get("repository")}
        keys = ("url",)
    else:  # github and gitea share the shape
        repo = data.get("repository") or {}
        keys = ("clone_url", "ssh_url", "html_url", "git_url", "url")
    if not isinstance(repo, dict):
        raise BadRequestError("repository is not an object")
    urls = tuple(str(repo[key]) for key in keys if isinstance(repo.get(key), str))
    if not urls or not isinstance(ref, str) or not ref.startswith("refs/"):
        raise BadRequestError("not a push event: needs a repository URL and a ref (refs/...)")
    return Push(urls, ref)


def normalize_url(url: str) -> str:
    """host/path of a repository URL, whatever the protocol: https://github.com/a/b.git,
    git@github.com:a/b and ssh://git@github.com/a/b all become github.com/a/b."""
    url = url.strip()
    scp = re.match(r"^[\w.-]+@([\w.-]+):(?!//)(.*)$", url)
    if scp:
        host, path = scp.groups()
    else:
        rest = re.sub(r"^[a-z+]+://", "", url, flags=re.IGNORECASE)
        rest = rest.split("@", 1)[-1] if "@" in rest.split("/", 1)[0] else rest
        host, _, path = rest.partition("/")
        host = host.split(":", 1)[0] if not host.startswith("[") else host
    path = path.strip("/").removesuffix(".git")
    return f"{host.lower()}/{path}"


def ref_matches(spec_ref: Mapping[str, str] | None, pushed: str) -> bool:
    spec_ref = spec_ref or {"branch": "main"}
    if spec_ref.get("branch"):
        return pushed == f"refs/heads/{spec_ref['branch']}"
    if spec_ref.get("tag") or spec_ref.get("semver"):
        return pushed.startswith("refs/tags/")
    return False  # a pinned commit never moves


def matching(push: Push, syncs: Iterable[Sync]) -> list[Sync]:
    """ModelSyncs that follow the pushed repository and ref."""
    pushed = {normalize_url(url) for url in push.urls}
    return [
        ms for ms in syncs
        if normalize_url(text(ms, "spec", "repo", "url")) in pushed
        and ref_matches(labels(ms, "spec", "repo", "ref"), push.ref)
        and not get(ms, "spec", "suspend")
    ]  # fmt: skip


@dataclass
class ReplayWindow:
    """Delivery ids seen lately, per ModelSync; the oldest are forgotten first."""

    seconds: float = REPLAY_WINDOW_SECONDS
    capacity: int = REPLAY_CAPACITY
    _seen: OrderedDict[tuple[str, str, str], float] = field(default_factory=OrderedDict)

    def first_time(self, key: tuple[str, str, str], now: float) -> bool:
        """True the first time `key` (namespace, name, delivery id) is offered within the
        window; the caller checks authenticity first, so forged ids never fill it."""
        while self._seen and next(iter(self._seen.values())) < now - self.seconds:
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        if len(self._seen) >= self.capacity:
            self._seen.popitem(last=False)
        self._seen[key] = now
        return True


def delivery_id(provider: str, headers: Mapping[str, str]) -> str | None:
    """The git host's id of this delivery (the same on a redelivery), if it sent one."""
    return headers.get(DELIVERY_HEADERS[provider]) or None
