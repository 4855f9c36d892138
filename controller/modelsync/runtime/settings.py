"""The operator's settings: one typed dataclass, one field per `modelsync run` flag. A
field's `Flag` (its metadata) is how the command line sets it; cli/run.py makes the
option from it, so a new setting is a new flag in one edit."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from modelsync.api import constants as c
from modelsync.gitops import render as rendering
from modelsync.gitops.budget import MAX_REVISION_BYTES
from modelsync.gitops.fetch import MAX_CACHE_BYTES
from modelsync.gitops.settings import SyncSettings
from modelsync.serving import runtimes

# How model pods run: "restricted" (non-root, no privilege escalation, no capabilities,
# a read-only root filesystem with a scratch emptyDir) or "image" (as the image says).
MODEL_POD_SECURITY_CHOICES = ("restricted", "image")
# Pull policy of model pods' containers; "" leaves it to Kubernetes (Always for :latest,
# else IfNotPresent) and renders nothing, so upgrading the operator rolls no model.
IMAGE_PULL_POLICY_CHOICES = ("", "Always", "IfNotPresent", "Never")
_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?")


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


def parse_image(value: str) -> str:
    if not value.strip():
        raise ValueError("an empty image; leave the flag out for the default")
    return value.strip()


def parse_shard(value: str) -> str:
    """A shard names a label value; refused at start-up, not at the first list request."""
    if not _LABEL_VALUE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a label value (at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit)"
        )
    return value


def parse_controllers(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    known = (c.CONTROLLER_GITOPS, c.CONTROLLER_SERVING)
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise ValueError(
            f"{value!r}: name one or both of {', '.join(known)}, e.g. --controllers serving"
        )
    return names


# The endpoint parsers load their modules only when `run` reads its flags.
def parse_analysis_endpoints(values: Iterable[str]) -> tuple[str, ...]:
    from modelsync.serving.canary import parse_endpoint

    return tuple(parse_endpoint(value) for value in values)


def parse_notification_endpoints(values: Iterable[str]) -> tuple[str, ...]:
    from modelsync.gitops.notices import parse_endpoint

    return tuple(parse_endpoint(value) for value in values)


def parse_commit_status_api_urls(values: Iterable[str]) -> tuple[str, ...]:
    from modelsync.gitops.commitstatus import parse_api_url

    return tuple(parse_api_url(value) for value in values)


def parse_remote_cluster_servers(values: Iterable[str]) -> tuple[str, ...]:
    from modelsync.api.origins import parse_origin

    servers = tuple(
        parse_origin(value, "an API server", "https://prod-api.example.com:6443")
        for value in values
    )
    if any(not server.startswith("https://") for server in servers):
        raise ValueError("https:// only (TLS)")
    return servers


@dataclass(frozen=True)
class Flag:
    """How `modelsync run` sets a setting: the option's names (default: --<field-name>),
    help, and how its value is read. Types follow the field's: a bool is an on/off flag, a
    tuple (or the runtime images' dict) a repeatable option, unless `comma_separated`."""

    help: str
    names: tuple[str, ...] = ()
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    min: float | None = None  # the smallest value allowed
    envvar: str | None = None
    comma_separated: bool = False  # one value, its parts separated by commas
    parse: Callable[[Any], Any] | None = None  # the value as the setting; ValueError refuses it


def flag(default: Any = None, factory: Callable[[], Any] | None = None, **how: Any) -> Any:
    """A field set by the `modelsync run` option `Flag(**how)`."""
    metadata = {"flag": Flag(**how)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class OperatorSettings:
    namespaces: tuple[str, ...] = flag(
        factory=tuple,
        names=("-n", "--namespace"),
        help="a namespace to watch (repeat for more; patterns such as team-* or *,!kube-* work; "
        "default: all namespaces)",
    )
    """Namespaces to watch; empty means every namespace (cluster-wide RBAC needed).
    Each entry is a kopf pattern: comma-separated globs where "!glob" leaves namespaces
    out, e.g. ("*,!kube-*",)."""

    workers: int = flag(
        default=4,
        help="ModelDeployments and ModelSyncs reconciled at once",
    )
    """ModelDeployments reconciled at the same time (each in a thread of its own)."""

    resync_seconds: float = flag(
        default=300.0,
        help="full resync period of the ModelDeployments",
    )
    """How often every ModelDeployment is checked even when no event came. A check
    that finds nothing to change makes no API request at all."""

    validation_pod_seconds: float = flag(
        default=120.0,
        min=1,
        help="the inference gate's time for all the samples of one pod (a slot held at most)",
    )
    """How long one new pod may hold one of the inference gate's slots for all of its
    spec.validation samples (each sample also ends at its own timeoutSeconds). The slots
    are shared by namespace: while another namespace waits, a slot that comes free goes
    to it, so one tenant's silent pods delay another's by at most this long."""

    quiet_rollout_seconds: float = flag(
        default=30.0,
        min=0,
        help="a rollout going as planned is written to status when it ends, or after this long",
    )
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

    http_port: int = flag(
        default=8080,
        help="port of /metrics, /healthz, /readyz and /hooks/*; 0 turns it off",
    )
    """Port of the HTTP server; 0 turns it off."""

    git_cache_dir: str | None = flag(
        default=None,
        help="where repositories and snapshots are kept (default: under the temp dir)",
    )
    """Where repositories and snapshots are kept (default: a directory under /tmp)."""

    max_revision_bytes: int = flag(
        default=MAX_REVISION_BYTES,
        min=1,
        help="bytes one revision's files may hold in all (and so any one file); "
        "a larger revision is refused, naming its files",
    )
    """Bytes one revision's files may hold in all, and so any one file (default 100 MiB,
    as Flux). A revision over it is refused with the files named, before any of it is
    written to disk or read into memory; servers that can filter never send blobs over it.
    The disk budget (git_cache_max_bytes) must hold what one sync may need at this size:
    24 times it and 6 MiB (a fetch of it cut off at 4 times it and a MiB, its pack and
    index, the repository's earlier pack, a snapshot, a render's copy or a clone)."""

    git_cache_max_bytes: int = flag(
        default=MAX_CACHE_BYTES,
        min=1,
        help="bytes the git cache may take on disk (repositories, snapshots, render copies); "
        "what no sync uses is trimmed to stay under it",
    )
    """Bytes the git cache may take on disk, as the kubelet counts an emptyDir (default
    3 GiB; the chart's volume is 4Gi): cached repositories, snapshots, and the private
    copies of renders and write-backs. Each fetch, extract, render copy and clone
    reserves its worst case first; what no running sync uses (a snapshot no sync reads,
    a repository no git works in) is trimmed, least recently used first, to make room; a
    sync that finds no room even then is retried (Retrying), nothing of it judged."""

    leader_election: bool = flag(
        default=False,
        names=("--leader-elect",),
        help="take a Lease before acting, so several replicas never act at once",
    )
    """Take a Lease before acting, so that several replicas never act at once."""

    lease_namespace: str = flag(
        default="default",
        envvar="POD_NAMESPACE",
        help="namespace of the Lease (default: $POD_NAMESPACE)",
    )
    """Namespace of the Lease (the operator's own; the chart sets it)."""

    lease_name: str = "modelsync-leader"
    """Name of the Lease."""

    lease_seconds: int = flag(
        default=15,
        help="how long an unrenewed Lease stays its holder's",
    )
    """How long a Lease not renewed stays the holder's before another replica takes it."""

    shard: str = flag(
        default="",
        parse=parse_shard,
        help="reconcile only ModelSyncs labelled modelsync.io/shard=NAME (and what they apply); "
        "without it, only unlabelled ones",
    )
    """Reconcile only ModelSyncs labelled modelsync.io/shard=<shard> and what they apply;
    empty: only objects without that label. A shard always elects on a Lease of its own
    (`<lease>-<shard>`, labelled with the shard), which is how the unsharded operator
    tells a live shard from a label naming none (NoShard)."""

    kube_qps: float = flag(
        default=200.0,
        min=0.1,
        help="Kubernetes API requests a second, at most (client-side rate limit)",
    )
    """Requests a second the operator makes to the Kubernetes API, at most (client-side
    token bucket; watches not counted). Past it, work waits in the operator."""

    kube_burst: int = flag(
        default=400,
        min=1,
        help="requests allowed at once above --kube-qps",
    )
    """Requests allowed at once above `kube_qps` after a quiet time."""

    analysis_endpoints: tuple[str, ...] = flag(
        factory=tuple,
        names=("--analysis-endpoint",),
        parse=parse_analysis_endpoints,
        help="a Prometheus endpoint (scheme://host:port) canary analysis may query (repeat for "
        "more; default: none, every analysis URL is refused)",
    )
    """The Prometheus endpoints canary analysis may query, as scheme://host:port (e.g.
    "http://prometheus.monitoring:9090"). A ModelDeployment's prometheusURL must match
    one in scheme, host and port exactly, or it is refused before any connection; empty
    means none may be queried. Each query is one GET, redirects not followed, answered
    within 10s and 1 MiB, run off the reconcile workers."""

    commit_status_api_urls: tuple[str, ...] = flag(
        factory=tuple,
        names=("--commit-status-api-url",),
        parse=parse_commit_status_api_urls,
        help="a git host API (scheme://host:port) that a ModelSync's spec.notify.apiURL may name "
        "besides its repository's own host (repeat for more; default: none)",
    )
    """Git host APIs, as scheme://host:port, that a ModelSync's spec.notify.apiURL may
    name besides its repository's own host (e.g. "https://git.example.com:8443"). Commit
    statuses go to the API derived from the repository URL (api.github.com for
    github.com) unless apiURL names one of these; any other apiURL is refused before a
    connection. Empty: only the repository's own host."""

    notification_endpoints: tuple[str, ...] = flag(
        factory=tuple,
        names=("--notification-endpoint",),
        parse=parse_notification_endpoints,
        help="a receiver (scheme://host:port) that spec.notify.receivers may post notifications "
        "to (repeat for more; default: none, every receiver is refused)",
    )
    """Receivers, as scheme://host:port, that notifications (spec.notify.receivers) may
    be posted to (e.g. "https://hooks.slack.com"). A receiver's address (from its Secret)
    must match one in scheme, host and port exactly, or it is refused before any
    connection; empty means none. An allow-list of its own, not the analysis endpoints':
    a Prometheus that may be queried is no place to post to, nor the reverse."""

    default_service_account: str = flag(
        default="",
        metavar="NAME",
        help="ServiceAccount (in each ModelSync's namespace) that applies git content when the "
        "ModelSync names none",
    )
    """The ServiceAccount, in the ModelSync's own namespace, that applies git content of
    a ModelSync that names none in spec.serviceAccountName (as Flux's
    --default-service-account). Empty: such a ModelSync applies nothing
    (ServiceAccountNotFound), unless apply_as_operator is set."""

    apply_as_operator: bool = flag(
        default=False,
        help="apply the content of a ModelSync with no account as the operator itself "
        "(single-team clusters only)",
    )
    """Apply the git content of a ModelSync with no account (and no default) with the
    operator's own identity. Off by default: a tenant's repository would get the
    operator's rights. For single-team clusters only."""

    allow_other_namespaces: tuple[str, ...] = flag(
        factory=tuple,
        metavar="PATTERN",
        help="namespaces whose ModelSyncs may write into other namespaces (repeat; patterns)",
    )
    """Namespaces (patterns, as for `namespaces`) whose ModelSyncs may write into other
    namespaces: objects naming another namespace, and spec.targetNamespace. Elsewhere
    every object lands in the ModelSync's own namespace."""

    allow_cluster_scoped: tuple[str, ...] = flag(
        factory=tuple,
        metavar="PATTERN",
        help="namespaces whose ModelSyncs may write cluster-scoped objects (repeat; patterns)",
    )
    """Namespaces (patterns) whose ModelSyncs may write cluster-scoped objects (CRDs,
    ClusterRoles, Namespaces...); the account applying them still needs the RBAC."""

    allow_remote_clusters: tuple[str, ...] = flag(
        factory=tuple,
        metavar="PATTERN",
        help="namespaces whose ModelSyncs may apply to another cluster (spec.kubeConfig; "
        "repeat; patterns)",
    )
    """Namespaces (patterns) whose ModelSyncs may apply to another cluster through
    spec.kubeConfig; elsewhere such a ModelSync is refused (RemoteClusterNotAllowed)."""

    remote_cluster_servers: tuple[str, ...] = flag(
        factory=tuple,
        names=("--remote-cluster-server",),
        parse=parse_remote_cluster_servers,
        help="an API server (https://host:port) a spec.kubeConfig may name (repeat for more; "
        "default: none)",
    )
    """The API servers, as https://host:port, a spec.kubeConfig kubeconfig may name; any
    other is refused before a connection (a tenant's kubeconfig would otherwise point the
    operator at any address it reaches). Empty: none."""

    controllers: tuple[str, ...] = flag(
        default=(c.CONTROLLER_GITOPS, c.CONTROLLER_SERVING),
        comma_separated=True,
        parse=parse_controllers,
        help="the controllers to run, comma-separated: gitops (ModelSyncs), serving "
        "(ModelDeployments); a remote cluster's operator runs serving",
    )
    """Which controllers this operator runs: "gitops" (ModelSyncs: fetch, apply, prune,
    write-back) and "serving" (ModelDeployments: serve, roll back). A remote cluster that
    a management operator applies to runs "serving" alone."""

    model_pod_security: str = flag(
        default="restricted",
        choices=MODEL_POD_SECURITY_CHOICES,
        help="restricted: model pods non-root on a read-only root filesystem; image: as built",
    )
    """How model pods run: "restricted" (non-root uid 1000, no privilege escalation, all
    capabilities dropped, read-only root filesystem with an emptyDir at /tmp) or "image"
    (the image's own user and filesystem: for server images that need root). The
    platform's choice: no ModelDeployment field relaxes it."""

    runtime_images: dict[str, str] = flag(
        factory=dict,
        names=("--runtime-image",),
        metavar="RUNTIME=IMAGE",
        parse=parse_runtime_images,
        help="the image of a runtime in this installation (repeat for more), "
        "e.g. mlserver=mirror.local/mlserver:1.7.1; default: runtimes.py's",
    )
    """Image of each runtime, by runtime name, where it is not runtimes.py's default (a
    private mirror, an air-gapped cluster, images built in-house). A ModelDeployment's
    own `spec.runtime.image` still wins over it."""

    storage_initializer_image: str = flag(
        default=runtimes.STORAGE_INITIALIZER_IMAGE,
        parse=parse_image,
        help="image of the init container that downloads s3://, gs:// and https:// models",
    )
    """Image of the init container that downloads s3://, gs:// and https:// models."""

    image_pull_policy: str = flag(
        default="",
        choices=IMAGE_PULL_POLICY_CHOICES,
        help="imagePullPolicy of model pods' containers (default: none, Kubernetes decides)",
    )
    """imagePullPolicy of every container of model pods: Always, IfNotPresent, Never, or
    "" to render none (Kubernetes' default: Always for :latest, else IfNotPresent)."""

    allow_file_urls: bool = flag(
        default=False,
        names=(c.FLAG_ALLOW_FILE_URLS,),
        help="let ModelSyncs name file:// repositories (any repository on the operator's disk: "
        "for tests and demos, not for tenants)",
    )
    """Let a ModelSync name a file:// repository. Off: such a URL is refused with a message
    and git may not use the file transport at all, since a tenant could read any repository
    on the operator's disk (another tenant's cached ones included). For tests and demos."""

    kustomize: str = flag(
        default="kustomize",
        metavar="PATH",
        help=f"kustomize {rendering.KUSTOMIZE_VERSION} binary (path, or name on PATH)",
    )
    """The kustomize binary (a path, or a name looked up on PATH) that renders a
    spec.path holding a kustomization; the operator image holds the version
    rendering.KUSTOMIZE_VERSION names."""

    helm: str = flag(
        default="helm",
        metavar="PATH",
        help=f"helm {rendering.HELM_VERSION} binary that renders spec.helm charts",
    )
    """The helm binary (a path, or a name looked up on PATH) that renders spec.helm
    charts with `helm template` (never a Helm release)."""

    allow_remote_bases: bool = flag(
        default=False,
        help="let kustomizations fetch remote bases (off: refused before kustomize runs)",
    )
    """Let kustomizations name remote bases (git or https URLs), which kustomize then
    fetches from the operator's network (git over https, http and ssh only). Off:
    refused before kustomize runs (as Flux's --no-remote-bases), only files of the
    revision are rendered, and the renderer has no network. A file:// base, or a URL
    where a file belongs, is refused either way."""

    render_timeout_seconds: float = flag(
        default=rendering.TIMEOUT_SECONDS,
        min=0.1,
        help="how long one kustomize build or helm template may run",
    )
    """How long one render (kustomize build, helm template) may run before it is killed
    and the revision refused."""

    render_max_bytes: int = flag(
        default=rendering.MAX_OUTPUT_BYTES,
        min=1,
        help="bytes of output one render may write before it is killed",
    )
    """Bytes of output one render may write; past it the renderer is killed and the
    revision refused (its output is read as a stream, never held beyond this)."""

    render_memory_bytes: int = flag(
        default=rendering.MEMORY_BYTES,
        min=64 << 20,
        help="address space (RLIMIT_AS) of a renderer; GOMEMLIMIT is half of it",
    )
    """Address space a renderer may use (RLIMIT_AS; its Go heap limit, GOMEMLIMIT, is
    half of it): a chart or overlay that needs more is refused, the operator unharmed."""

    render_memory_total_bytes: int = flag(
        default=0,
        min=0,
        help="memory all renders at once may take; 0: no bound",
    )
    """Memory all renders at once may take: as many run at once as it holds renderers of
    render_memory_bytes (at least one); the others wait. The chart passes its container's
    memory limit less operator.memoryHeadroomBytes. 0: no bound."""

    kubeconfig: str | None = flag(
        default=None,
        help="kubeconfig file (as the global option; default: in-cluster, else $KUBECONFIG)",
    )
    """A kubeconfig file; default: in-cluster config, else $KUBECONFIG or ~/.kube/config."""

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

    def sync_settings(self) -> SyncSettings:
        """What the ModelSync controller reads of these settings."""
        return SyncSettings(
            allow_other_namespaces=self.allow_other_namespaces,
            allow_cluster_scoped=self.allow_cluster_scoped,
            allow_remote_clusters=self.allow_remote_clusters,
            remote_cluster_servers=self.remote_cluster_servers,
            default_service_account=self.default_service_account,
            apply_as_operator=self.apply_as_operator,
            kube_qps=self.kube_qps,
            kube_burst=self.kube_burst,
            render=self.render_settings(),
        )
