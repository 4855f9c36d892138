"""Apply: server-side apply of a validated revision, staged, writing only what changed.

Namespaces and CRDs go first (and CRDs are waited for until established), then
everything else in an order where what others refer to comes before them.
Every object carries labels naming its ModelSync. An object whose live state
already holds everything we would write is not written at all.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TypeVar

import kubernetes

from modelsync.api import constants as c
from modelsync.api.manifest import text
from modelsync.gitops import ownership
from modelsync.gitops.load import LoadedObject, RevisionError
from modelsync.gitops.plan import (
    ChangeSet,
    Planned,
    PlanStep,
    candidate,
    labelled,
    settle,
    with_revision,
)
from modelsync.gitops.validate import CRD_KIND, identity
from modelsync.kube.client import Kube, Manifest, api_message, transient

FIRST = ("Namespace", CRD_KIND)
ORDER = (
    "ServiceAccount", "Secret", "ConfigMap", "PersistentVolumeClaim",
    "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
    "Service", "Deployment", "StatefulSet", "HorizontalPodAutoscaler",
    c.MODELDEPLOYMENT_KIND,
)  # fmt: skip
CRD_ESTABLISHED_SECONDS = 30.0
CONCURRENCY = 8  # requests of one sync in flight at once (the rate limit still holds)
T = TypeVar("T")
# (apiVersion, kind, namespace, labels) -> the cached objects with those labels, or None
# when the cache does not hold that kind there.
CachedList = Callable[[str, str, str | None, dict[str, str]], list[Manifest] | None]
R = TypeVar("R")


def apply_order(obj: LoadedObject) -> tuple[int, int, str]:
    kind = obj.manifest["kind"]
    stage = 0 if kind in FIRST else 1
    rank = (
        FIRST.index(kind) if kind in FIRST else (ORDER.index(kind) if kind in ORDER else len(ORDER))
    )
    return stage, rank, obj.description


def _api_error(obj: LoadedObject, error: kubernetes.client.ApiException) -> RevisionError:
    """The API server's refusal of one object, as an error of its file."""
    if error.status == 403:
        hint = " (grant the account that applies this ModelSync that verb, or remove the object)"
        return RevisionError(obj.source, api_message(error) + hint, obj.description, forbidden=True)
    return RevisionError(obj.source, api_message(error), obj.description)


def _concurrently(work: Callable[[T], R], items: list[T]) -> list[R]:
    """`work` on every item, CONCURRENCY at a time (the requests wait on the network, not
    the CPU); results in the items' order. One item, or none: no threads."""
    if len(items) <= 1:
        return [work(item) for item in items]
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=min(CONCURRENCY, len(items)), thread_name_prefix="apply"
    ) as pool:
        return list(pool.map(work, items))


def reference(manifest: Manifest) -> dict[str, str]:
    """An inventory entry."""
    meta = manifest["metadata"]
    entry = {"apiVersion": manifest["apiVersion"], "kind": manifest["kind"], "name": meta["name"]}
    if meta.get("namespace"):
        entry["namespace"] = meta["namespace"]
    return entry


class Applier:
    """`reader` (the operator) looks things up; `writer` (the operator, or the
    ServiceAccount it impersonates for this ModelSync) dry-runs, applies and deletes,
    so the API server holds every write to the writer's RBAC."""

    def __init__(
        self,
        reader: Kube,
        writer: Kube,
        sync_namespace: str,
        sync_name: str,
        cached: CachedList | None = None,
        shard: str = "",
    ) -> None:
        self.kube = reader
        self.writer = writer
        self.sync_namespace = sync_namespace
        self.sync_name = sync_name
        self.shard = shard
        # Objects the operator's watch cache holds already, instead of a list request.
        self.cached = cached or (lambda *_: None)
        # What the API server answered to each write: the object as written (its new
        # generation, its status), so nothing need be read back.
        self.written: dict[tuple[str, str, str, str], Manifest] = {}

    def plan(  # noqa: C901 - the plan's I/O: live objects, namespaces, dry runs
        self,
        objects: list[LoadedObject],
        revision: str,
        applied: Collection[tuple[str, str, str, str]] = (),
        explain: Callable[[LoadedObject], list[RevisionError]] = lambda _: [],
    ) -> tuple[list[Planned], list[RevisionError]]:
        """Compare every object with its live self, and ask the API server (a dry run, as
        the writer) about each one that would change: its verdict validates the revision
        before anything is written, and tells a real change from one of form only (0.5 vs
        500m). Unchanged objects cost no request: the server accepted them before. An
        object another ModelSync owns, or one that was there before us (not in `applied`,
        our inventory, and not annotated for adoption), is an error: never taken over. Kinds
        defined by CRDs of this revision, and objects in namespaces it creates, can only be
        judged once those exist; `apply` reports their errors. `explain` says what is
        wrong with an object the dry run refused as invalid, or cannot judge yet, when it
        can say it better (at the field's line); its errors stop the revision too."""
        live = self._live_index(objects)
        namespaces: dict[str, bool] = {}
        # First what would change (no request), then one dry run per changed object,
        # several at a time: a 1,000-model repository is judged in seconds, not minutes.
        steps: list[PlanStep] = []
        conflicts: list[RevisionError] = []
        for obj in sorted(objects, key=apply_order):
            desired = labelled(obj.manifest, self.sync_namespace, self.sync_name, self.shard)
            current = live.get(identity(desired))
            if current is None:
                current = self._get(desired)
            refused = ownership.refusal(
                current, self.sync_namespace, self.sync_name, identity(desired) in applied
            )
            if refused is not None:
                conflicts.append(OwnershipError(obj.source, refused, obj.description))
                continue
            compared, drifted = candidate(desired, current, revision)
            judgeable = False
            if drifted:
                manifest = obj.manifest
                namespace = manifest["metadata"].get("namespace")
                if namespace and namespace not in namespaces:
                    namespaces[namespace] = (
                        self.kube.get("v1", "Namespace", "", namespace) is not None
                    )
                judgeable = self.kube.scope(
                    manifest["apiVersion"], manifest["kind"]
                ) is not None and (not namespace or namespaces[namespace])
            steps.append(PlanStep(obj, desired, compared, current, drifted, judgeable))

        def verdict(step: PlanStep) -> Manifest | kubernetes.client.ApiException | None:
            if not step.judgeable:
                return None
            try:
                return self.writer.apply(step.candidate, dry_run=True)
            except kubernetes.client.ApiException as error:
                if transient(error):
                    raise  # the API server's trouble, not the revision's: retried
                return error

        judged = [step for step in steps if step.judgeable]
        verdicts = dict(zip(map(id, judged), _concurrently(verdict, judged), strict=True))
        planned, errors = [], conflicts
        for step in steps:
            preview = verdicts.get(id(step))
            if isinstance(preview, kubernetes.client.ApiException):
                invalid = preview.status == 422 and explain(step.source)
                errors += invalid or [_api_error(step.source, preview)]
                continue
            unjudged = bool(step.drifted) and not step.judgeable and explain(step.source)
            if unjudged:
                errors += unjudged
                continue
            planned.append(settle(step, revision, preview))
        return planned, errors

    def _live_index(self, objects: list[LoadedObject]) -> dict[tuple[str, str, str, str], Manifest]:
        """The live objects this ModelSync applied before: one list per kind and namespace."""
        selector = (
            f"{c.LABEL_SYNC_NAME}={self.sync_name},{c.LABEL_SYNC_NAMESPACE}={self.sync_namespace}"
        )
        groups = {
            (o.manifest["apiVersion"], o.manifest["kind"], o.manifest["metadata"].get("namespace"))
            for o in objects
            if self.kube.scope(o.manifest["apiVersion"], o.manifest["kind"]) is not None
        }
        index: dict[tuple[str, str, str, str], Manifest] = {}
        labels = {c.LABEL_SYNC_NAME: self.sync_name, c.LABEL_SYNC_NAMESPACE: self.sync_namespace}
        for api_version, kind, namespace in sorted(groups, key=str):
            cached = self.cached(api_version, kind, namespace, labels)
            if cached is not None:
                for item in cached:
                    index[identity(item)] = item
                continue
            try:
                items = self.kube.list_objects(api_version, kind, selector, namespace)
            except kubernetes.client.ApiException as error:
                if transient(error):
                    raise
                continue  # e.g. a namespace this revision creates: looked up one by one
            for item in items:
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                index[identity(item)] = item
        return index

    def _get(self, manifest: Manifest) -> Manifest | None:
        """The live object, read as the operator or, where the operator may not read
        (tenant content applied as the tenant's account), as the writer: ownership and
        prune decide on what is really there."""
        if self.kube.scope(manifest["apiVersion"], manifest["kind"]) is None:
            return None
        meta = manifest["metadata"]
        for kube in dict.fromkeys((self.kube, self.writer)):
            try:
                return kube.get(
                    manifest["apiVersion"],
                    manifest["kind"],
                    meta.get("namespace", ""),
                    meta["name"],
                )
            except kubernetes.client.ApiException as error:
                if transient(error):
                    raise
                if error.status != 403:
                    return None
        return None

    def apply(
        self, planned: list[Planned], heal: bool, same_revision: bool
    ) -> tuple[ChangeSet, list[RevisionError]]:
        """Apply what `plan` found changed, in stages. `same_revision`: git did not move
        since the last apply, so a difference was made by hand (drift): reverted when
        `heal` (keeping the revision the object came from), only reported otherwise."""
        changes, errors = ChangeSet(), list[RevisionError]()
        staged_crds = False
        writes: list[tuple[Planned, Manifest]] = []
        for item in planned:
            obj = item.source
            if apply_order(obj)[0] == 1 and not staged_crds:
                staged_crds = True
                self._write(writes, changes, errors)
                self._wait_for_crds(
                    [p.source for p in planned if p.source.manifest["kind"] == CRD_KIND]
                )
            if writes and apply_order(writes[-1][0].source)[:2] != apply_order(obj)[:2]:
                self._write(writes, changes, errors)  # one kind after the other
            if not item.drifted:
                changes.unchanged.append(obj.description)
                continue
            desired = item.desired
            if item.live is not None and same_revision:
                changes.drifted.append(f"{obj.description} ({', '.join(item.drifted)})")
                if not heal:
                    continue
                kept = text(item.live, "metadata", "annotations", c.ANNOTATION_REVISION)
                if kept:
                    desired = with_revision(desired, kept)
            writes.append((item, desired))
        self._write(writes, changes, errors)
        return changes, errors

    def _write(
        self,
        writes: list[tuple[Planned, Manifest]],
        changes: ChangeSet,
        errors: list[RevisionError],
    ) -> None:
        """Apply objects of one kind, several at a time; empties `writes`."""

        def write(step: tuple[Planned, Manifest]) -> Manifest | kubernetes.client.ApiException:
            try:
                return self.writer.apply(step[1])
            except kubernetes.client.ApiException as error:
                if transient(error):
                    raise
                return error

        for (item, _), answer in zip(writes, _concurrently(write, writes), strict=True):
            obj = item.source
            if isinstance(answer, kubernetes.client.ApiException):
                errors.append(_api_error(obj, answer))
            else:
                self.written[identity(item.desired)] = answer
                (changes.created if item.live is None else changes.configured).append(
                    obj.description
                )
        writes.clear()

    def _wait_for_crds(self, crds: list[LoadedObject]) -> None:
        if not crds:
            return
        deadline = time.monotonic() + CRD_ESTABLISHED_SECONDS
        for crd in crds:
            while time.monotonic() < deadline:
                live = self.kube.get(
                    "apiextensions.k8s.io/v1", CRD_KIND, "", crd.manifest["metadata"]["name"]
                )
                conditions = ((live or {}).get("status") or {}).get("conditions") or []
                if any(x["type"] == "Established" and x["status"] == "True" for x in conditions):
                    break
                time.sleep(0.2)
        self.kube.forget_discovery()
        self.writer.forget_discovery()

    def delete(
        self, entries: list[dict[str, str]]
    ) -> tuple[list[str], list[str], list[tuple[dict[str, str], str]]]:
        """Delete inventory entries (workloads first, namespaces and CRDs last) that are
        still this ModelSync's own: each is read first, and deleted only while its labels
        name this ModelSync, with its UID as a precondition (an object deleted and made
        anew by someone else in between is not ours). Returns what was deleted, what was
        left alone and why, and the entries the API server refused to delete with its
        words (an admission policy, RBAC); an answer about the server itself raises."""
        refused: list[tuple[dict[str, str], str]] = []

        def prune(entry: dict[str, str]) -> tuple[bool, str] | None:
            namespace = f"{entry['namespace']}/" if entry.get("namespace") else ""
            what = f"{entry['kind']} {namespace}{entry['name']}"
            meta = {"name": entry["name"], "namespace": entry.get("namespace", "")}
            live = self._get({**entry, "metadata": meta})
            if live is None:
                return None  # gone already
            if not ownership.prunable(live, self.sync_namespace, self.sync_name):
                found = ownership.owner(live)
                return False, (
                    f"{what} (labelled for ModelSync {found[0]}/{found[1]})"
                    if found
                    else f"{what} (no longer labelled for this ModelSync)"
                )
            try:
                self.writer.delete(
                    entry["apiVersion"],
                    entry["kind"],
                    entry.get("namespace", ""),
                    entry["name"],
                    uid=live["metadata"]["uid"],
                )
            except kubernetes.client.ApiException as error:
                if transient(error):
                    raise
                refused.append((entry, f"{what}: {api_message(error)}"))
                return None
            return True, what

        deleted: list[str] = []
        left: list[str] = []
        for last in (False, True):
            stage = [entry for entry in entries if (entry["kind"] in FIRST) is last]
            for result in _concurrently(prune, stage):
                if result is not None:
                    (deleted if result[0] else left).append(result[1])
        return deleted, left, refused


@dataclass(frozen=True)
class OwnershipError(RevisionError):
    """An object of the revision that another owner holds: nothing of the revision is
    applied (reported with reason OwnershipConflict)."""


def inventory_of(objects: list[LoadedObject]) -> list[dict[str, str]]:
    entries = {identity(o.manifest): reference(o.manifest) for o in objects}
    return [entries[key] for key in sorted(entries)]
