"""Apply: server-side apply of a validated revision, staged, writing only what changed.

Namespaces and CRDs go first (and CRDs are waited for until established), then
everything else in an order where what others refer to comes before them.
Every object carries labels naming its ModelSync. An object whose live state
already holds everything we would write is not written at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import kubernetes

from modelsync import constants as c
from modelsync.kube import Kube, Manifest
from modelsync.load import LoadedObject, LoadError
from modelsync.validate import CRD_KIND, identity

FIRST = ("Namespace", CRD_KIND)
ORDER = (
    "ServiceAccount", "Secret", "ConfigMap", "PersistentVolumeClaim",
    "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
    "Service", "Deployment", "StatefulSet", "HorizontalPodAutoscaler",
    c.MODELDEPLOYMENT_KIND,
)  # fmt: skip
CRD_ESTABLISHED_SECONDS = 30.0


@dataclass
class ChangeSet:
    created: list[str] = field(default_factory=list)
    configured: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    drifted: list[str] = field(default_factory=list)  # configured without a change in git

    @property
    def writes(self) -> int:
        return len(self.created) + len(self.configured) + len(self.deleted)

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.configured)} configured, "
            f"{len(self.unchanged)} unchanged, {len(self.deleted)} deleted"
        )


def apply_order(obj: LoadedObject) -> tuple[int, int, str]:
    kind = obj.manifest["kind"]
    stage = 0 if kind in FIRST else 1
    rank = (
        FIRST.index(kind) if kind in FIRST else (ORDER.index(kind) if kind in ORDER else len(ORDER))
    )
    return stage, rank, obj.description


def reference(manifest: Manifest) -> dict[str, str]:
    """An inventory entry."""
    meta = manifest["metadata"]
    entry = {"apiVersion": manifest["apiVersion"], "kind": manifest["kind"], "name": meta["name"]}
    if meta.get("namespace"):
        entry["namespace"] = meta["namespace"]
    return entry


def labelled(manifest: Manifest, sync_namespace: str, sync_name: str) -> Manifest:
    out = dict(manifest)
    meta = dict(out.get("metadata") or {})
    meta["labels"] = {
        **(meta.get("labels") or {}),
        c.LABEL_SYNC_NAME: sync_name,
        c.LABEL_SYNC_NAMESPACE: sync_namespace,
    }
    out["metadata"] = meta
    return out


def with_revision(manifest: Manifest, revision: str) -> Manifest:
    """ModelDeployments carry the git revision they came from (their status shows it)."""
    if manifest["kind"] != c.MODELDEPLOYMENT_KIND:
        return manifest
    meta = dict(manifest["metadata"])
    meta["annotations"] = {**(meta.get("annotations") or {}), c.ANNOTATION_REVISION: revision}
    return {**manifest, "metadata": meta}


class Applier:
    """`reader` (the operator) looks things up; `writer` (the operator, or the
    ServiceAccount it impersonates for this ModelSync) dry-runs, applies and deletes,
    so the API server holds every write to the writer's RBAC."""

    def __init__(self, reader: Kube, writer: Kube, sync_namespace: str, sync_name: str) -> None:
        self.kube = reader
        self.writer = writer
        self.sync_namespace = sync_namespace
        self.sync_name = sync_name

    def dry_run(self, objects: list[LoadedObject]) -> list[LoadError]:
        """The API server's verdict on every object it can judge before anything is written.
        Kinds defined by CRDs of this revision, and objects in namespaces it creates, can
        only be checked once those exist; apply reports their errors."""
        errors: list[LoadError] = []
        for obj in sorted(objects, key=apply_order):
            manifest = obj.manifest
            if self.kube.scope(manifest["apiVersion"], manifest["kind"]) is None:
                continue
            namespace = manifest["metadata"].get("namespace")
            if namespace and self.kube.get("v1", "Namespace", "", namespace) is None:
                continue
            try:
                self.writer.apply(
                    labelled(manifest, self.sync_namespace, self.sync_name), dry_run=True
                )
            except kubernetes.client.ApiException as error:
                errors.append(LoadError(obj.source, api_message(error), obj.description))
        return errors

    def live(self, manifest: Manifest) -> Manifest | None:
        meta = manifest["metadata"]
        return self.kube.get(
            manifest["apiVersion"], manifest["kind"], meta.get("namespace", ""), meta["name"]
        )

    def apply(
        self, objects: list[LoadedObject], revision: str, heal: bool, same_revision: bool
    ) -> tuple[ChangeSet, list[LoadError]]:
        """Apply in stages. `same_revision`: git did not move since the last apply, so any
        difference was made by hand (drift): reverted when `heal`, only reported otherwise."""
        changes, errors = ChangeSet(), []
        ordered = sorted(objects, key=apply_order)
        staged_crds = False
        for obj in ordered:
            if apply_order(obj)[0] == 1 and not staged_crds:
                staged_crds = True
                self._wait_for_crds([o for o in ordered if o.manifest["kind"] == CRD_KIND])
            desired = labelled(obj.manifest, self.sync_namespace, self.sync_name)
            live = self.live(desired)
            # A model keeps the revision that last changed it: a commit that touches
            # one model of a thousand must not rewrite the other 999.
            kept = ((live or {}).get("metadata", {}).get("annotations") or {}).get(
                c.ANNOTATION_REVISION
            )
            try:
                drifted = self.writer.changes(with_revision(desired, kept or revision), live)
                if not drifted:
                    changes.unchanged.append(obj.description)
                    continue
                if live is not None and same_revision:
                    changes.drifted.append(f"{obj.description} ({', '.join(drifted)})")
                    if not heal:
                        continue
                    self.writer.apply(with_revision(desired, kept or revision))
                else:
                    self.writer.apply(with_revision(desired, revision))
            except kubernetes.client.ApiException as error:
                errors.append(LoadError(obj.source, api_message(error), obj.description))
                continue
            (changes.created if live is None else changes.configured).append(obj.description)
        return changes, errors

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

    def delete(self, entries: list[dict[str, str]]) -> list[str]:
        """Delete inventory entries (workloads first, namespaces and CRDs last)."""
        deleted = []
        for entry in sorted(entries, key=lambda e: e["kind"] in FIRST):
            self.writer.delete(
                entry["apiVersion"], entry["kind"], entry.get("namespace", ""), entry["name"]
            )
            namespace = f"{entry['namespace']}/" if entry.get("namespace") else ""
            deleted.append(f"{entry['kind']} {namespace}{entry['name']}")
        return deleted


def api_message(error: kubernetes.client.ApiException) -> str:
    """The API server's own words, without the HTTP framing."""
    import json

    try:
        body: dict[str, Any] = json.loads(error.body or "{}")
    except ValueError:
        body = {}
    return str(body.get("message") or error.reason or error)


def inventory_of(objects: list[LoadedObject]) -> list[dict[str, str]]:
    entries = {identity(o.manifest): reference(o.manifest) for o in objects}
    return [entries[key] for key in sorted(entries)]
