"""Prometheus metrics of the operator. One registry, served on /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

API_WRITES = Counter(
    "modelsync_api_writes_total",
    "Requests that changed something in the Kubernetes API (dry runs not counted).",
    ["verb", "kind"],
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
ROLLBACKS = Counter(
    "modelsync_rollbacks_total",
    "Automatic rollbacks of a failed model revision to the last healthy one, by reason.",
    ["reason"],
    registry=REGISTRY,
)
DRIFT_REVERTED = Counter(
    "modelsync_drift_reverted_total",
    "Out-of-band changes to serving objects that the operator reverted.",
    ["kind"],
    registry=REGISTRY,
)

SYNCS = Counter(
    "modelsync_syncs_total",
    "ModelSync syncs, by result (the Ready condition's reason).",
    ["result"],
    registry=REGISTRY,
)
SYNC_SECONDS = Histogram(
    "modelsync_sync_duration_seconds",
    "Time one sync took: fetch, load, validate, apply, prune, record.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
WEBHOOKS = Counter(
    "modelsync_webhooks_total",
    "Authenticated webhook deliveries that queued at least one sync.",
    ["provider"],
    registry=REGISTRY,
)


def api_writes() -> float:
    """All API writes so far, whatever verb and kind."""
    return sum(
        sample.value
        for metric in API_WRITES.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )
