"""The latest body of every watched object, fed by the operator's watch events.

Reconciling reads from here instead of asking the API server, so a resync that
finds nothing to change makes no request at all.

Bodies are kept as compact JSON, not as Python dicts: with 1,000 models the cache
holds 4,000 objects, and a dict tree is five to ten times the size of its JSON. A
read parses a fresh copy, which costs about what the deep copy of a dict did.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelsync.api.constants import LABEL_DEPLOYMENT

Key = tuple[str, str, str]  # kind, namespace, name

# What reconciling reads of a pod: labels (spec hash, owner) and container statuses.
_POD_METADATA = ("name", "namespace", "labels", "resourceVersion", "uid", "deletionTimestamp")
# Its addresses: the inference gate sends samples to the pod's own IP, never the node's.
_POD_STATUS = (
    "phase", "conditions", "containerStatuses", "initContainerStatuses", "podIP", "hostIP"
)  # fmt: skip


def slim(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """The part of `body` worth keeping: never managedFields (often half an object, and
    read by nobody here); of a pod, only what tells a failing revision."""
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    if kind == "Pod":
        status = body.get("status") or {}
        return {
            "apiVersion": body.get("apiVersion", "v1"),
            "kind": "Pod",
            "metadata": {k: meta[k] for k in _POD_METADATA if k in meta},
            "status": {k: status[k] for k in _POD_STATUS if k in status},
        }
    return {**body, "metadata": meta}


@dataclass(frozen=True)
class _Entry:
    resource_version: str
    labels: dict[str, str]
    body: bytes  # compact JSON of the slimmed object


def _newer(candidate: str, current: _Entry | None) -> bool:
    """resourceVersions are opaque, but the API server's are etcd revisions: compare them
    as numbers when they are, so a stale watch event never overwrites a fresher apply."""
    if current is None:
        return True
    old = current.resource_version
    if candidate.isdigit() and old.isdigit():
        return int(candidate) >= int(old)
    return True


class ObjectCache:
    """Objects by (kind, namespace, name); also by the ModelDeployment they belong to
    (their `modelsync.io/modeldeployment` label), so a model's pods are found directly."""

    def __init__(self) -> None:
        self._objects: dict[Key, _Entry] = {}
        self._owned: dict[Key, set[str]] = {}  # (kind, namespace, model) -> names
        self._lock = threading.Lock()

    def put(self, kind: str, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        key = (kind, meta.get("namespace", ""), meta["name"])
        version = str(meta.get("resourceVersion", ""))
        with self._lock:
            if not _newer(version, self._objects.get(key)):
                return
        entry = _Entry(
            version,
            dict(meta.get("labels") or {}),
            json.dumps(slim(kind, body), separators=(",", ":")).encode(),
        )
        with self._lock:
            if _newer(version, self._objects.get(key)):  # again: another put may have won
                self._unindex(key)
                self._objects[key] = entry
                owner = entry.labels.get(LABEL_DEPLOYMENT)
                if owner:
                    self._owned.setdefault((kind, key[1], owner), set()).add(key[2])

    def delete(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._unindex((kind, namespace, name))
            self._objects.pop((kind, namespace, name), None)

    def _unindex(self, key: Key) -> None:
        old = self._objects.get(key)
        owner = old.labels.get(LABEL_DEPLOYMENT) if old is not None else None
        if owner:
            self._owned.get((key[0], key[1], owner), set()).discard(key[2])

    def owned(self, kind: str, namespace: str, model: str) -> list[dict[str, Any]]:
        """Objects of `kind` labelled as belonging to the ModelDeployment `model`."""
        with self._lock:
            names = sorted(self._owned.get((kind, namespace, model), ()))
            bodies = [self._objects[(kind, namespace, n)].body for n in names]
        return [json.loads(body) for body in bodies]

    def version(self, kind: str, namespace: str, name: str) -> str | None:
        """The cached object's resourceVersion, without parsing its body."""
        with self._lock:
            found = self._objects.get((kind, namespace, name))
        return None if found is None else found.resource_version

    def has(self, kind: str, namespace: str, name: str) -> bool:
        with self._lock:
            return (kind, namespace, name) in self._objects

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._objects.get((kind, namespace, name))
        if found is None:
            return None
        body: dict[str, Any] = json.loads(found.body)
        return body

    def select(
        self,
        kind: str,
        wanted: Callable[[dict[str, Any]], bool],
        labels: dict[str, str] | None = None,
        namespace: str | None = None,
    ) -> list[dict[str, Any]]:
        """Copies of the objects of `kind` (in `namespace`, with all of `labels`) that
        `wanted` accepts. Labels and namespace are checked before anything is parsed."""
        want = (labels or {}).items()
        with self._lock:
            bodies = [
                entry.body
                for (k, ns, _), entry in sorted(self._objects.items())
                if k == kind
                and (namespace is None or ns == namespace)
                and all(entry.labels.get(key) == value for key, value in want)
            ]
        parsed = (json.loads(body) for body in bodies)
        return [body for body in parsed if wanted(body)]

    def names(self, kind: str) -> list[tuple[str, str]]:
        with self._lock:
            return [(ns, name) for (k, ns, name) in self._objects if k == kind]
