"""Serve, step two: how a model's Deployment is doing, as ModelDeployment conditions.

A pure function of the live Deployment. Ready means the current spec is fully
rolled out and every wanted replica is available; while a new version comes up
the model is Progressing (and not yet Ready on that version); Degraded says
something is wrong that waiting alone will not fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from modelsync.api import constants as c
from modelsync.api.conditions import Observed, find
from modelsync.api.manifest import JsonValue, get, integer, mapping

# The Deployment controller's own reasons (k8s.io/kubernetes/pkg/controller/deployment/util).
DEPLOYMENT_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
DEPLOYMENT_ROLLED_OUT = "NewReplicaSetAvailable"


@dataclass(frozen=True)
class ServingState:
    observed: list[Observed]
    replicas: int
    ready_replicas: int
    updated_replicas: int

    @property
    def ready(self) -> bool:
        return any(o.type == c.READY and o.status for o in self.observed)


def _state(
    ready: Observed, progressing: Observed, degraded: Observed, status: Mapping[str, JsonValue]
) -> ServingState:
    return ServingState(
        observed=[ready, progressing, degraded],
        replicas=integer(status, "replicas"),
        ready_replicas=integer(status, "readyReplicas"),
        updated_replicas=integer(status, "updatedReplicas"),
    )


def assess(deployment: Mapping[str, object] | None) -> ServingState:
    """Conditions Ready, Progressing and Degraded from the live Deployment."""
    healthy = Observed(c.DEGRADED, False, c.REASON_AS_EXPECTED)
    if deployment is None:
        waiting = "the Deployment does not exist yet"
        return _state(
            Observed(c.READY, False, c.REASON_ROLLING_OUT, waiting),
            Observed(c.PROGRESSING, True, c.REASON_ROLLING_OUT, waiting),
            healthy,
            {},
        )
    status = mapping(deployment, "status")
    generation = integer(deployment, "metadata", "generation")
    if integer(status, "observedGeneration") < generation:
        waiting = f"waiting for the Deployment controller to see generation {generation}"
        return _state(
            Observed(c.READY, False, c.REASON_ROLLING_OUT, waiting),
            Observed(c.PROGRESSING, True, c.REASON_ROLLING_OUT, waiting),
            healthy,
            status,
        )
    desired = integer(deployment, "spec", "replicas", default=1)
    replicas = integer(status, "replicas")
    updated = integer(status, "updatedReplicas")
    available = integer(status, "availableReplicas")
    progress = find(get(status, "conditions"), "Progressing") or {}

    if progress.get("reason") == DEPLOYMENT_DEADLINE_EXCEEDED:
        message = (
            f"the new version did not become available in time: {updated} of {desired} "
            f"updated replicas, {available} available ({progress.get('message', '')})"
        )
        return _state(
            Observed(c.READY, False, c.REASON_PROGRESS_DEADLINE_EXCEEDED, message),
            Observed(c.PROGRESSING, False, c.REASON_PROGRESS_DEADLINE_EXCEEDED, message),
            Observed(c.DEGRADED, True, c.REASON_PROGRESS_DEADLINE_EXCEEDED, message),
            status,
        )
    rolled_out = updated == desired and replicas == desired
    if rolled_out and available >= desired:
        if desired == 0:
            message = "scaled to zero replicas: the endpoint has no server behind it"
            reason = c.REASON_SCALED_TO_ZERO
        else:
            message = f"{available} of {desired} replicas available"
            reason = c.REASON_AVAILABLE
        return _state(
            Observed(c.READY, True, reason, message),
            Observed(
                c.PROGRESSING, False, c.REASON_ROLLED_OUT, "the current version is rolled out"
            ),
            healthy,
            status,
        )
    if rolled_out and progress.get("reason") == DEPLOYMENT_ROLLED_OUT:
        # Rolled out once, and replicas went missing since: waiting will not bring them back.
        message = f"only {available} of {desired} replicas available"
        return _state(
            Observed(c.READY, False, c.REASON_PODS_NOT_READY, message),
            Observed(
                c.PROGRESSING, False, c.REASON_ROLLED_OUT, "the current version is rolled out"
            ),
            Observed(c.DEGRADED, True, c.REASON_PODS_NOT_READY, message),
            status,
        )
    message = f"rolling out: {updated} of {desired} replicas updated, {available} available"
    return _state(
        Observed(c.READY, False, c.REASON_ROLLING_OUT, message),
        Observed(c.PROGRESSING, True, c.REASON_ROLLING_OUT, message),
        healthy,
        status,
    )


# Ready reasons a status may go on showing while a rollout goes as planned: it was
# rolling out, or served (a spec before this one), or has none yet.
_QUIET_REASONS = frozenset({c.REASON_ROLLING_OUT, c.REASON_AVAILABLE, c.REASON_SCALED_TO_ZERO})


def routine(state: ServingState, current: object) -> bool:
    """True when `state` is a rollout going as planned and the status's conditions
    (`current`) say nothing it would correct: writing it can wait until the rollout
    ends (Ready, or Degraded), which is written at once. A status per replica that came
    up would cost a write each, and at 1,000 models writes are what the cluster waits on."""
    ready = next(o for o in state.observed if o.type == c.READY)
    if ready.status or ready.reason != c.REASON_ROLLING_OUT:
        return False
    if any(o.type == c.DEGRADED and o.status for o in state.observed):
        return False
    shown = find(current, c.READY)
    return shown is None or shown.get("reason") in _QUIET_REASONS
