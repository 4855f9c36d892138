"""The writes the API server answered, read from its audit log (testcluster/launcher.py
AUDIT_POLICY): who wrote what, so tests and benchmarks count the operator's writes per
model where none can be missed — kopf's and the impersonated accounts' included.

    log = AuditLog(cluster.audit_log)
    mark = log.mark()
    ...                                   # what the operator does
    writes = [w for w in log.since(mark) if w.namespace == ns and ours(w)]
    print(table(writes))
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The operator's user agents: its own clients (modelsync.kube.client.USER_AGENT) and
# kopf's (watches; a patch or Event of its own would show here too).
OPERATOR_AGENTS = ("modelsync/", "kopf/")
# Flux's controllers, as the benchmark runs them.
FLUX_AGENTS = ("source-controller/", "kustomize-controller/")


@dataclass(frozen=True)
class Write:
    """One create, update, patch or delete as the API server audited it."""

    user: str  # the account acted as: the impersonated one, else who authenticated
    agent: str
    verb: str
    resource: str  # plural, with its subresource: "modeldeployments/status"
    namespace: str
    name: str
    code: int
    dry_run: bool

    @property
    def lease(self) -> bool:
        """A Lease renewal (leader election, node heartbeats): counted apart."""
        return self.resource == "leases"


def parse(event: dict[str, Any]) -> Write:
    ref = event.get("objectRef") or {}
    resource = str(ref.get("resource") or "")
    if ref.get("subresource"):
        resource += "/" + str(ref["subresource"])
    user = (event.get("impersonatedUser") or event.get("user") or {}).get("username", "")
    uri = str(event.get("requestURI") or "")
    return Write(
        user=str(user),
        agent=str(event.get("userAgent") or ""),
        verb=str(event.get("verb") or ""),
        resource=resource,
        namespace=str(ref.get("namespace") or ""),
        name=str(ref.get("name") or ""),
        code=int((event.get("responseStatus") or {}).get("code") or 0),
        dry_run="dryRun=All" in uri,
    )


class AuditLog:
    """The audit log file, read from a mark on, across its rotations."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lost = False  # writes rotated away unread (the log rotated twice)
        self._tail = b""  # the bytes before the last mark: how its file is known again

    def mark(self) -> int:
        """An offset in the log as it is now (for `since`)."""
        try:
            with self.path.open("rb") as file:
                size = file.seek(0, 2)
                file.seek(max(0, size - 256))
                self._tail = file.read(size - file.tell())
        except FileNotFoundError:
            return 0
        return size

    def _holds_mark(self, path: Path, mark: int) -> bool:
        with path.open("rb") as file:
            if file.seek(0, 2) < mark:
                return False
            file.seek(mark - len(self._tail))
            return file.read(len(self._tail)) == self._tail

    def since(self, mark: int = 0) -> list[Write]:
        """The writes logged since the last `mark()` (which returned `mark`)."""
        parts = [(self.path, mark)]
        if mark and not self._holds_mark(self.path, mark):
            # Rotated since (--audit-log-maxsize): the rest of the file marked, then this.
            rotated = sorted(self.path.parent.glob(f"{self.path.stem}-*{self.path.suffix}"))
            marked = [p for p in rotated if self._holds_mark(p, mark)]
            # Rotated twice (--audit-log-maxbackup=1): the file marked is gone.
            self.lost = self.lost or not marked
            parts = [(marked[-1], mark)] if marked else [(p, 0) for p in rotated]
            parts.append((self.path, 0))
        found: list[Write] = []
        for path, start in parts:
            with path.open("rb") as file:
                file.seek(start)
                for line in file:
                    if line.endswith(b"\n"):  # a line being written is read next time
                        found.append(parse(json.loads(line)))
        return found


def ours(write: Write, agents: tuple[str, ...] = OPERATOR_AGENTS) -> bool:
    return write.agent.startswith(agents)


def counted(writes: Iterable[Write]) -> list[Write]:
    """The writes that cost the cluster: answered (not refused), not dry runs, no Lease."""
    return [w for w in writes if not w.dry_run and not w.lease and w.code < 400]


def by_kind(writes: Iterable[Write]) -> Counter[tuple[str, str, str]]:
    """How many, by (user, verb, resource)."""
    return Counter((w.user, w.verb, w.resource) for w in writes)


def table(writes: Iterable[Write]) -> str:
    """One line per (user, verb, resource), most first: for a failing test's message
    and the benchmark's report."""
    rows = by_kind(writes).most_common()
    return "\n".join(f"{n:6d}  {verb:<7} {what:<28} {user}" for (user, verb, what), n in rows)


def per_model(
    writes: Iterable[Write], models: int, agents: tuple[str, ...] = OPERATOR_AGENTS
) -> dict[str, Any]:
    """The writes of a benchmark's controllers (`agents`) over `models` models: those
    that cost (any namespace: a ModelSync's or a Kustomization's status counts, shared
    by all), per model and by kind; Lease renewals and dry runs apart."""
    theirs = [w for w in writes if ours(w, agents)]
    costly = counted(theirs)
    return {
        "writes": len(costly),
        "writes_per_model": len(costly) / max(1, models),
        "by_kind": {
            f"{verb} {resource}": n
            for (verb, resource), n in Counter((w.verb, w.resource) for w in costly).most_common()
        },
        "lease_writes": sum(1 for w in theirs if w.lease),
        "dry_runs": sum(1 for w in theirs if w.dry_run),
        "refused": sum(1 for w in theirs if w.code >= 400 and not w.dry_run),
    }


def describe(figures: dict[str, Any]) -> str:
    """`per_model`'s figures in one line."""
    kinds = ", ".join(f"{n} {kind}" for kind, n in figures["by_kind"].items())
    return (
        f"{figures['writes_per_model']:.2f} writes per model ({figures['writes']}: {kinds}); "
        f"apart: {figures['lease_writes']} Lease, {figures['dry_runs']} dry runs, "
        f"{figures['refused']} refused"
    )
