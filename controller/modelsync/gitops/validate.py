"""Validate: the whole revision is checked before anything is written.

`check` is pure: duplicates, where each object may go (namespace and scope),
and kinds the cluster does not know. `dry_run` asks the API server what it
thinks of every object (schema, CEL rules, admission) without writing. The
caller rejects the revision as a whole if either finds anything.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelsync.api import constants as c
from modelsync.api import schemas
from modelsync.api.manifest import digest
from modelsync.api.namespaces import namespace_matches
from modelsync.gitops.load import LoadedObject, RevisionError, Source
from modelsync.serving.render import InvalidSpecError, render

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


def policy_errors(  # noqa: C901 - one pass over every object and rule
    objects: list[LoadedObject], policy: Policy, scope: ScopeLookup
) -> list[RevisionError]:
    """Place every object (fill in its namespace) and report what may not be applied."""
    errors: list[RevisionError] = []
    seen: dict[tuple[str, str, str, str], LoadedObject] = {}
    defined = revision_kinds(objects)
    for obj in objects:
        manifest = obj.manifest
        api_version, kind = manifest["apiVersion"], manifest["kind"]
        meta = manifest.setdefault("metadata", {})
        written = obj.description  # as in the file: before its namespace is filled in
        bad_name = name_problem(manifest)
        if bad_name:
            errors.append(RevisionError(obj.source, bad_name, written))
            continue
        namespaced = scope(api_version, kind)
        if namespaced is None:
            namespaced = defined.get((group_of(api_version), kind))
        if namespaced is None and group_of(api_version) == c.GROUP:
            continue  # content_errors names the versions and kinds we serve
        if namespaced is None:
            errors.append(
                RevisionError(
                    obj.source,
                    f"unknown kind {kind} in apiVersion {api_version}"
                    " (a typo, or a CRD that is not installed)",
                    written,
                )
            )
            continue
        if namespaced:
            meta.setdefault("namespace", policy.target_namespace)
            if meta["namespace"] != policy.target_namespace and not policy.allow_other_namespaces:
                errors.append(
                    RevisionError(
                        obj.source,
                        f"namespace {meta['namespace']!r} is not this ModelSync's; remove "
                        "metadata.namespace (writing into other namespaces is the platform's "
                        "to allow: --allow-other-namespaces)",
                        written,
                    )
                )
                continue
        else:
            if meta.pop("namespace", None):
                errors.append(
                    RevisionError(
                        obj.source,
                        f"{kind} is cluster-scoped and takes no metadata.namespace",
                        written,
                    )
                )
                continue
            if not policy.allow_cluster_scoped:
                errors.append(
                    RevisionError(
                        obj.source,
                        f"{kind} is cluster-scoped; this ModelSync may only write into its "
                        "namespace (cluster-scoped objects are the platform's to allow: "
                        "--allow-cluster-scoped)",
                        written,
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
                RevisionError(
                    obj.source,
                    f"spec.targetNamespace {target!r} is another namespace, and this ModelSync "
                    "may not write elsewhere (--allow-other-namespaces); remove it",
                    written,
                )
            )
            continue
        key = identity(manifest)
        if key in seen:
            errors.append(
                RevisionError(obj.source, f"defined twice: also at {seen[key].source}", written)
            )
            continue
        seen[key] = obj
    return errors


# ------------------------------------------------------------------ offline, shared

# Kinds that are cluster-scoped without a cluster to ask (`modelsync validate` offline);
# any other kind is taken as namespaced there, and only the server knows unknown kinds.
BUILT_IN_CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "Node",
        "PersistentVolume",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "StorageClass",
        "PriorityClass",
        "IngressClass",
        "RuntimeClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "APIService",
        "CSIDriver",
        "CSINode",
        "VolumeAttachment",
        "CertificateSigningRequest",
    }
)

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# A ModelDeployment's name is its Service's (RFC 1035 label) and, with CANARY_SUFFIX,
# its canary Deployment's; a ModelSync's goes into label values (63 characters).
MODEL_NAME_MAX = 63 - len("-canary")


def offline_scope(api_version: str, kind: str) -> bool | None:
    """The scope lookup of `modelsync validate` without a cluster."""
    return kind not in BUILT_IN_CLUSTER_SCOPED


def name_problem(manifest: dict[str, Any]) -> str:
    """Why metadata.name cannot be this object's name (as the API server would say), or ""."""
    name = str(manifest["metadata"]["name"])
    kind, group = manifest["kind"], group_of(manifest["apiVersion"])
    if group == c.GROUP and kind == c.MODELDEPLOYMENT_KIND:
        if len(name) > MODEL_NAME_MAX or not _LABEL_1035.match(name):
            return (
                f"metadata.name {name!r}: a ModelDeployment's name names its Service: lower-case "
                f"letters, digits and '-', starting with a letter, at most {MODEL_NAME_MAX} "
                "characters"
            )
        return ""
    if (group == c.GROUP and kind == c.MODELSYNC_KIND) or (group == "" and kind == "Service"):
        rule, limit = (_LABEL_1035, 63) if kind == "Service" else (_LABEL_1123, 63)
        if len(name) > limit or not rule.match(name):
            return (
                f"metadata.name {name!r} is not a valid {kind} name: lower-case letters, digits "
                f"and '-', at most {limit} characters"
            )
        return ""
    if group == "rbac.authorization.k8s.io":  # RBAC names are path segments ("system:x")
        if name in (".", "..") or "/" in name or "%" in name:
            return f"metadata.name {name!r} may not be '.', '..' or hold '/' or '%'"
        return ""
    if len(name) > 253 or not _SUBDOMAIN.match(name):
        return (
            f"metadata.name {name!r} is not a valid name: lower-case letters, digits, '-' "
            "and '.', at most 253 characters"
        )
    return ""


def field_steps(field: str) -> schemas.Path_:
    """A field as rendering names it (spec.validation.samples[0].path) as a JSON path."""
    steps: list[str | int] = []
    for part in field.split("."):
        name, *indexes = part.replace("]", "").split("[")
        steps += [name, *(int(i) for i in indexes if i.isdigit())]
    return tuple(steps)


def content_errors(
    objects: list[LoadedObject], read: Callable[[str], str], *, rules: bool = True
) -> list[RevisionError]:
    """What the API server or the serving controller would refuse in our own resources,
    found before any request: unknown versions of our group, the CRDs' schemas and CEL
    rules, and what rendering a ModelDeployment refuses. `read` gives a file's text (for
    the line of a field). The operator and `modelsync validate` both call this.

    `rules=False` (the operator's case): an object that passes everything else has its
    CEL rules left to the API server's dry run, which evaluates them natively (offline
    they cost 10 ms an object: 100 s of CPU for a first sync of 10,000 models); `explain`
    then says a refusal at the field's line. An object with other findings is checked
    whole, so it is reported exactly as with `rules`."""
    errors: list[RevisionError] = []
    texts: dict[str, str] = {}
    for obj in objects:
        if group_of(obj.manifest["apiVersion"]) != c.GROUP:
            continue
        found = _memoized_findings(obj.manifest, rules)
        if found and not rules:
            found = _memoized_findings(obj.manifest, rules=True)
        for path, message in found:
            source = texts.setdefault(obj.source.file, read(obj.source.file))
            line = schemas.line_of(source, obj.source.line, path)
            errors.append(RevisionError(Source(obj.source.file, line), message, obj.description))
    return errors


def explain(obj: LoadedObject, read: Callable[[str], str]) -> list[RevisionError]:
    """What the offline check finds in one object the API server refused or cannot judge
    yet, at the field's line (the server's answer names only the document); nothing when
    it is not ours or the offline check finds nothing."""
    return content_errors([obj], read)


Findings = tuple[tuple[schemas.Path_, str], ...]  # (field path, message)

# What an object breaks depends on the object alone, so an object unchanged since the
# last sync is not checked again: at 10,000 models, checking every object at every sync
# (its CEL rules above all) was the operator's top item in a profile. Keyed by a digest
# of the object's content; emptied when full (a few MB), so it never grows without bound.
_MEMO: dict[tuple[str, str, bool, bytes], Findings] = {}
MEMO_SIZE = 100_000


def _memoized_findings(manifest: dict[str, Any], rules: bool) -> Findings:
    try:
        content = digest(manifest)
    except (TypeError, ValueError):  # not JSON (a YAML date): checked each time
        return _findings(manifest, rules)
    key = (manifest["apiVersion"], manifest["kind"], rules, content)
    found = _MEMO.get(key)
    if found is None:
        found = _findings(manifest, rules)
        if len(_MEMO) >= MEMO_SIZE:
            _MEMO.clear()
        _MEMO[key] = found
    return found


@functools.cache
def _known_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    return schemas.load_schemas()


def _findings(manifest: dict[str, Any], rules: bool) -> Findings:
    """What one object of our group breaks (its CEL rules too: `rules`)."""
    api_version, kind = manifest["apiVersion"], manifest["kind"]
    known = _known_schemas()
    schema = known.get((api_version, kind))
    if schema is None:
        served = sorted({version.rpartition("/")[2] for version, _ in known})
        kinds = sorted({k for _, k in known})
        return (
            (
                ("apiVersion",),
                f"{api_version} has no kind {kind}; {c.GROUP} serves "
                f"{', '.join(served)} (kinds {', '.join(kinds)})",
            ),
        )
    problems = schemas.problems(schema, manifest, rules)
    if problems:
        return tuple((p.path, f"{p.field}: {p.message}" if p.path else p.message) for p in problems)
    if kind != c.MODELDEPLOYMENT_KIND:
        return ()
    defaulted = schemas.apply_defaults(schema, copy.deepcopy(manifest))
    # What the API server adds before the serving controller renders it.
    defaulted["metadata"] = {"namespace": "default", "uid": "", **defaulted["metadata"]}
    try:
        render(defaulted)
    except InvalidSpecError as error:
        return ((field_steps(error.field), f"{error.field}: {error.message}"),)
    return ()
