"""The operator's settings: one typed dataclass, one field per `modelsync run` flag."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field

from modelsync.gitops import render as rendering
from modelsync.gitops.budget import MAX_REVISION_BYTES
from modelsync.serving import runtimes

# How model pods run: "restricted" (non-root, no privilege escalation, no capabilities,
# a read-only root filesystem with a scratch emptyDir) or "image" (as the image says).
MODEL_POD_SECURITY_CHOICES = ("restricted", "image")
# Pull policy of model pods' containers; "" leaves it to Kubernetes (Always for :latest,
# else IfNotPresent) and renders nothing, so upgrading the operator rolls no model.
IMAGE_PULL_POLICY_CHOICES = ("", "Always", "IfNotPresent", "Never")


def parse_runtime_images(pairs: Iterable[str]) -> dict[str, str]:
    """`NAME=IMAGE` pairs (the `--runtime-image` flag) as {runtime: image}; ValueError
    naming the pair and the fix when a runtime is unknown, custom, or given no image."""
    images: dict[str, str] = {}
    defaults = sorted(name for name in runtimes.RUNTIMES if name != runtimes.CUSTOM)
    for pair in pairs:
        name, sep, image = pair.partition("=")
        name, image = name.strip(), image.strip()
        if not sep or not image:
            raise ValueError(
                f"{pair!r}: write RUNTIME=IMAGE, e.g. mlserver=mirror.local/mlserver:1.7.1"
            )
        if name not in defaults:
            raise ValueError(
                f"{pair!r}: {name!r} is not a runtime with a default image; "
                f"use one of {', '.join(defaults)} (a custom runtime names its image itself)"
            )
        if name in images and images[name] != image:
            raise ValueError(f"{pair!r}: runtime {name} was given another image before")
        images[name] = image
    return images


@dataclass(frozen=True)
class OperatorSettings:
    namespaces: tuple[str, ...] = field(default_factory=tuple)
    """Namespaces to watch; empty means every namespace (cluster-wide RBAC needed).
    Each entry is a kopf pattern: comma-separated globs where "!glob" leaves namespaces
    out, e.g. ("*,!kube-*",)."""

    workers: int = 4
    """ModelDeployments reconciled at the same time (each in a thread of its own)."""

    resync_seconds: float = 300.0
    """How often every ModelDeployment is checked even when no event came. A check
    that finds nothing to change makes no API request at all."""

    quiet_rollout_seconds: float = 30.0
    """How long a model's rollout going as planned may go unwritten in its status. Its
    end (Ready with the history entry, or a failure) is written at once, in one write;
    a rollout still under way after this long is written then. Each status write is one
    the API server and etcd must serve (at 1,000 models, what all of them wait on);
    0 writes every step of every rollout."""

    retry_seconds: float = 5.0
    """First delay before a failed reconciliation is tried again; doubles up to 5 min."""

    watch_server_timeout: int = 300
    """Seconds after which the API server ends a watch (kopf reconnects); keeps silent
    streams from hanging forever."""

    relist_seconds: float = 300.0
    """How often the ModelSyncs and ModelDeployments are also listed from the API server:
    an event the watch did not deliver (kopf re-lists only on 410 Gone) is picked up
    within this."""

    http_host: str = "0.0.0.0"  # noqa: S104 - in a pod, the kubelet and Prometheus reach us from outside
    """Address of the HTTP server (/metrics, /healthz, /readyz)."""

    http_port: int = 8080
    """Port of the HTTP server; 0 turns it off."""

    git_cache_dir: str | None = None
    """Where repositories and snapshots are kept (default: a directory under /tmp)."""

    max_revision_bytes: int = MAX_REVISION_BYTES
    """Bytes one revision's files may hold in all, and so any one file (default 100 MiB,
    as Flux). A revision over it is refused with the files named, before any of it is
    written to disk or read into memory; servers that can filter never send blobs over it.
    The cache holds up to 32 snapshots of this size: size its volume to match."""

    leader_election: bool = False
    """Take a Lease before acting, so that several replicas never act at once."""

    lease_namespace: str = "default"
    """Namespace of the Lease (the operator's own; the chart sets it)."""

    lease_name: str = "modelsync-leader"
    """Name of the Lease."""

    lease_seconds: int = 15
    """How long a Lease not renewed stays the holder's before another replica takes it."""

    shard: str = ""
    """Reconcile only ModelSyncs labelled modelsync.io/shard=<shard> and what they apply;
    empty: only objects without that label. A shard always elects on a Lease of its own
    (`<lease>-<shard>`, labelled with the shard), which is how the unsharded operator
    tells a live shard from a label naming none (NoShard)."""

    kube_qps: float = 200.0
    """Requests a second the operator makes to the Kubernetes API, at most (client-side
    token bucket; watches not counted). Past it, work waits in the operator."""

    kube_burst: int = 400
    """Requests allowed at once above `kube_qps` after a quiet time."""

    default_service_account: str = ""
    """The ServiceAccount, in the ModelSync's own namespace, that applies git content of
    a ModelSync that names none in spec.serviceAccountName (as Flux's
    --default-service-account). Empty: such a ModelSync applies nothing
    (ServiceAccountNotFound), unless apply_as_operator is set."""

    apply_as_operator: bool = False
    """Apply the git content of a ModelSync with no account (and no default) with the
    operator's own identity. Off by default: a tenant's repository would get the
    operator's rights. For single-team clusters only."""

    allow_other_namespaces: tuple[str, ...] = field(default_factory=tuple)
    """Namespaces (patterns, as for `namespaces`) whose ModelSyncs may write into other
    namespaces: objects naming another namespace, and spec.targetNamespace. Elsewhere
    every object lands in the ModelSync's own namespace."""

    allow_cluster_scoped: tuple[str, ...] = field(default_factory=tuple)
    """Namespaces (patterns) whose ModelSyncs may write cluster-scoped objects (CRDs,
    ClusterRoles, Namespaces...); the account applying them still needs the RBAC."""

    allow_remote_clusters: tuple[str, ...] = field(default_factory=tuple)
    """Namespaces (patterns) whose ModelSyncs may apply to another cluster through
    spec.kubeConfig; elsewhere such a ModelSync is refused (RemoteClusterNotAllowed)."""

    remote_cluster_servers: tuple[str, ...] = field(default_factory=tuple)
    """The API servers, as https://host:port, a spec.kubeConfig kubeconfig may name; any
    other is refused before a connection (a tenant's kubeconfig would otherwise point the
    operator at any address it reaches). Empty: none."""

    controllers: tuple[str, ...] = ("gitops", "serving")
    """Which controllers this operator runs: "gitops" (ModelSyncs: fetch, apply, prune,
    write-back) and "serving" (ModelDeployments: serve, roll back). A remote cluster that
    a management operator applies to runs "serving" alone."""

    model_pod_security: str = "restricted"
    """How model pods run: "restricted" (non-root uid 1000, no privilege escalation, all
    capabilities dropped, read-only root filesystem with an emptyDir at /tmp) or "image"
    (the image's own user and filesystem: for server images that need root). The
    platform's choice: no ModelDeployment field relaxes it."""

    runtime_images: dict[str, str] = field(default_factory=dict)
    """Image of each runtime, by runtime name, where it is not runtimes.py's default (a
    private mirror, an air-gapped cluster, images built in-house). A ModelDeployment's
    own `spec.runtime.image` still wins over it."""

    storage_initializer_image: str = runtimes.STORAGE_INITIALIZER_IMAGE
    """Image of the init container that downloads s3://, gs:// and https:// models."""

    image_pull_policy: str = ""
    """imagePullPolicy of every container of model pods: Always, IfNotPresent, Never, or
    "" to render none (Kubernetes' default: Always for :latest, else IfNotPresent)."""

    allow_file_urls: bool = False
    """Let a ModelSync name a file:// repository. Off: such a URL is refused with a message
    and git may not use the file transport at all, since a tenant could read any repository
    on the operator's disk (another tenant's cached ones included). For tests and demos."""

    kubeconfig: str | None = None
    """A kubeconfig file; default: in-cluster config, else $KUBECONFIG or ~/.kube/config."""

    analysis_endpoints: tuple[str, ...] = field(default_factory=tuple)
    """The Prometheus endpoints canary analysis may query, as scheme://host:port (e.g.
    "http://prometheus.monitoring:9090"). A ModelDeployment's prometheusURL must match
    one in scheme, host and port exactly, or it is refused before any connection; empty
    means none may be queried. Each query is one GET, redirects not followed, answered
    within 10s and 1 MiB, run off the reconcile workers."""

    kustomize: str = "kustomize"
    """The kustomize binary (a path, or a name looked up on PATH) that renders a
    spec.path holding a kustomization; the operator image holds the version
    rendering.KUSTOMIZE_VERSION names."""

    helm: str = "helm"
    """The helm binary (a path, or a name looked up on PATH) that renders spec.helm
    charts with `helm template` (never a Helm release)."""

    allow_remote_bases: bool = False
    """Let kustomizations name remote bases (git or https URLs), which kustomize then
    fetches from the operator's network. Off: refused before kustomize runs (as Flux's
    --no-remote-bases), and only files of the revision are rendered."""

    render_timeout_seconds: float = rendering.TIMEOUT_SECONDS
    """How long one render (kustomize build, helm template) may run before it is killed
    and the revision refused."""

    render_max_bytes: int = rendering.MAX_OUTPUT_BYTES
    """Bytes of output one render may write; past it the renderer is killed and the
    revision refused (its output is read as a stream, never held beyond this)."""

    render_memory_bytes: int = rendering.MEMORY_BYTES
    """Address space a renderer may use (RLIMIT_AS; its Go heap limit, GOMEMLIMIT, is
    half of it): a chart or overlay that needs more is refused, the operator unharmed."""

    render_memory_total_bytes: int = 0
    """Memory all renders at once may take: as many run at once as it holds renderers of
    render_memory_bytes (at least one); the others wait. The chart passes its container's
    memory limit less operator.memoryHeadroomBytes. 0: no bound."""

    commit_status_api_urls: tuple[str, ...] = field(default_factory=tuple)
    """Git host APIs, as scheme://host:port, that a ModelSync's spec.notify.apiURL may
    name besides its repository's own host (e.g. "https://git.example.com:8443"). Commit
    statuses go to the API derived from the repository URL (api.github.com for
    github.com) unless apiURL names one of these; any other apiURL is refused before a
    connection. Empty: only the repository's own host."""

    notification_endpoints: tuple[str, ...] = field(default_factory=tuple)
    """Receivers, as scheme://host:port, that notifications (spec.notify.receivers) may
    be posted to (e.g. "https://hooks.slack.com"). A receiver's address (from its Secret)
    must match one in scheme, host and port exactly, or it is refused before any
    connection; empty means none. An allow-list of its own, not the analysis endpoints':
    a Prometheus that may be queried is no place to post to, nor the reverse."""

    def render_settings(self) -> rendering.RenderSettings:
        return rendering.RenderSettings(
            kustomize=self.kustomize,
            helm=self.helm,
            allow_remote_bases=self.allow_remote_bases,
            timeout_seconds=self.render_timeout_seconds,
            max_output_bytes=self.render_max_bytes,
            memory_bytes=self.render_memory_bytes,
            memory_total_bytes=self.render_memory_total_bytes,
            kustomize_setting="--kustomize (Helm value operator.kustomize)",
            helm_setting="--helm (Helm value operator.helm)",
        )


def named_outright(patterns: tuple[str, ...]) -> bool:
    """Whether the watched namespaces are plain names (no glob, no exclusion)."""
    return bool(patterns) and all(not set(p) & set("*?[!,") for p in patterns)


def namespace_matches(namespace: str, patterns: tuple[str, ...]) -> bool:
    """kopf's namespace patterns: a namespace matches when any pattern does; a pattern is
    comma-separated globs, where "!glob" leaves namespaces out ("*,!kube-*")."""
    for pattern in patterns:
        globs = [g.strip() for g in pattern.split(",") if g.strip()]
        matches = not globs or globs[0].startswith("!")
        for glob in globs:
            if glob.startswith("!"):
                matches = matches and not fnmatch.fnmatchcase(namespace, glob[1:])
            else:
                matches = matches or fnmatch.fnmatchcase(namespace, glob)
        if matches:
            return True
    return False
