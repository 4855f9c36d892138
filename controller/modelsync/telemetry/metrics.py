"""Prometheus metrics of the operator. One registry, served on /metrics.

Every family is documented in one line in the README (a unit test keeps that list
and this module in step). Label values are names of our own objects, reasons and
verbs — never URLs, messages or anything read from a Secret.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

# ------------------------------------------------------------------ Kubernetes API

API_REQUESTS = Counter(
    "modelsync_api_requests_total",
    "Requests to the Kubernetes API (dry runs included), by HTTP verb.",
    ["verb"],
    registry=REGISTRY,
)
API_ERRORS = Counter(
    "modelsync_api_errors_total",
    "Kubernetes API requests that failed, by verb and HTTP status (or 'connection').",
    ["verb", "code"],
    registry=REGISTRY,
)
API_THROTTLED_SECONDS = Counter(
    "modelsync_api_throttled_seconds_total",
    "Time requests waited for the client-side rate limit (--kube-qps, --kube-burst) "
    "or for a 429's Retry-After.",
    ["cause"],
    registry=REGISTRY,
)
API_WRITES = Counter(
    "modelsync_api_writes_total",
    "Requests that changed something in the Kubernetes API (dry runs not counted).",
    ["verb", "kind"],
    registry=REGISTRY,
)

# ------------------------------------------------------------------ serving

COMMIT_STATUSES = Counter(
    "modelsync_commit_statuses_total",
    "Commit statuses for git hosts, by provider and result: sent, failed (refused, or the "
    "host did not take it), dropped (the queue was full).",
    ["provider", "result"],
    registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "modelsync_notifications_total",
    "Notifications to receivers (spec.notify.receivers), by receiver type and result: sent, "
    "retried (a 5xx or no answer; sent again with the same id), failed, refused (its Secret "
    "or its address not allowed), dropped (the queue was full).",
    ["type", "result"],
    registry=REGISTRY,
)
RECONCILES = Counter(
    "modelsync_reconciles_total",
    "ModelDeployment reconciliations, by result.",
    ["result"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "modelsync_reconcile_duration_seconds",
    "Time one ModelDeployment reconciliation took.",
    registry=REGISTRY,
)
ROLLOUTS = Counter(
    "modelsync_rollouts_total",
    "Model revisions that finished rolling out, by model and result (succeeded, failed).",
    ["namespace", "model", "result"],
    registry=REGISTRY,
)
ROLLBACKS = Counter(
    "modelsync_rollbacks_total",
    "Automatic rollbacks of a failed model revision to the last healthy one, by model and reason.",
    ["namespace", "model", "reason"],
    registry=REGISTRY,
)
DRIFT_REVERTED = Counter(
    "modelsync_drift_reverted_total",
    "Out-of-band changes to serving objects that the operator reverted, by model and kind.",
    ["namespace", "model", "kind"],
    registry=REGISTRY,
)
MODEL_READY = Gauge(
    "modelsync_model_ready",
    "1 when the model serves its wanted (or rolled-back-to) version on all replicas.",
    ["namespace", "model"],
    registry=REGISTRY,
)
MODEL_INFO = Gauge(
    "modelsync_model_info",
    "Always 1; the labels say which version of the model serves, on which runtime.",
    # No git revision: /metrics is unauthenticated, and a commit sha is what another
    # tenant would need to ask for a repository's content.
    ["namespace", "model", "version", "runtime"],
    registry=REGISTRY,
)

# ------------------------------------------------------------------ git sync

SYNCS = Counter(
    "modelsync_syncs_total",
    "ModelSync syncs, by ModelSync and result (the Ready condition's reason).",
    ["namespace", "name", "result"],
    registry=REGISTRY,
)
WATCH_MISSED = Counter(
    "modelsync_watch_missed_total",
    "Objects the periodic list found that the watch had not delivered at their current "
    "version (undelivered), or ModelSyncs never reconciled nor queued (unsynced), by kind; "
    "should stay at zero.",
    ["kind", "cause"],
    registry=REGISTRY,
)
SYNC_SECONDS = Histogram(
    "modelsync_sync_duration_seconds",
    "Time one sync took (fetch, load, validate, apply, prune, record), by ModelSync.",
    ["namespace", "name"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
GIT_REQUESTS = Counter(
    "modelsync_git_requests_total",
    "Requests to git servers, by type (ls-remote, fetch, push) and result "
    "(success, error, timeout).",
    ["type", "result"],
    registry=REGISTRY,
)
GIT_SECONDS = Histogram(
    "modelsync_git_request_duration_seconds",
    "Time one request to a git server took, by type.",
    ["type"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
    registry=REGISTRY,
)
OBJECTS_APPLIED = Counter(
    "modelsync_objects_applied_total",
    "Objects of git revisions, by what syncing did to them (created, configured, "
    "unchanged, deleted).",
    ["action"],
    registry=REGISTRY,
)
WEBHOOKS = Counter(
    "modelsync_webhook_requests_total",
    "Webhook requests, by provider and result (queued, ignored, duplicate, ping, "
    "unauthorized, bad-request, too-large, timeout, unknown-provider, gone, standby).",
    ["provider", "result"],
    registry=REGISTRY,
)

# ------------------------------------------------------------------ the operator

QUEUE_DEPTH = Gauge(
    "modelsync_queue_depth",
    "Objects waiting in the work queue or being worked on.",
    registry=REGISTRY,
)
LEADER = Gauge(
    "modelsync_leader",
    "1 while this replica leads (acts); 0 while it stands by.",
    registry=REGISTRY,
)

_model_info: dict[tuple[str, str], tuple[str, str]] = {}
_model_lock = threading.Lock()


def model_serves(namespace: str, model: str, ready: bool, version: str, runtime: str) -> None:
    """Readiness and info of one model; the info series of an earlier version goes."""
    MODEL_READY.labels(namespace, model).set(1 if ready else 0)
    with _model_lock:
        previous = _model_info.get((namespace, model))
        if previous != (version, runtime):
            if previous is not None:
                MODEL_INFO.remove(namespace, model, *previous)
            MODEL_INFO.labels(namespace, model, version, runtime).set(1)
            _model_info[(namespace, model)] = (version, runtime)


def model_gone(namespace: str, model: str) -> None:
    """A deleted model leaves no series behind (/metrics is scraped for good: a tenant
    creating and deleting models must not grow it)."""
    with _model_lock:
        previous = _model_info.pop((namespace, model), None)
        if previous is not None:
            MODEL_INFO.remove(namespace, model, *previous)
    with contextlib.suppress(KeyError):
        MODEL_READY.remove(namespace, model)
    for family in (ROLLOUTS, ROLLBACKS, DRIFT_REVERTED):
        family.remove_by_labels({"namespace": namespace, "model": model})


def sync_gone(namespace: str, name: str) -> None:
    """A deleted ModelSync leaves no series behind."""
    for family in (SYNCS, SYNC_SECONDS):
        family.remove_by_labels({"namespace": namespace, "name": name})


def track_queue(depth: Callable[[], int]) -> None:
    QUEUE_DEPTH.set_function(lambda: float(depth()))
