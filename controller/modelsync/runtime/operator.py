"""The operator: kopf watches feed a cache and a work queue; workers reconcile.

Handlers are thin: each watch event stores the object's latest body and queues
the ModelDeployment it concerns. Workers take keys off the queue and run
`ServingReconciler.reconcile` in a thread (the Kubernetes client blocks). A
periodic resync queues every ModelDeployment, level-based, so nothing depends
on seeing every event. kopf writes nothing to the objects: only event handlers
are registered (no finalizers, no progress annotations).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import datetime
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import kopf
import kubernetes

from modelsync.api import conditions
from modelsync.api import constants as c
from modelsync.api.namespaces import named_outright, namespace_matches
from modelsync.gitops import modelhealth, webhooks
from modelsync.gitops import render as rendering
from modelsync.gitops.commitstatus import StatusWriter
from modelsync.gitops.fetch import GitFetcher
from modelsync.gitops.notify import Notifier
from modelsync.gitops.reconciler import SyncReconciler, fetch_cache_dir, owned_models
from modelsync.kube import client as kubemod
from modelsync.kube import leader
from modelsync.kube.cache import ObjectCache
from modelsync.kube.workqueue import WorkQueue
from modelsync.runtime import probes, shards
from modelsync.runtime import server as server_mod
from modelsync.runtime.settings import OperatorSettings
from modelsync.serving.analysis import Analyses
from modelsync.serving.gate import Gate
from modelsync.serving.reconciler import OWNED_KINDS, ServingReconciler
from modelsync.serving.render import Images
from modelsync.telemetry import metrics

log = logging.getLogger(__name__)

# group, version, plural of each kind watched for the ModelDeployments: what they own,
# and the pods (whose restarts tell a failing revision).
_OWNED_RESOURCES = {
    "Deployment": ("apps", "v1", "deployments"),
    "Service": ("", "v1", "services"),
    "HorizontalPodAutoscaler": ("autoscaling", "v2", "horizontalpodautoscalers"),
    "Pod": ("", "v1", "pods"),
}
_WATCHED_KINDS = {**OWNED_KINDS, "Pod": "v1"}
# The queue key of a ModelSync's health refresh (its models' Ready changed): a key of
# its own, so that it never stands in for a sync, nor a sync for it.
HEALTH_KEY = "ModelSyncHealth"
# Ready changes of a ModelSync's models within this long make one refresh (one status
# write): 1,000 models coming up would otherwise rewrite it hundreds of times.
HEALTH_BATCH_SECONDS = 2.0
WEBHOOK_TOKEN_TTL_SECONDS = 10.0  # a rotated webhook Secret counts after this at most
UNCACHED_SIZE = 1024  # ModelSyncs read for webhooks outside the index, remembered at most
assert set(_OWNED_RESOURCES) == set(_WATCHED_KINDS)


@dataclass
class Operator:
    """What one running operator holds; built at start-up, dropped at clean-up."""

    settings: OperatorSettings
    cache: ObjectCache = field(default_factory=ObjectCache)
    queue: WorkQueue | None = None
    reconciler: ServingReconciler | None = None
    syncer: SyncReconciler | None = None
    statuses: StatusWriter | None = None
    notifier: Notifier | None = None
    # The watch handlers by kind, and the resourceVersion each object was last delivered
    # at: the periodic list (relist) compares with it and calls the same handlers.
    handlers: dict[str, Handler] = field(default_factory=dict)
    delivered: dict[tuple[str, str, str], str] = field(default_factory=dict)
    executor: concurrent.futures.ThreadPoolExecutor | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop | None = None
    kube: kubemod.Kube | None = None
    rolled_back_seen: dict[tuple[str, str], str] = field(default_factory=dict)
    ready_seen: dict[tuple[str, str], bool] = field(default_factory=dict)
    # What last made each ModelDeployment worth a reconcile, and each pod's restarts (and
    # inference gate, pod_trigger): our own status writes and a pod's ordinary progress
    # come back as events too.
    md_triggers: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)
    pod_restarts: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)
    # Each ModelSync's models, by the resourceVersion they were read at: parsing a
    # 10,000-entry inventory for every model event made the events quadratic.
    sync_models: dict[tuple[str, str], tuple[str, frozenset[tuple[str, str]]]] = field(
        default_factory=dict
    )
    health: probes.Health = field(default_factory=probes.Health)
    tokens: dict[tuple[str, str], tuple[float, bytes | None]] = field(default_factory=dict)
    # What a webhook delivery is decided on (webhooks.target), for every ModelSync of
    # every shard in the watched namespaces, from the ModelSyncs' watch: a name not here
    # is answered with no API request. None: known by name only (listed at start-up,
    # its watch event not in yet).
    hook_targets: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)
    uncached: dict[tuple[str, str], tuple[float, dict[str, Any] | None]] = field(
        default_factory=dict
    )

    def accepts_work(self) -> bool:
        return self.queue is not None and self.loop is not None and self.health.caches_synced

    def ours(self, body: Mapping[str, Any]) -> bool:
        """Whether this operator handles the object. Objects of another shard are as good
        as deleted here: filtered in the handlers, not by kopf's label filters, so that one
        relabelled away leaves this cache at once. So are those of a namespace the patterns
        leave out (watched cluster-wide, see _run)."""
        meta = body.get("metadata") or {}
        patterns = self.settings.namespaces
        return shards.mine(meta, self.settings.shard) and (
            not patterns or namespace_matches(meta.get("namespace") or "", patterns)
        )

    def enqueue(self, key: Hashable) -> None:
        if self.queue is None:
            return
        serving = c.CONTROLLER_SERVING in self.settings.controllers
        if not serving and isinstance(key, tuple) and key[0] == c.MODELDEPLOYMENT_KIND:
            return  # the ModelDeployments are watched for their ModelSyncs' health only
        self.queue.add(key)

    def refresh_health(self, sync: tuple[str, str]) -> None:
        """Soon, once for every Ready change until then (never postponed further)."""
        key = (HEALTH_KEY, *sync)
        if self.queue is not None and not self.queue.scheduled(key):
            self.queue.schedule(key, HEALTH_BATCH_SECONDS)

    def enqueue_threadsafe(self, key: Hashable) -> None:
        """Queue `key` from another thread (the HTTP server's)."""
        if self.queue is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(self.queue.add, key)

    def webhook_token(self, ms: dict[str, Any]) -> bytes | None:
        """The token of the ModelSync's webhook Secret (key `token`), if it has one. Kept
        for a few seconds, so a flood of deliveries does not become a flood of GETs."""
        ref = ms["spec"].get("webhookSecretRef")
        if not ref or self.kube is None:
            return None
        key = (ms["metadata"]["namespace"], ref["name"])
        now = time.monotonic()
        cached = self.tokens.get(key)
        if cached is not None and now - cached[0] < WEBHOOK_TOKEN_TTL_SECONDS:
            return cached[1]
        try:
            secret = self.kube.get("v1", "Secret", key[0], key[1])
        except kubernetes.client.ApiException as error:
            if error.status != 403:
                raise
            secret = None  # a namespace the platform has not enabled: no token, 401
        value = ((secret or {}).get("data") or {}).get("token")
        token = base64.b64decode(value) if value else None
        self.tokens[key] = (now, token)
        return token

    def webhook_target(self, namespace: str, name: str) -> tuple[bool, dict[str, Any] | None]:
        """Whether a ModelSync of that name exists (as the watch and the start-up list
        said) and, when its watch event is in, what a delivery is decided on. Never a
        request: anyone may name any ModelSync on the webhook port."""
        key = (namespace, name)
        return key in self.hook_targets, self.hook_targets.get(key)

    def uncached_modelsync(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A ModelSync listed at start-up whose watch event is not in yet (a replica that
        has just taken the lead), read from the API for a webhook. Only for names that
        exist (webhook_target), and remembered a few seconds."""
        if self.kube is None or c.CONTROLLER_GITOPS not in self.settings.controllers:
            return None  # a serving-only operator syncs no ModelSync
        key, now = (namespace, name), time.monotonic()
        cached = self.uncached.get(key)
        if cached is not None and now - cached[0] < WEBHOOK_TOKEN_TTL_SECONDS:
            return cached[1]
        if len(self.uncached) > UNCACHED_SIZE:
            self.uncached.clear()
        try:
            found = self.kube.get(c.API_VERSION, c.MODELSYNC_KIND, namespace, name)
        except kubernetes.client.ApiException as error:
            if error.status != 403:
                raise
            found = None
        self.uncached[key] = (now, found)
        return found

    def hand_over(self, ms: dict[str, Any]) -> None:
        """Ask the ModelSync's own shard to sync it, as `modelsync sync` does."""
        assert self.kube is not None
        meta = ms["metadata"]
        token = datetime.datetime.now(datetime.UTC).isoformat()
        self.kube.resource(c.API_VERSION, c.MODELSYNC_KIND).patch(
            name=meta["name"],
            namespace=meta["namespace"],
            body={"metadata": {"annotations": {c.ANNOTATION_RECONCILE_REQUESTED: token}}},
            content_type="application/merge-patch+json",
        )

    async def resync_now(self) -> int:
        """Queue every known ModelDeployment and wait until the queue is worked off."""
        count = resync_all(self)
        assert self.queue is not None
        await self.queue.join()
        return count


def bearer_token(value: str) -> str:
    """The token of an api_key value: "Bearer <token>" from a kubeconfig, but "bearer
    <token>" from the in-cluster config (a pod's ServiceAccount token), so the scheme is
    matched without case; kopf adds its own."""
    scheme, _, rest = value.strip().partition(" ")
    return rest.strip() if scheme.lower() == "bearer" and rest else value.strip()


def _connection(settings: OperatorSettings) -> kopf.ConnectionInfo:
    """kopf's credentials from the same kubeconfig (or in-cluster config) we use."""
    client = kubemod.api_client(settings.kubeconfig)
    config = client.configuration
    # The client keeps a token as api_key["BearerToken"] (kubernetes >= 35) or
    # api_key["authorization"] (older), with its scheme in front.
    keys = config.api_key or {}
    token = bearer_token(str(keys.get("BearerToken") or keys.get("authorization") or ""))
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
        token=token or None,
    )


async def _worker(runtime: Operator) -> None:
    assert runtime.queue is not None
    assert runtime.reconciler is not None
    assert runtime.syncer is not None
    loop = asyncio.get_running_loop()
    while True:
        key = await runtime.queue.get()
        kind, namespace, name = cast(tuple[str, str, str], key)
        failed, next_sync = False, None
        try:
            if kind == c.MODELSYNC_KIND:
                next_sync = await loop.run_in_executor(
                    runtime.executor, runtime.syncer.reconcile, namespace, name
                )
            elif kind == HEALTH_KEY:
                refreshed = await loop.run_in_executor(
                    runtime.executor, runtime.syncer.refresh_health, namespace, name
                )
                # Its ModelSync is being synced: not a worker held waiting, another try.
                next_sync = None if refreshed else HEALTH_BATCH_SECONDS
            else:
                next_sync = await loop.run_in_executor(
                    runtime.executor, runtime.reconciler.reconcile, namespace, name
                )
        except Exception:
            failed = True
            log.exception("reconciling %s %s/%s failed", kind, namespace, name)
        delay = runtime.queue.done(key, failed=failed)
        if delay is not None:
            log.info("retrying %s %s/%s in %.0fs", kind, namespace, name, delay)
        elif next_sync is not None:
            runtime.queue.schedule(key, next_sync)


async def _resync(runtime: Operator) -> None:
    assert runtime.queue is not None
    while True:
        await asyncio.sleep(runtime.settings.resync_seconds)
        resync_all(runtime)


# What the periodic list compares with the watch: the kinds whose events drive the
# controllers (owned objects' events only wake their ModelDeployment, which resyncs).
RELISTED_KINDS = (c.MODELSYNC_KIND, c.MODELDEPLOYMENT_KIND)
Handler = Callable[..., Any]  # a watch handler (kopf wraps our coroutines in its own type)


async def _relist(runtime: Operator) -> None:
    """kopf lists only when a watch starts or gets 410 Gone: an event it never delivered
    stays undelivered until then. A periodic list, as an informer's, is the net."""
    while True:
        await asyncio.sleep(runtime.settings.relist_seconds)
        for kind in RELISTED_KINDS:
            if kind not in runtime.handlers:
                continue  # a controller this operator does not run (--controllers)
            try:
                await relist(runtime, kind)
            except Exception:  # a failed round is logged; the next one tries again
                log.exception("listing the %ss", kind)


async def relist(runtime: Operator, kind: str) -> int:
    """One round for `kind`: each object listed at a newer version than the watch last
    delivered goes through the watch's own handler, as read again now (it may be gone);
    a ModelSync never reconciled nor queued is queued. Returns how many were picked up."""
    kube = runtime.kube
    if kube is None or runtime.queue is None:
        return 0
    selector = shards.label_selector(runtime.settings.shard)
    listed = await asyncio.to_thread(
        list_watched, kube, runtime.settings, c.API_VERSION, kind, selector
    )
    picked = 0
    for namespace, name in missed(listed, runtime.delivered, kind):
        fresh = await asyncio.to_thread(kube.get, c.API_VERSION, kind, namespace, name)
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            continue
        log.warning(
            "%s %s/%s: an event the watch missed, picked up by the list", kind, namespace, name
        )
        metrics.WATCH_MISSED.labels(kind, "undelivered").inc()
        await runtime.handlers[kind](type="MODIFIED", body=fresh, namespace=namespace, name=name)
        picked += 1
    if kind == c.MODELSYNC_KIND:
        for ms in listed:
            key = (c.MODELSYNC_KIND, ms["metadata"].get("namespace", ""), ms["metadata"]["name"])
            known = (kind, key[1], key[2]) in runtime.delivered
            if known and not ms.get("status") and key not in runtime.queue:
                log.warning("ModelSync %s/%s was never reconciled nor queued: queued", *key[1:])
                metrics.WATCH_MISSED.labels(kind, "unsynced").inc()
                runtime.queue.add(key)
                picked += 1
    return picked


def missed(
    listed: list[dict[str, Any]], delivered: dict[tuple[str, str, str], str], kind: str
) -> list[tuple[str, str]]:
    """(namespace, name) of the listed objects the watch never delivered, or delivered
    at an older resourceVersion (numbers, as the API server's are etcd revisions)."""
    found = []
    for item in listed:
        meta = item["metadata"]
        namespace, name = meta.get("namespace", ""), meta["name"]
        if meta.get("deletionTimestamp"):
            continue
        seen, now = delivered.get((kind, namespace, name)), str(meta.get("resourceVersion", ""))
        if seen is None or (now.isdigit() and seen.isdigit() and int(now) > int(seen)):
            found.append((namespace, name))
    return found


async def _heartbeat(health: probes.Health) -> None:
    """Proof for /healthz that this loop still runs (a blocking call would stop it)."""
    while True:
        health.beat()
        await asyncio.sleep(1.0)


async def _watch_shards(runtime: Operator) -> None:
    """The unsharded operator marks ModelSyncs whose shard no operator runs: nothing
    else would ever look at them."""
    while True:
        try:
            await asyncio.to_thread(mark_unserved, runtime)
        except Exception:  # a failed round is logged; the next one tries again
            log.exception("checking the ModelSyncs' shards")
        await asyncio.sleep(runtime.settings.lease_seconds)


def mark_unserved(runtime: Operator) -> int:
    """One round of `_watch_shards`: how many ModelSyncs it marked NoShard."""
    kube, settings = runtime.kube, runtime.settings
    if kube is None:
        return 0
    leases = kube.list_objects(
        "coordination.k8s.io/v1", "Lease", c.LABEL_SHARD, settings.lease_namespace
    )
    live = shards.live_shards(leases, datetime.datetime.now(datetime.UTC))
    found = list_watched(kube, settings, c.API_VERSION, c.MODELSYNC_KIND, c.LABEL_SHARD)
    by_key = {(m["metadata"].get("namespace", ""), m["metadata"]["name"]): m for m in found}
    marked = 0
    for lost in shards.unserved(found, live, settings.lease_namespace, settings.lease_name):
        ms = by_key[(lost.namespace, lost.name)]
        message = lost.message(settings.lease_namespace, settings.lease_name)
        previous = dict(ms.get("status") or {})
        merged = conditions.merge(
            previous.get("conditions"),
            [conditions.Observed(c.READY, False, c.REASON_NO_SHARD, message)],
            int(ms["metadata"].get("generation") or 0),
            datetime.datetime.now(datetime.UTC),
        )
        try:
            kube.patch_status(
                c.API_VERSION,
                c.MODELSYNC_KIND,
                lost.namespace,
                lost.name,
                {**previous, "conditions": merged},
                previous,
            )
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise
            continue
        marked += 1
        log.warning("ModelSync %s/%s: %s", lost.namespace, lost.name, message)
    return marked


def resync_all(runtime: Operator) -> int:
    """Queue every known ModelDeployment; returns how many."""
    assert runtime.queue is not None
    if c.CONTROLLER_SERVING not in runtime.settings.controllers:
        return 0
    keys = [
        (c.MODELDEPLOYMENT_KIND, ns, name)
        for ns, name in runtime.cache.names(c.MODELDEPLOYMENT_KIND)
    ]
    for key in keys:
        runtime.queue.add(key)
    return len(keys)


def md_trigger(body: dict[str, Any]) -> tuple[Any, ...]:
    """What of a ModelDeployment a reconcile answers to: its spec (generation), labels,
    annotations and deletion; not its status, which only we write."""
    meta = body.get("metadata") or {}
    return (
        meta.get("generation"),
        sorted((meta.get("labels") or {}).items()),
        sorted((meta.get("annotations") or {}).items()),
        meta.get("deletionTimestamp"),
    )


def restart_count(pod: dict[str, Any]) -> int:
    """How far a pod is in failing: its containers' restarts, and its init containers'
    (the storage initializer) counting a run that has just ended non-zero, so the very
    first failed download is judged (rollout.initializer_failure) before any restart."""
    status = pod.get("status") or {}
    count = sum(int(s.get("restartCount") or 0) for s in status.get("containerStatuses") or [])
    for init in status.get("initContainerStatuses") or []:
        ended = (init.get("state") or {}).get("terminated") or {}
        count += int(init.get("restartCount") or 0) + (1 if ended.get("exitCode") else 0)
    return count


def pod_trigger(pod: dict[str, Any]) -> tuple[Any, ...]:
    """What makes a pod worth a look: its restarts (restart_count) and, for a pod with
    the inference gate (spec.validation), what the gate waits on: an address, its
    containers ready (the model loaded), the gate's own condition."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    gates = {gate.get("conditionType") for gate in spec.get("readinessGates") or []}
    if c.CONDITION_VALIDATED not in gates:
        return (restart_count(pod),)
    conditions = {cond.get("type"): cond for cond in status.get("conditions") or []}
    gate = conditions.get(c.CONDITION_VALIDATED) or {}
    return (
        restart_count(pod),
        status.get("podIP"),
        (conditions.get("ContainersReady") or {}).get("status"),
        gate.get("status"),
        gate.get("reason"),
    )


class NoDiffBase(kopf.DiffBaseStorage):
    """The operator has event handlers only: nothing compares an object with its last
    handled state, and building that state deep-copied every body of every event."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


class NoProgress(kopf.ProgressStorage):
    """No handler of ours keeps progress on objects (kopf writes nothing to them)."""

    def fetch(self, *, key: Any, body: kopf.Body) -> None:
        return None

    def store(self, *, key: Any, record: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        return None

    def purge(self, *, key: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        return None

    def touch(self, *, body: kopf.Body, patch: kopf.Patch, value: str | None) -> None:
        return None

    def clear(self, *, essence: kopf.BodyEssence) -> kopf.BodyEssence:
        return essence


def rolled_back(body: dict[str, Any]) -> str:
    """The failed revision a model is rolled back from ("" when it is not): a second
    failure while rolled back is news to its ModelSync too (its write-back, its pull
    request), not only the first."""
    status = body.get("status") or {}
    found = conditions.find(status.get("conditions"), c.ROLLED_BACK)
    if not (found and found.get("status") == "True"):
        return ""
    return str(status.get("failedGitRevision") or found.get("message") or "rolled back")


def sync_trigger(body: dict[str, Any]) -> tuple[Any, Any]:
    meta = body.get("metadata") or {}
    requested = (meta.get("annotations") or {}).get(c.ANNOTATION_RECONCILE_REQUESTED)
    return meta.get("generation"), requested


def prefill(kube: kubemod.Kube, runtime: Operator) -> None:
    """List the serving objects before the first reconcile, as an informer syncs its
    cache: the ModelDeployments' watch may deliver before the Services' does."""
    selector = (
        f"{c.LABEL_MANAGED_BY}={c.MANAGED_BY},{c.LABEL_DEPLOYMENT},"
        f"{shards.label_selector(runtime.settings.shard)}"
    )
    for kind, api_version in _WATCHED_KINDS.items():
        for item in list_watched(kube, runtime.settings, api_version, kind, selector):
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
            runtime.cache.put(kind, item)


def list_watched(
    kube: kubemod.Kube,
    settings: OperatorSettings,
    api_version: str,
    kind: str,
    selector: str,
    metadata_only: bool = False,
) -> list[dict[str, Any]]:
    """The objects of `kind` matching `selector` in the namespaces the operator watches:
    one list per namespace when they are named outright, else one cluster-wide list
    filtered by the patterns."""
    patterns = settings.namespaces
    literal = named_outright(patterns)
    found = []
    for namespace in patterns if patterns and literal else (None,):
        for item in kube.list_objects(api_version, kind, selector, namespace, metadata_only):
            if literal or namespace_matches(item["metadata"].get("namespace", ""), patterns):
                found.append(item)
    return found


def _delivered(
    runtime: Operator, kind: str, event: str | None, body: Mapping[str, Any], ours: bool
) -> None:
    meta = body.get("metadata") or {}
    key = (kind, meta.get("namespace") or "", meta.get("name") or "")
    if event == "DELETED" or not ours:
        runtime.delivered.pop(key, None)
    else:
        runtime.delivered[key] = str(meta.get("resourceVersion", ""))


def _owning_sync(
    runtime: Operator, namespace: str, name: str, body: dict[str, Any]
) -> tuple[str, str] | None:
    """The ModelSync that applied this ModelDeployment: the one its labels name, if its
    inventory holds the model. A label anyone can set must not make another tenant's
    ModelSync sync (and push) on demand."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    sync = (labels.get(c.LABEL_SYNC_NAMESPACE) or "", labels.get(c.LABEL_SYNC_NAME) or "")
    version = runtime.cache.version(c.MODELSYNC_KIND, *sync) if all(sync) else None
    if version is None:
        return None
    known = runtime.sync_models.get(sync)
    if known is None or known[0] != version:
        ms = runtime.cache.get(c.MODELSYNC_KIND, *sync) or {}
        inventory = (ms.get("status") or {}).get("inventory") or []
        known = (version, frozenset(owned_models(inventory)))
        runtime.sync_models[sync] = known
    return sync if (namespace, name) in known[1] else None


def _notify_model(
    runtime: Operator, body: dict[str, Any], owner: Callable[[], tuple[str, str] | None] | None
) -> None:
    """Hand a ModelDeployment's news to the notifier (`owner` None: it is gone)."""
    if runtime.notifier is None:
        return
    if owner is None:
        meta = body.get("metadata") or {}
        runtime.notifier.forget(c.MODELDEPLOYMENT_KIND, meta.get("namespace", ""), meta["name"])
        return

    def owning_sync() -> dict[str, Any] | None:
        sync = owner()
        return runtime.cache.get(c.MODELSYNC_KIND, *sync) if sync else None

    runtime.notifier.observe_model(body, owning_sync)


@dataclass(frozen=True)
class Event:
    """One watch event as the handlers read it: kopf's keyword arguments, parsed once."""

    kind: str
    type: str | None  # ADDED, MODIFIED, DELETED; None for an object kopf listed
    body: dict[str, Any]
    namespace: str
    name: str

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name

    @property
    def deleted(self) -> bool:
        return self.type == "DELETED"


def on_modeldeployment(runtime: Operator, event: Event) -> None:
    """A ModelDeployment: into the cache and the queue; its ModelSync hears of rollbacks
    and Ready changes, its receivers of news (serving/ knows nothing of this)."""
    ours = runtime.ours(event.body)
    _delivered(runtime, event.kind, event.type, event.body, ours)
    if event.deleted or not ours:
        _model_gone(runtime, event)
    else:
        _model_seen(runtime, event)


def _model_gone(runtime: Operator, event: Event) -> None:
    key = event.key
    runtime.cache.delete(c.MODELDEPLOYMENT_KIND, *key)
    runtime.rolled_back_seen.pop(key, None)
    if runtime.ready_seen.pop(key, None) and (sync := _owning_sync(runtime, *key, event.body)):
        runtime.refresh_health(sync)
    runtime.md_triggers.pop(key, None)
    _notify_model(runtime, event.body, None)
    if runtime.reconciler is not None:
        runtime.reconciler.analyses.forget((c.MODELDEPLOYMENT_KIND, *key))
    metrics.model_gone(*key)


def _model_seen(runtime: Operator, event: Event) -> None:
    key, body = event.key, event.body

    def owner() -> tuple[str, str] | None:  # only on a change: it reads the inventory
        return _owning_sync(runtime, *key, body)

    runtime.cache.put(c.MODELDEPLOYMENT_KIND, body)
    trigger = md_trigger(body)
    if runtime.md_triggers.get(key) != trigger:
        runtime.md_triggers[key] = trigger
        runtime.enqueue((c.MODELDEPLOYMENT_KIND, *key))
    # A model rolled back (or forward again): its ModelSync's status must say so.
    # (Compared with what the watch said before: the cache already holds our writes.)
    now = rolled_back(body)
    if runtime.rolled_back_seen.setdefault(key, now) != now:
        runtime.rolled_back_seen[key] = now
        if sync := owner():
            runtime.enqueue((c.MODELSYNC_KIND, *sync))
    # Rolled back, failed, recovered: told to the receivers of the ModelSync that
    # applied it (found only when there is news).
    _notify_model(runtime, body, owner)
    # Ready for its current spec, or no longer: its ModelSync's Healthy (and Ready)
    # follow, from the cache (a refresh, not a sync: git has not changed).
    ready = modelhealth.model_ready(body)[0]
    if runtime.ready_seen.get(key) != ready:
        runtime.ready_seen[key] = ready
        if sync := owner():
            runtime.refresh_health(sync)


def on_modelsync(runtime: Operator, event: Event) -> None:
    """A ModelSync: into the cache; queued for a new spec or a requested sync only (our
    own status writes come back as events too; the interval and webhooks do the rest)."""
    ours = runtime.ours(event.body)
    _delivered(runtime, event.kind, event.type, event.body, ours)
    _hook_target(runtime, event)
    if event.deleted or not ours:
        _sync_gone(runtime, *event.key)
        return
    previous = runtime.cache.get(c.MODELSYNC_KIND, *event.key)
    runtime.cache.put(c.MODELSYNC_KIND, event.body)
    if previous is None or sync_trigger(previous) != sync_trigger(event.body):
        runtime.enqueue((c.MODELSYNC_KIND, *event.key))


def _hook_target(runtime: Operator, event: Event) -> None:
    """Every shard's ModelSyncs (another shard's are handed over), in the namespaces the
    operator watches only (it answers for no other)."""
    patterns = runtime.settings.namespaces
    if event.deleted or (patterns and not namespace_matches(event.namespace, patterns)):
        runtime.hook_targets.pop(event.key, None)
    else:
        runtime.hook_targets[event.key] = webhooks.target(event.body)


def prefill_hook_targets(kube: kubemod.Kube, runtime: Operator) -> None:
    """The names of every ModelSync, listed before webhooks are answered (metadata only:
    one request, however large the inventories): a replica that has just taken the lead
    knows which names exist before its watch delivers them. The watch fills in the rest."""
    if c.CONTROLLER_GITOPS not in runtime.settings.controllers:
        return
    try:
        found = list_watched(
            kube, runtime.settings, c.API_VERSION, c.MODELSYNC_KIND, "", metadata_only=True
        )
    except kubernetes.client.ApiException as error:  # the watch fills the index anyway
        log.warning("listing the ModelSyncs' names for webhooks: %s", kubemod.api_message(error))
        return
    for item in found:
        meta = item.get("metadata") or {}
        runtime.hook_targets.setdefault((meta.get("namespace", ""), meta["name"]), None)


def _sync_gone(runtime: Operator, namespace: str, name: str) -> None:
    runtime.cache.delete(c.MODELSYNC_KIND, namespace, name)
    runtime.sync_models.pop((namespace, name), None)
    if runtime.syncer is not None:  # its senders' and metrics' too
        runtime.syncer.forget(namespace, name)


def on_owned(runtime: Operator, event: Event) -> None:
    """A Deployment, Service, autoscaler or pod of a model: into the cache, and its model
    queued (for a pod, only when what makes it worth a look changed)."""
    if event.deleted or not runtime.ours(event.body):
        runtime.cache.delete(event.kind, *event.key)
        if not event.deleted:
            return  # another shard's model
    else:
        runtime.cache.put(event.kind, event.body)
    if event.kind == "Pod" and not _pod_changed(runtime, event):
        return
    labels = (event.body.get("metadata") or {}).get("labels") or {}
    runtime.enqueue((c.MODELDEPLOYMENT_KIND, event.namespace, labels[c.LABEL_DEPLOYMENT]))


def _pod_changed(runtime: Operator, event: Event) -> bool:
    """Pods matter for their restarts and failed downloads (a failing revision) and their
    inference gate only; their Deployment's own events tell everything else."""
    key, restarts = event.key, pod_trigger(event.body)
    if event.deleted:
        runtime.pod_restarts.pop(key, None)
        if runtime.reconciler is not None and runtime.reconciler.gate is not None:
            runtime.reconciler.gate.forget(key)
        return False
    if runtime.pod_restarts.get(key, (0,)) == restarts:
        return False
    runtime.pod_restarts[key] = restarts
    return True


@dataclass(frozen=True)
class Watch:
    """One watched resource: what kopf watches, for which controller, and its handler."""

    kind: str
    resource: tuple[str, str, str]  # group, version, plural
    handle: Callable[[Operator, Event], None]
    controller: str | None = None  # watched only when the operator runs it; None: always
    owned: bool = False  # our serving objects only (kopf filters them by label)

    @property
    def id(self) -> str:
        return f"owned-{self.resource[2]}" if self.owned else self.resource[2]

    @property
    def labels(self) -> dict[str, Any] | None:
        return (
            {c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_DEPLOYMENT: kopf.PRESENT}
            if self.owned
            else None
        )


# The ModelDeployments are watched by either controller: gitops/ for its ModelSyncs' health.
WATCHES = (
    Watch(
        c.MODELDEPLOYMENT_KIND, (c.GROUP, c.VERSION, c.MODELDEPLOYMENT_PLURAL), on_modeldeployment
    ),
    Watch(
        c.MODELSYNC_KIND,
        (c.GROUP, c.VERSION, c.MODELSYNC_PLURAL),
        on_modelsync,
        c.CONTROLLER_GITOPS,
    ),
    *(
        Watch(kind, resource, on_owned, c.CONTROLLER_SERVING, owned=True)
        for kind, resource in _OWNED_RESOURCES.items()
    ),
)


def _bound(runtime: Operator, watch: Watch) -> Handler:
    """kopf's handler of `watch` for this Operator: a coroutine, so that it runs on the
    event loop, which owns the queue and the maps (kopf runs a plain def in threads)."""

    async def handler(
        *, type: str | None, body: Mapping[str, Any], namespace: str | None, name: str, **_: Any
    ) -> None:
        watch.handle(runtime, Event(watch.kind, type, dict(body), namespace or "", name))

    return handler


def build_registry(runtime: Operator) -> kopf.OperatorRegistry:
    """kopf handlers bound to one Operator (tests run several operators in one process):
    login, start-up and clean-up, and a watch per row of WATCHES whose controller this
    operator runs (`--controllers`: a remote cluster's operator serves and rolls back its
    ModelDeployments and syncs no ModelSync; one of gitops alone serves none)."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return _connection(runtime.settings)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        _configure(settings, runtime.settings)
        await _start(runtime)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await _clean_up(runtime)

    # The periodic list goes through the same handlers: a serving-only operator's lists
    # its ModelDeployments alone.
    runtime.handlers = {}
    for watch in WATCHES:
        if watch.controller is None or watch.controller in runtime.settings.controllers:
            handler = _bound(runtime, watch)
            group, version, plural = watch.resource
            kopf.on.event(
                group, version, plural, registry=registry, id=watch.id, labels=watch.labels
            )(handler)
            if watch.kind in RELISTED_KINDS:
                runtime.handlers[watch.kind] = handler
    return registry


def _configure(kopf_settings: kopf.OperatorSettings, settings: OperatorSettings) -> None:
    """kopf writes nothing to our objects (no diff base, no progress), posts only warnings
    as Events, and ends watches before they can go silent."""
    kopf_settings.posting.level = logging.WARNING
    kopf_settings.persistence.diffbase_storage = NoDiffBase()
    kopf_settings.persistence.progress_storage = NoProgress()
    kopf_settings.watching.server_timeout = settings.watch_server_timeout
    kopf_settings.watching.client_timeout = settings.watch_server_timeout + 30
    kopf_settings.watching.connect_timeout = 30


async def _start(runtime: Operator) -> None:
    """Start-up, as this replica leads: the client, the cache filled before the first
    reconcile, the reconcilers and their clients (built once), then the workers."""
    settings = runtime.settings
    kube = kubemod.Kube(
        kubemod.api_client(settings.kubeconfig, qps=settings.kube_qps, burst=settings.kube_burst)
    )
    runtime.kube = kube
    await asyncio.to_thread(prefill, kube, runtime)
    await asyncio.to_thread(prefill_hook_targets, kube, runtime)
    runtime.loop = asyncio.get_running_loop()
    runtime.queue = WorkQueue(retry_seconds=settings.retry_seconds)
    runtime.reconciler = _serving_reconciler(runtime, kube, runtime.loop)
    runtime.syncer = _sync_reconciler(runtime, kube)
    runtime.executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=settings.workers, thread_name_prefix="reconcile"
    )
    runtime.tasks = [asyncio.create_task(_worker(runtime)) for _ in range(settings.workers)]
    runtime.tasks.append(asyncio.create_task(_resync(runtime)))
    runtime.tasks.append(asyncio.create_task(_relist(runtime)))
    runtime.tasks.append(asyncio.create_task(_heartbeat(runtime.health)))
    if not settings.shard and c.CONTROLLER_GITOPS in settings.controllers:
        runtime.tasks.append(asyncio.create_task(_watch_shards(runtime)))
    metrics.track_queue(lambda: len(runtime.queue or ()))
    runtime.health.role = probes.ROLE_LEADER
    metrics.LEADER.set(1)
    runtime.health.caches_synced = True


def _serving_reconciler(
    runtime: Operator, kube: kubemod.Kube, loop: asyncio.AbstractEventLoop
) -> ServingReconciler:
    settings = runtime.settings
    return ServingReconciler(
        kube,
        runtime.cache,
        Analyses(settings.analysis_endpoints, loop, runtime.enqueue_threadsafe),
        locked_down=settings.model_pod_security == "restricted",
        quiet_seconds=settings.quiet_rollout_seconds,
        images=Images(
            servers=settings.runtime_images,
            storage_initializer=settings.storage_initializer_image,
            pull_policy=settings.image_pull_policy,
        ),
        gate=Gate(loop, runtime.enqueue_threadsafe, settings.validation_pod_seconds),
    )


def _sync_reconciler(runtime: Operator, kube: kubemod.Kube) -> SyncReconciler:
    """The ModelSync reconciler, and its senders of commit statuses and notifications
    (kept on the Operator: its watch tells them of ModelSyncs gone)."""
    settings = runtime.settings
    fetcher = GitFetcher(
        fetch_cache_dir(settings.git_cache_dir),
        max_revision_bytes=settings.max_revision_bytes,
        max_cache_bytes=settings.git_cache_max_bytes,
        allow_file_urls=settings.allow_file_urls,
    )
    patterns = settings.namespaces
    runtime.statuses = StatusWriter(
        kube.get,
        lambda ms, reason, note, warning: kube.event(
            ms, c.MODELSYNC_KIND, reason, note, action="GitHost", warning=warning
        ),
        settings.commit_status_api_urls,
    )
    runtime.notifier = Notifier(
        kube.get,
        lambda ms, reason, note, warning: kube.event(
            ms, c.MODELSYNC_KIND, reason, note, action="Notify", warning=warning
        ),
        settings.notification_endpoints,
    )
    return SyncReconciler(
        kube,
        fetcher,
        runtime.cache,
        watches=lambda namespace: not patterns or namespace_matches(namespace, patterns),
        settings=settings.sync_settings(),
        statuses=runtime.statuses,
        notifier=runtime.notifier,
    )


async def _clean_up(runtime: Operator) -> None:
    runtime.health.caches_synced = False
    for task in runtime.tasks:
        task.cancel()
    await asyncio.gather(*runtime.tasks, return_exceptions=True)
    if runtime.executor is not None:
        runtime.executor.shutdown(wait=True, cancel_futures=True)
    if runtime.statuses is not None:
        runtime.statuses.shutdown()
    if runtime.notifier is not None:
        runtime.notifier.shutdown()


def _stopped_by_sigterm() -> threading.Event:
    """An event SIGTERM sets, so that a replica waiting to lead stops at once. A
    container's PID 1 ignores a signal it has no handler for: without this, a standby
    pod being deleted waited out its grace period and was killed. (kopf installs its own
    handler once this replica leads.)"""
    stopping = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    return stopping


def _sigterm_to_kopf() -> None:
    """Leading: kopf stops the operator on SIGTERM (it installs its handler as it starts)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _stop_when(lost: threading.Event) -> None:
    lost.wait()
    os.kill(os.getpid(), signal.SIGTERM)


def run(
    settings: OperatorSettings,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
    runtime: Operator | None = None,
) -> bool:
    """Run the operator until `stop` is set (or forever). Blocks. With leader election,
    it first waits to lead, and returns False if it lost the lead (the caller exits)."""
    runtime = runtime or Operator(settings)
    # Which of the renderers' network bounds hold on this host (a network namespace of
    # their own only where this process may make one: not in the chart's pod).
    log.info("rendering: %s", rendering.isolation(settings.render_settings()))
    server = None
    if settings.http_port:
        server = server_mod.HttpServer(runtime, kubemod.api_client(settings.kubeconfig)).start()
    try:
        return _run(settings, runtime, stop, ready)
    finally:
        metrics.LEADER.set(0)
        if server is not None:
            server.stop()


def _run(
    settings: OperatorSettings,
    runtime: Operator,
    stop: threading.Event | None,
    ready: threading.Event | None,
) -> bool:
    lost, renewing_stop = threading.Event(), threading.Event()
    lock: leader.LeaseLock | None = None
    if settings.leader_election:
        waiting = stop or _stopped_by_sigterm()
        lock = leader.LeaseLock(
            kubemod.api_client(settings.kubeconfig),
            settings.lease_namespace,
            shards.lease_name(settings.lease_name, settings.shard),
            leader.identity(),
            settings.lease_seconds,
            labels={c.LABEL_SHARD: settings.shard} if settings.shard else None,
        )
        runtime.health.role = probes.ROLE_STANDBY
        pod = os.environ.get("POD_NAME")  # set by the chart; absent outside a pod
        if pod:
            leader.mark_pod(lock.client, settings.lease_namespace, pod, leading=False)
        if not leader.wait_to_lead(lock, waiting):
            return True
        if stop is None:
            _sigterm_to_kopf()
            if waiting.is_set():  # a SIGTERM just as this replica took the lead
                return True
        if pod:
            leader.mark_pod(lock.client, settings.lease_namespace, pod, leading=True)
        renewing = threading.Thread(
            target=leader.keep_leading,
            args=(lock, renewing_stop, lost),
            daemon=True,
            name="lease",
        )
        renewing.start()
    registry = build_registry(runtime)

    if settings.leader_election and stop is None:
        # Losing the lead stops this operator at once, as a SIGTERM would: kopf handles
        # that signal itself (a stop flag of ours would keep it waiting after one).
        threading.Thread(target=_stop_when, args=(lost,), daemon=True).start()
    # Namespaces named outright get a watch each (a Role in each may be all the operator
    # has). Patterns are watched cluster-wide and filtered in the handlers: kopf would
    # start a watch per namespace and kind as namespaces appear, and a namespace whose
    # watches never delivered was seen to leave its ModelSyncs and models unhandled.
    outright = named_outright(settings.namespaces)
    try:
        asyncio.run(
            kopf.operator(
                registry=registry,
                standalone=True,
                clusterwide=not outright,
                namespaces=list(settings.namespaces) if outright else [],
                stop_flag=stop,
                ready_flag=ready,
            )
        )
    finally:
        if lock is not None:
            renewing_stop.set()
            renewing.join()
            if not lost.is_set():
                _release(lock)
    return not lost.is_set()


def _release(lock: leader.LeaseLock) -> None:
    """Stopped cleanly (a rolling update, `helm uninstall`): hand the lead over now."""
    try:
        lock.release()
    except Exception as error:  # never a reason to fail a clean stop
        log.warning("could not release the Lease %s/%s: %s", lock.namespace, lock.name, error)
