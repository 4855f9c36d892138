"""The ModelSync resource, typed: spec and status as dataclasses with the CRD's
defaults (crds/modelsync.yaml; tests/unit/api/test_typed_defaults.py checks they agree),
read once from the object's JSON by `parse`."""

from __future__ import annotations

from dataclasses import dataclass, field

from modelsync.api import fields as f
from modelsync.api.fields import Object, StatusCondition
from modelsync.api.manifest import Manifest, json_value


@dataclass(frozen=True)
class GitRef:
    """Which commit to follow: exactly one is set (the CRD's default: branch main)."""

    branch: str | None = "main"
    tag: str | None = None
    semver: str | None = None
    commit: str | None = None


@dataclass(frozen=True)
class Repo:
    url: str
    ref: GitRef = field(default_factory=GitRef)
    secret_ref: str | None = None  # the name of a Secret of type modelsync.io/git


@dataclass(frozen=True)
class Receiver:
    """One of spec.notify.receivers: where notifications go (the URL and HMAC key are in
    the Secret, of type modelsync.io/notification, in the ModelSync's namespace)."""

    type: str  # webhook | slack
    secret_ref: str
    events: tuple[str, ...] = ()  # empty: every notification


@dataclass(frozen=True)
class HelmSource:
    """spec.helm: a chart of the revision rendered with `helm template` (never a release)."""

    chart: str  # its directory, relative to the repository root
    release_name: str | None = None  # None: the ModelSync's name
    values_files: tuple[str, ...] = ()  # of the revision, applied in order
    values: Manifest | None = None  # inline values, applied after the files


@dataclass(frozen=True)
class ModelSyncSpec:
    repo: Repo
    path: str = ""
    interval: str = "1m"
    prune: bool = True
    max_prune_percent: int = 50
    self_heal: bool = True
    allow_empty: bool = False
    suspend: bool = False
    service_account_name: str | None = None
    target_namespace: str | None = None
    rollback_write_back: bool = False
    webhook_secret_ref: str | None = None
    receivers: tuple[Receiver, ...] = ()
    # The name of a Secret of type modelsync.io/kubeconfig: apply to that cluster.
    kube_config_secret_ref: str | None = None
    helm: HelmSource | None = None


@dataclass(frozen=True)
class InventoryEntry:
    api_version: str
    kind: str
    name: str
    namespace: str = ""


@dataclass(frozen=True)
class SyncRecord:
    """One of status.history: a sync that had news."""

    revision: str
    started: str
    finished: str
    result: str
    message: str
    created: int = 0
    configured: int = 0
    unchanged: int = 0
    deleted: int = 0


@dataclass(frozen=True)
class ModelSyncStatus:
    observed_generation: int | None = None
    conditions: tuple[StatusCondition, ...] = ()
    last_fetched_revision: str = ""
    last_applied_revision: str = ""
    last_attempted_revision: str = ""
    last_handled_reconcile_at: str = ""
    inventory: tuple[InventoryEntry, ...] = ()
    history: tuple[SyncRecord, ...] = ()
    errors: tuple[str, ...] = ()
    models_not_ready: tuple[str, ...] = ()
    write_backs: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelSync:
    namespace: str
    name: str
    generation: int
    spec: ModelSyncSpec
    status: ModelSyncStatus


def parse_ref(data: Object | None, path: str) -> GitRef:
    if data is None:
        return GitRef()
    return GitRef(
        branch=f.opt_string(data, "branch", path),
        tag=f.opt_string(data, "tag", path),
        semver=f.opt_string(data, "semver", path),
        commit=f.opt_string(data, "commit", path),
    )


def parse_spec(data: Object, path: str = "spec") -> ModelSyncSpec:
    repo = f.obj(data, "repo", path)
    secret = f.opt_obj(repo, "secretRef", f"{path}.repo")
    webhook = f.opt_obj(data, "webhookSecretRef", path)
    kube_config = f.opt_obj(data, "kubeConfig", path)
    kube_secret = f.obj(kube_config, "secretRef", f"{path}.kubeConfig") if kube_config else None
    return ModelSyncSpec(
        repo=Repo(
            url=f.string(repo, "url", f"{path}.repo"),
            ref=parse_ref(f.opt_obj(repo, "ref", f"{path}.repo"), f"{path}.repo.ref"),
            secret_ref=f.string(secret, "name", f"{path}.repo.secretRef") if secret else None,
        ),
        path=f.string(data, "path", path, ModelSyncSpec.path),
        interval=f.string(data, "interval", path, ModelSyncSpec.interval),
        prune=f.boolean(data, "prune", path, ModelSyncSpec.prune),
        max_prune_percent=f.integer(data, "maxPrunePercent", path, ModelSyncSpec.max_prune_percent),
        self_heal=f.boolean(data, "selfHeal", path, ModelSyncSpec.self_heal),
        allow_empty=f.boolean(data, "allowEmpty", path, ModelSyncSpec.allow_empty),
        suspend=f.boolean(data, "suspend", path, ModelSyncSpec.suspend),
        service_account_name=f.opt_string(data, "serviceAccountName", path),
        target_namespace=f.opt_string(data, "targetNamespace", path),
        rollback_write_back=f.boolean(
            data, "rollbackWriteBack", path, ModelSyncSpec.rollback_write_back
        ),
        webhook_secret_ref=f.string(webhook, "name", f"{path}.webhookSecretRef")
        if webhook
        else None,
        receivers=parse_receivers(f.opt_obj(data, "notify", path) or {}, f"{path}.notify"),
        kube_config_secret_ref=f.string(kube_secret, "name", f"{path}.kubeConfig.secretRef")
        if kube_secret
        else None,
        helm=parse_helm(f.opt_obj(data, "helm", path), f"{path}.helm"),
    )


def parse_helm(data: Object | None, path: str = "spec.helm") -> HelmSource | None:
    """spec.helm, or None where the ModelSync has none."""
    if data is None:
        return None
    values = f.opt_obj(data, "values", path)
    return HelmSource(
        chart=f.string(data, "chart", path),
        release_name=f.opt_string(data, "releaseName", path),
        values_files=f.strings(data, "valuesFiles", path),
        # Any JSON (x-kubernetes-preserve-unknown-fields), copied as plain data.
        values={str(key): json_value(value) for key, value in values.items()}
        if values is not None
        else None,
    )


def parse_receivers(notify: Object, path: str = "spec.notify") -> tuple[Receiver, ...]:
    where = f"{path}.receivers"
    return tuple(
        Receiver(
            type=f.string(entry, "type", where),
            secret_ref=f.string(f.obj(entry, "secretRef", where), "name", f"{where}.secretRef"),
            events=f.strings(entry, "events", where),
        )
        for entry in f.objects(notify, "receivers", path)
    )


def parse_status(data: Object, path: str = "status") -> ModelSyncStatus:
    return ModelSyncStatus(
        observed_generation=f.opt_integer(data, "observedGeneration", path),
        conditions=f.conditions(data, path),
        last_fetched_revision=f.string(data, "lastFetchedRevision", path),
        last_applied_revision=f.string(data, "lastAppliedRevision", path),
        last_attempted_revision=f.string(data, "lastAttemptedRevision", path),
        last_handled_reconcile_at=f.string(data, "lastHandledReconcileAt", path),
        inventory=tuple(
            InventoryEntry(
                api_version=f.string(entry, "apiVersion", f"{path}.inventory"),
                kind=f.string(entry, "kind", f"{path}.inventory"),
                name=f.string(entry, "name", f"{path}.inventory"),
                namespace=f.string(entry, "namespace", f"{path}.inventory"),
            )
            for entry in f.objects(data, "inventory", path)
        ),
        history=tuple(
            SyncRecord(
                revision=f.string(entry, "revision", f"{path}.history"),
                started=f.string(entry, "started", f"{path}.history"),
                finished=f.string(entry, "finished", f"{path}.history"),
                result=f.string(entry, "result", f"{path}.history"),
                message=f.string(entry, "message", f"{path}.history"),
                created=f.integer(entry, "created", f"{path}.history"),
                configured=f.integer(entry, "configured", f"{path}.history"),
                unchanged=f.integer(entry, "unchanged", f"{path}.history"),
                deleted=f.integer(entry, "deleted", f"{path}.history"),
            )
            for entry in f.objects(data, "history", path)
        ),
        errors=f.strings(data, "errors", path),
        models_not_ready=f.strings(data, "modelsNotReady", path),
        write_backs=f.strings(data, "writeBacks", path),
    )


def parse(resource: Object) -> ModelSync:
    """A ModelSync as the API server returns it (plain JSON)."""
    meta = f.obj(resource, "metadata", "")
    return ModelSync(
        namespace=f.string(meta, "namespace", "metadata"),
        name=f.string(meta, "name", "metadata"),
        generation=f.integer(meta, "generation", "metadata"),
        spec=parse_spec(f.obj(resource, "spec", "")),
        status=parse_status(f.obj(resource, "status", "")),
    )
