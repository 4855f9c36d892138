"""Validate: the whole revision is checked before anything is written.

`check` is pure: duplicates, where each object may go (namespace and scope),
and kinds the cluster does not know. `dry_run` asks the API server what it
thinks of every object (schema, CEL rules, admission) without writing. The
caller rejects the revision as a whole if either finds anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelsync.load import LoadedObject, LoadError

# (apiVersion, kind) -> True for namespaced, False for cluster-scoped, None if unknown.
ScopeLookup = Callable[[str, str], bool | None]

CRD_KIND = "CustomResourceDefinition"


@dataclass(frozen=True)
class Policy:
    target_namespace: str
    allow_other_namespaces: bool = False
    allow_cluster_scoped: bool = False


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def identity(manifest: dict[str, Any]) -> tuple[str, str, str, str]:
    """What makes two objects the same object: group, kind, namespace, name."""
    meta = manifest.get("metadata") or {}
    return (
        group_of(manifest["apiVersion"]),
        manifest["kind"],
        meta.get("namespace", ""),
        meta["name"],
    )


def revision_kinds(objects: list[LoadedObject]) -> dict[tuple[str, str], bool]:
    """Kinds that CRDs in this very revision define: (group, kind) -> namespaced."""
    kinds: dict[tuple[str, str], bool] = {}
    for obj in objects:
        if obj.manifest["kind"] == CRD_KIND:
            spec = obj.manifest.get("spec") or {}
            names = spec.get("names") or {}
            if spec.get("group") and names.get("kind"):
                kinds[(spec["group"], names["kind"])] = spec.get("scope") == "Namespaced"
    return kinds


def check(objects: list[LoadedObject], policy: Policy, scope: ScopeLookup) -> list[LoadError]:
    """Place every object (fill in its namespace) and report what may not be applied."""
    errors: list[LoadError] = []
    seen: dict[tuple[str, str, str, str], LoadedObject] = {}
    defined = revision_kinds(objects)
    for obj in objects:
        manifest = obj.manifest
        api_version, kind = manifest["apiVersion"], manifest["kind"]
        meta = manifest.setdefault("metadata", {})
        namespaced = scope(api_version, kind)
        if namespaced is None:
            namespaced = defined.get((group_of(api_version), kind))
        if namespaced is None:
            errors.append(
                LoadError(
                    obj.source,
                    f"unknown kind {kind} in apiVersion {api_version}"
                    " (a typo, or a CRD that is not installed)",
                    obj.description,
                )
            )
            continue
        if namespaced:
            meta.setdefault("namespace", policy.target_namespace)
            if meta["namespace"] != policy.target_namespace and not policy.allow_other_namespaces:
                errors.append(
                    LoadError(
                        obj.source,
                        f"namespace {meta['namespace']!r} is not this ModelSync's "
                        f"({policy.target_namespace!r}); remove metadata.namespace, or set "
                        "spec.allowOtherNamespaces",
                        obj.description,
                    )
                )
                continue
        else:
            if meta.pop("namespace", None):
                errors.append(
                    LoadError(
                        obj.source,
                        f"{kind} is cluster-scoped and takes no metadata.namespace",
                        obj.description,
                    )
                )
                continue
            if not policy.allow_cluster_scoped:
                errors.append(
                    LoadError(
                        obj.source,
                        f"{kind} is cluster-scoped; this ModelSync may only write into namespace "
                        f"{policy.target_namespace!r} (spec.allowClusterScoped is false)",
                        obj.description,
                    )
                )
                continue
        key = identity(manifest)
        if key in seen:
            errors.append(
                LoadError(obj.source, f"defined twice: also at {seen[key].source}", obj.description)
            )
            continue
        seen[key] = obj
    return errors
