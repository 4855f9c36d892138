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

from modelsync import constants as c
from modelsync.load import LoadedObject, LoadError
from modelsync.settings import namespace_matches

# (apiVersion, kind) -> True for namespaced, False for cluster-scoped, None if unknown.
ScopeLookup = Callable[[str, str], bool | None]

CRD_KIND = "CustomResourceDefinition"


@dataclass(frozen=True)
class Policy:
    """Where a ModelSync's revision may write: granted by the platform (operator
    settings), never by the ModelSync's own spec."""

    target_namespace: str
    allow_other_namespaces: bool = False
    allow_cluster_scoped: bool = False


def policy_for(
    namespace: str,
    target_namespace: str | None,
    *,
    other_namespaces_from: tuple[str, ...] = (),
    cluster_scoped_from: tuple[str, ...] = (),
) -> tuple[Policy, str]:
    """The policy of a ModelSync in `namespace`, from the platform's grants (namespace
    patterns); and, when its spec.targetNamespace is not allowed, why (else "")."""
    others = namespace_matches(namespace, other_namespaces_from)
    policy = Policy(
        target_namespace=target_namespace if target_namespace and others else namespace,
        allow_other_namespaces=others,
        allow_cluster_scoped=namespace_matches(namespace, cluster_scoped_from),
    )
    if target_namespace and target_namespace != namespace and not others:
        return policy, (
            f"spec.targetNamespace {target_namespace!r} is another namespace, and the platform "
            f"does not let ModelSyncs of namespace {namespace!r} write elsewhere "
            "(operator setting --allow-other-namespaces); remove spec.targetNamespace"
        )
    return policy, ""


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
                        f"({policy.target_namespace!r}); remove metadata.namespace (writing "
                        "into other namespaces is the platform's to allow: "
                        "--allow-other-namespaces)",
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
                        f"{policy.target_namespace!r} (cluster-scoped objects are the platform's "
                        "to allow: --allow-cluster-scoped)",
                        obj.description,
                    )
                )
                continue
        target = (manifest.get("spec") or {}).get("targetNamespace")
        if (
            kind == c.MODELSYNC_KIND
            and group_of(api_version) == c.GROUP
            and target
            and target != meta.get("namespace")
            and not policy.allow_other_namespaces
        ):
            errors.append(
                LoadError(
                    obj.source,
                    f"spec.targetNamespace {target!r} is another namespace, and this ModelSync "
                    "may not write elsewhere (--allow-other-namespaces); remove it",
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
