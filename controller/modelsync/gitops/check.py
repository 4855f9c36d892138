"""The CLI's checks of a directory of manifests, by the operator's own steps:
`modelsync validate` (every problem, offline, as `file:line: object: message` — the
same loader the operator uses, plus the CRDs' schemas and every CEL rule; `--server`
adds the API server's dry run) and `modelsync diff` (what applying it through a
ModelSync would change in the cluster, compared by a dry run, and what pruning would
delete)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelsync.api.modelsync import HelmSource, parse_helm
from modelsync.gitops import samples
from modelsync.gitops.load import RevisionError
from modelsync.gitops.render import Rendered, RenderSettings, kustomization_in, render
from modelsync.gitops.validate import (
    content_errors,
    group_of,
    offline_scope,
    policy_errors,
    policy_for,
    revision_kinds,
)


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    object: str
    message: str

    def __str__(self) -> str:
        what = f" {self.object}:" if self.object else ""
        return f"{self.file}:{self.line}:{what} {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "object": self.object,
            "message": self.message,
        }


@dataclass
class Report:
    files: int = 0
    objects: int = 0
    errors: list[Finding] = field(default_factory=list)


def _finding(error: RevisionError, root: Path) -> Finding:
    """Files are named as the user would reach them from where they ran the command."""
    shown = root / error.source.file
    if ".." in shown.parts:  # a rendered path's root is the work tree's top, above
        shown = Path(os.path.relpath(shown))
    return Finding(shown.as_posix(), error.source.line, error.object, error.message)


def _split(path: Path, helm: HelmSource | None = None) -> tuple[Path, str]:
    """(repository root, path under it) for a directory or a single file. What is
    rendered (a kustomization, a chart) may name any file of the repository: its root
    is then the git work tree's top (the directory holding .git), as in the operator."""
    if helm or (path.is_dir() and kustomization_in(path) is not None):
        absolute = path.resolve()
        for top in (absolute, *absolute.parents):
            if (top / ".git").exists():
                shown = top if path.is_absolute() else Path(os.path.relpath(top))
                return shown, absolute.relative_to(top).as_posix()
    return (path, "") if path.is_dir() else (path.parent, path.name)


def _render(
    path: Path, helm: HelmSource | None, settings: RenderSettings, namespace: str, name: str
) -> tuple[Path, Rendered]:
    """The objects under `path`, rendered as the operator renders them (offline)."""
    root, relative = _split(path, helm)
    rendered = render(root, relative, helm, settings, namespace=namespace, release=name)
    # As the sync: spec.validation's sample files are inlined (or refused) first.
    rendered.errors += samples.inline(rendered.objects, root, rendered.reader(root))
    return root, rendered


def check_path(
    path: Path,
    namespace: str = "default",
    helm: HelmSource | None = None,
    settings: RenderSettings | None = None,
    name: str = "release",
) -> Report:
    """Every problem of the manifests under `path` that needs no cluster: what the
    operator refuses before its dry run (the same functions), for a ModelSync in
    `namespace` under the platform's default policy (its own namespace only). A
    kustomization, or a chart with `helm` (spec.helm), is rendered first, offline."""
    root, loaded = _render(path, helm, settings or RenderSettings(), namespace, name)
    report = Report(files=loaded.files, objects=len(loaded.objects))
    policy, _ = policy_for(namespace, None)
    errors = loaded.errors + content_errors(loaded.objects, loaded.reader(root))
    errors += policy_errors(loaded.objects, policy, offline_scope)
    report.errors = sorted((_finding(e, root) for e in errors), key=lambda f: (f.file, f.line))
    return report


@dataclass
class Change:
    action: str  # create | update | delete
    object: str
    fields: list[str] = field(default_factory=list)


@dataclass
class DiffReport:
    changes: list[Change] = field(default_factory=list)
    models: list[str] = field(default_factory=list)  # one line per model
    errors: list[Finding] = field(default_factory=list)


def _version(manifest: dict[str, Any] | None) -> str:
    return str(((manifest or {}).get("spec") or {}).get("model", {}).get("version", "?"))


def diff_path(  # noqa: C901 - the offline diff's steps, as the sync's
    path: Path, sync: dict[str, Any], kube: Any, settings: RenderSettings | None = None
) -> DiffReport:
    """What applying the manifests under `path` through the ModelSync `sync` would change:
    validated as the operator would, compared by a server-side dry run (so defaulted
    and foreign fields make no noise), plus what pruning would delete."""
    from modelsync.api import constants as c
    from modelsync.gitops import prune
    from modelsync.gitops.apply import Applier, inventory_of
    from modelsync.gitops.validate import policy_errors as place
    from modelsync.gitops.validate import policy_for
    from modelsync.kube.drift import applied_part, differences

    report = DiffReport()
    spec, meta = sync["spec"], sync["metadata"]
    root, loaded = _render(
        path,
        parse_helm(spec.get("helm")),
        settings or RenderSettings(),
        spec.get("targetNamespace") or meta["namespace"],
        meta["name"],
    )
    # The platform's grants are the operator's settings, unknown here: the strict policy
    # (a ModelSync's own namespace only), which is the operator's default too.
    policy, _ = policy_for(meta["namespace"], spec.get("targetNamespace"))
    writer = kube
    if spec.get("serviceAccountName"):
        writer = kube.impersonate(meta["namespace"], spec["serviceAccountName"])
    applier = Applier(kube, writer, meta["namespace"], meta["name"])
    errors = loaded.errors + place(loaded.objects, policy, kube.scope)
    planned: list[Any] = []
    if not errors:
        inventory = (sync.get("status") or {}).get("inventory") or []
        applied = {prune.key(entry) for entry in inventory}
        planned, errors = applier.plan(loaded.objects, "pull-request", applied)
    report.errors = [_finding(error, root) for error in errors]
    if report.errors:
        return report
    for item in planned:
        if not item.drifted:
            continue
        manifest = item.source.manifest
        if item.live is None:
            report.changes.append(Change("create", item.source.description))
            if manifest["kind"] == c.MODELDEPLOYMENT_KIND:
                report.models.append(
                    f"{manifest['metadata']['name']}: new, version {_version(manifest)}"
                )
            continue
        fields = differences(applied_part(item.desired), item.live)
        fields = [f for f in fields if c.ANNOTATION_REVISION not in f]
        report.changes.append(Change("update", item.source.description, fields))
        if manifest["kind"] == c.MODELDEPLOYMENT_KIND:
            before, after = _version(item.live), _version(manifest)
            what = f"version {before} -> {after}" if before != after else "changed"
            report.models.append(f"{manifest['metadata']['name']}: {what} ({', '.join(fields)})")
    previous = (sync.get("status") or {}).get("inventory") or []
    plan = prune.plan(
        previous,
        inventory_of(loaded.objects),
        enabled=spec.get("prune", True),
        allow_empty=bool(spec.get("allowEmpty")),
        max_percent=int(spec.get("maxPrunePercent", 50)),
    )
    for entry in plan.delete:
        namespace = f"{entry['namespace']}/" if entry.get("namespace") else ""
        report.changes.append(Change("delete", f"{entry['kind']} {namespace}{entry['name']}"))
        if entry["kind"] == c.MODELDEPLOYMENT_KIND:
            report.models.append(f"{entry['name']}: deleted")
    if plan.refusal:
        report.errors.append(Finding(path.as_posix(), 1, "", f"prune refused: {plan.refusal}"))
    return report


def server_check(
    path: Path, kube: Any, namespace: str, settings: RenderSettings | None = None
) -> list[Finding]:
    """`validate --server`: the API server's verdict on every object (a dry run of a
    server-side apply), as it would judge them on merge: schema, CEL, admission; and
    where the operator puts them (a ModelSync's own namespace only, its default: the
    platform's grants are its settings, unknown here). Kinds a CRD of the same path
    defines can only be judged once it exists, as on merge; an answer about the API
    server itself (429, 5xx) is no verdict on the files and fails the command."""
    import kubernetes

    from modelsync.kube.client import api_message, transient

    root, rendered = _render(path, None, settings or RenderSettings(), namespace, "release")
    objects = rendered.objects
    policy, _ = policy_for(namespace, None)
    errors = policy_errors(objects, policy, kube.scope)
    defined = revision_kinds(objects)
    refused = {str(error.source) for error in errors}
    for obj in objects:
        manifest = obj.manifest
        if str(obj.source) in refused:
            continue
        if kube.scope(manifest["apiVersion"], manifest["kind"]) is None:
            if (group_of(manifest["apiVersion"]), manifest["kind"]) in defined:
                continue
            message = f"unknown kind {manifest['kind']} in apiVersion {manifest['apiVersion']}"
            errors.append(RevisionError(obj.source, message, obj.description))
            continue
        try:
            kube.apply(manifest, dry_run=True)
        except kubernetes.client.ApiException as error:
            if transient(error):
                raise
            errors.append(RevisionError(obj.source, api_message(error), obj.description))
    return [_finding(error, root) for error in errors]


def sync_check(
    path: Path, sync: dict[str, Any], kube: Any, settings: RenderSettings | None = None
) -> list[Finding]:
    """`validate --server --sync NAME`: what the operator's own plan step would say of
    the files as that ModelSync's content: placement, objects another ModelSync (or no
    one) owns, the dry run as its ServiceAccount, and a prune it would refuse."""
    return diff_path(path, sync, kube, settings).errors
