"""What the ModelSync controller reads of the operator's settings: the platform's grants
(by namespace pattern), the account content is applied as, how revisions are rendered,
and how remote clusters are reached. `runtime.settings.OperatorSettings.sync_settings()`
makes it; gitops/ never reads the process's settings themselves."""

from __future__ import annotations

from dataclasses import dataclass

from modelsync.gitops.render import RenderSettings


@dataclass(frozen=True)
class SyncSettings:
    allow_other_namespaces: tuple[str, ...]
    """Namespaces (patterns) whose ModelSyncs may write into other namespaces."""

    allow_cluster_scoped: tuple[str, ...]
    """Namespaces (patterns) whose ModelSyncs may write cluster-scoped objects."""

    allow_remote_clusters: tuple[str, ...]
    """Namespaces (patterns) whose ModelSyncs may apply to another cluster."""

    remote_cluster_servers: tuple[str, ...]
    """The API servers (https://host:port) a spec.kubeConfig kubeconfig may name."""

    default_service_account: str
    """The account applying a ModelSync that names none; empty: none."""

    apply_as_operator: bool
    """Apply a ModelSync with no account (and no default) as the operator itself."""

    kube_qps: float
    """Requests a second to a remote cluster's API, at most (one client per ModelSync)."""

    kube_burst: int
    """Requests allowed at once above kube_qps."""

    render: RenderSettings
    """How kustomize and helm run."""
