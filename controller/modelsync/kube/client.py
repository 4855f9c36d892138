"""The thin shell around the Kubernetes API: server-side apply, status, events.

Everything that changes the cluster goes through `Kube`, which counts the
writes (`modelsync_api_writes_total`), so a benchmark can tell that a resync
with nothing to do wrote nothing.
"""

from __future__ import annotations

import datetime
import logging
import os
import secrets
import socket
import threading
from typing import Any

import kubernetes
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ConflictError, NotFoundError, ResourceNotFoundError

from modelsync import __version__
from modelsync.api import constants as c
from modelsync.kube import throttle
from modelsync.kube.drift import applied_part, differences
from modelsync.telemetry import metrics

log = logging.getLogger(__name__)

Manifest = dict[str, Any]

REPORTING_CONTROLLER = f"{c.GROUP}/operator"
# Names the operator in the API server's audit log and request metrics, apart from
# kubectl, other controllers and tests that use the same credentials.
USER_AGENT = f"modelsync/{__version__}"
CONNECTIONS = 32


def api_client(
    kubeconfig: str | None = None, qps: float | None = None, burst: int = 1
) -> kubernetes.client.ApiClient:
    """In-cluster config when running in a pod, else the kubeconfig. With `qps`, its
    requests are rate limited (a token bucket of `burst`) and 429s retried."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config = kubernetes.client.Configuration()
        kubernetes.config.load_incluster_config(client_configuration=config)
    else:
        config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=config)
    # Workers and a sync's apply pool share the connections: room for all of them, or
    # each burst would open (TLS handshake and all) and throw away connections.
    config.connection_pool_maxsize = CONNECTIONS
    client = kubernetes.client.ApiClient(config)
    client.user_agent = USER_AGENT
    bucket = throttle.TokenBucket(qps, burst) if qps else None
    client.rest_client = throttle.ThrottledRest(client.rest_client, bucket)
    return client


METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


def _raw(_: Any, data: Manifest) -> Manifest:
    """The dynamic client's answer as the plain dict it parsed: its own wrapping
    (ResourceInstance, then to_dict) cost more than the requests when listing 1,000."""
    return data


def status_patch(previous: Manifest, status: Manifest) -> list[Manifest]:
    """JSON patch operations turning the status `previous` into `status` field by field
    (top-level fields of status replaced whole; None removes one)."""
    operations: list[Manifest] = [] if previous else [{"op": "add", "path": "/status", "value": {}}]
    for key, value in status.items():
        path = "/status/" + key.replace("~", "~0").replace("/", "~1")
        if value is None:
            if key in previous:
                operations.append({"op": "remove", "path": path})
        elif previous.get(key) != value:
            operations.append({"op": "add", "path": path, "value": value})
    return operations


class Kube:
    """Server-side apply and friends, with one field manager and counted writes."""

    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self.client = client
        self.impersonating: str | None = None
        self.dynamic = DynamicClient(client)
        self._resources: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self.instance = socket.gethostname()

    def impersonate(self, namespace: str, service_account: str) -> Kube:
        """A Kube that acts as a ServiceAccount: the API server checks its RBAC, not ours."""
        client = kubernetes.client.ApiClient(self.client.configuration)
        client.user_agent = USER_AGENT
        # Requests made as the ServiceAccount share our rate limit.
        bucket = getattr(self.client.rest_client, "bucket", None)
        client.rest_client = throttle.ThrottledRest(client.rest_client, bucket)
        user = f"system:serviceaccount:{namespace}:{service_account}"
        client.set_default_header("Impersonate-User", user)
        other = Kube(client)
        other.impersonating = user
        return other

    def scope(self, api_version: str, kind: str) -> bool | None:
        """True if namespaced, False if cluster-scoped, None if the cluster has no such kind."""
        try:
            return bool(self.resource(api_version, kind).namespaced)
        except (ResourceNotFoundError, ValueError):
            return None

    def forget_discovery(self) -> None:
        """After CRDs were applied: look their kinds up afresh."""
        with self._lock:
            self._resources.clear()
        self.dynamic.resources.invalidate_cache()

    def resource(self, api_version: str, kind: str) -> Any:
        key = (api_version, kind)
        with self._lock:
            if key not in self._resources:
                self._resources[key] = self.dynamic.resources.get(
                    api_version=api_version, kind=kind
                )
            return self._resources[key]

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Manifest | None:
        try:
            found: Manifest = self.resource(api_version, kind).get(
                name=name, namespace=namespace or None, serializer=_raw
            )
        except NotFoundError:
            return None
        return found

    def list_objects(
        self,
        api_version: str,
        kind: str,
        label_selector: str,
        namespace: str | None = None,
        metadata_only: bool = False,
    ) -> list[Manifest]:
        """The objects matching `label_selector`; with `metadata_only`, their metadata
        alone (PartialObjectMetadata: what a list of many large objects needs to name them)."""
        extra = {"header_params": {"Accept": METADATA_LIST}} if metadata_only else {}
        found = self.resource(api_version, kind).get(
            namespace=namespace, label_selector=label_selector, serializer=_raw, **extra
        )
        items: list[Manifest] = found.get("items") or []
        return items

    def apply(self, manifest: Manifest, *, dry_run: bool = False) -> Manifest:
        """Server-side apply as our field manager, taking back fields others changed."""
        resource = self.resource(manifest["apiVersion"], manifest["kind"])
        extra = {"dry_run": "All"} if dry_run else {}
        result = resource.server_side_apply(
            body=manifest,
            name=manifest["metadata"]["name"],
            namespace=manifest["metadata"].get("namespace"),
            field_manager=c.FIELD_MANAGER,
            force_conflicts=True,
            serializer=_raw,
            **extra,
        )
        if not dry_run:
            metrics.API_WRITES.labels(verb="apply", kind=manifest["kind"]).inc()
        applied: Manifest = result
        return applied

    def changes(self, desired: Manifest, live: Manifest | None) -> list[str]:
        """What applying `desired` would change in `live` (JSON paths; ["(new)"] when it
        does not exist). Only when the texts differ does it ask the server, with a
        dry run, whether the difference is real or only of form (0.5 vs 500m)."""
        if live is None:
            return ["(new)"]
        drifted = differences(applied_part(desired), live)
        if not drifted:
            return []
        preview = self.apply(desired, dry_run=True)
        return drifted if differences(applied_part(preview), live) else []

    def delete(
        self, api_version: str, kind: str, namespace: str, name: str, uid: str | None = None
    ) -> None:
        """Delete an object; with `uid`, only that very object (not one made anew since)."""
        body = {"preconditions": {"uid": uid}} if uid else None
        try:
            self.resource(api_version, kind).delete(
                name=name, namespace=namespace or None, body=body
            )
        except NotFoundError:
            return
        except ConflictError:
            if uid:
                return  # deleted and made anew by someone else: not the object we knew
            raise
        metrics.API_WRITES.labels(verb="delete", kind=kind).inc()

    def patch_status(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        status: Manifest,
        previous: Manifest,
    ) -> Manifest:
        """Turn the `previous` status into `status`: a JSON patch replacing each field
        that changed, whole (a merge patch would merge a nested stableSpec with the old
        one), and only those (a 1,000-entry inventory is not sent with every revision);
        None removes a field."""
        resource = self.resource(api_version, kind).subresources["status"]
        result = resource.patch(
            body=status_patch(previous, status),
            name=name,
            namespace=namespace,
            content_type="application/json-patch+json",
            serializer=_raw,
        )
        metrics.API_WRITES.labels(verb="patch-status", kind=kind).inc()
        patched: Manifest = result
        return patched

    def patch_pod_condition(
        self, namespace: str, name: str, uid: str, condition: Manifest
    ) -> Manifest:
        """Set one condition of a pod's status (a readiness gate's), of that very pod
        (`uid`: not one of the same name made since); the other conditions stay."""
        resource = self.resource("v1", "Pod").subresources["status"]
        result = resource.patch(
            body={"metadata": {"uid": uid}, "status": {"conditions": [condition]}},
            name=name,
            namespace=namespace,
            content_type="application/strategic-merge-patch+json",
            serializer=_raw,
        )
        metrics.API_WRITES.labels(verb="patch-status", kind="Pod").inc()
        patched: Manifest = result
        return patched

    def event(
        self,
        regarding: Manifest,
        kind: str,
        reason: str,
        note: str,
        action: str,
        warning: bool = False,
    ) -> None:
        """A Kubernetes Event about `regarding`; failure to post one is logged, not raised."""
        meta = regarding["metadata"]
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            # Named as client-go names events; the API server refuses a generateName
            # ending in a dot.
            "metadata": {
                "name": f"{meta['name']}.{secrets.token_hex(8)}",
                "namespace": meta["namespace"],
            },
            "eventTime": now,
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self.instance,
            "action": action,
            "reason": reason,
            "note": note[:1024],
            "type": "Warning" if warning else "Normal",
            "regarding": {
                "apiVersion": regarding.get("apiVersion"),
                "kind": kind,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
        }
        try:
            self.resource("events.k8s.io/v1", "Event").create(
                body=body, namespace=meta["namespace"], serializer=_raw
            )
            metrics.API_WRITES.labels(verb="create", kind="Event").inc()
        except kubernetes.client.ApiException as error:
            log.warning(
                "could not post event %s on %s/%s: %s",
                reason,
                meta["namespace"],
                meta["name"],
                error.reason,
            )


# 500s that are about the object the request carried, not about the server: a value of
# the wrong type in a custom resource fails server-side apply's typed conversion.
CONTENT_500_PATTERNS = (
    "failed to create typed patch object",
    "failed to create typed live object",
    "unable to convert",
)


def transient(error: kubernetes.client.ApiException) -> bool:
    """An answer about the API server (overloaded, restarting, unreachable), not about
    the object: the sync fails and is tried again, the revision is not judged by it.
    A 500 is the environment's unless its message is one of CONTENT_500_PATTERNS."""
    if error.status == 500:
        message = api_message(error)
        return not any(pattern in message for pattern in CONTENT_500_PATTERNS)
    return error.status in {0, 429, 502, 503, 504}


_forbidden_namespaces: set[str] = set()
_forbidden_lock = threading.Lock()


def forbidden_here(error: kubernetes.client.ApiException, namespace: str) -> bool:
    """A 403 to the operator's own request in `namespace`: in cluster-wide mode it only
    reads where the platform has not enabled tenants, so it can neither serve nor write
    status there. Said once per namespace in the log (with the fix), then quietly."""
    if error.status != 403 or "NamespaceTerminating" in str(error.body or ""):
        return False
    with _forbidden_lock:
        first = namespace not in _forbidden_namespaces
        _forbidden_namespaces.add(namespace)
    (log.warning if first else log.debug)(
        "namespace %r not enabled for modelsync (%s): the operator only reads there: %s",
        namespace,
        c.NAMESPACE_NOT_ENABLED_FIX,
        api_message(error),
    )
    return True


def api_message(error: kubernetes.client.ApiException) -> str:
    """The API server's own words, without the HTTP framing."""
    import json

    try:
        body: dict[str, Any] = json.loads(error.body or "{}")
    except ValueError:
        body = {}
    return str(body.get("message") or error.reason or error)
