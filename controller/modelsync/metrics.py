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
DRIFT_REVERTED = Counter(
    "modelsync_drift_reverted_total",
    "Out-of-band changes to serving objects that the operator reverted.",
    ["kind"],
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
