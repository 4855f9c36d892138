"""/metrics is unauthenticated and scraped for good: a deleted ModelSync's or model's
series go with it (a tenant creating and deleting objects must not grow it forever)."""

from __future__ import annotations

from prometheus_client import generate_latest

from modelsync.telemetry import metrics


def series_naming(namespace: str, name: str) -> list[str]:
    text = generate_latest(metrics.REGISTRY).decode()
    return [
        line
        for line in text.splitlines()
        if not line.startswith("#") and f'namespace="{namespace}"' in line and f'"{name}"' in line
    ]


def test_security_a_deleted_model_leaves_no_series() -> None:
    metrics.model_serves("gone-team", "iris", True, "1", "mlserver")
    metrics.ROLLOUTS.labels("gone-team", "iris", "succeeded").inc()
    metrics.ROLLBACKS.labels("gone-team", "iris", "CrashLoop").inc()
    metrics.DRIFT_REVERTED.labels("gone-team", "iris", "Deployment").inc()
    metrics.ROLLOUTS.labels("gone-team", "iris-2", "failed").inc()  # another model stays
    assert len(series_naming("gone-team", "iris")) >= 5
    metrics.model_gone("gone-team", "iris")
    assert series_naming("gone-team", "iris") == []
    assert series_naming("gone-team", "iris-2")


def test_security_a_deleted_modelsync_leaves_no_series() -> None:
    metrics.SYNCS.labels("gone-team", "prod", "Succeeded").inc()
    metrics.SYNCS.labels("gone-team", "prod", "ValidationFailed").inc()
    metrics.SYNC_SECONDS.labels("gone-team", "prod").observe(1.5)
    metrics.SYNCS.labels("gone-team", "prod-2", "Succeeded").inc()  # another ModelSync stays
    assert series_naming("gone-team", "prod")
    metrics.sync_gone("gone-team", "prod")
    assert series_naming("gone-team", "prod") == []
    assert series_naming("gone-team", "prod-2")
