"""What /healthz and /readyz answer, from the operator's state."""

from __future__ import annotations

from modelsync.runtime import probes
from modelsync.runtime.probes import Health, liveness, readiness


def _health(
    role: str, synced: bool = True, beat: float = 1000.0, api: float | None = 1000.0
) -> Health:
    health = Health(role=role, caches_synced=synced, heartbeat=beat)
    health.api_contact = api
    return health


def test_a_leader_with_synced_caches_is_ready() -> None:
    assert readiness(_health(probes.ROLE_LEADER), 1001.0) == (True, "ok: leading")


def test_a_standby_is_ready_and_says_so() -> None:
    ready, why = readiness(_health(probes.ROLE_STANDBY, synced=False), 1001.0)
    assert ready
    assert "standby" in why


def test_not_ready_while_starting_or_syncing() -> None:
    assert readiness(_health(probes.ROLE_STARTING, synced=False), 1001.0) == (False, "starting")
    ready, why = readiness(_health(probes.ROLE_LEADER, synced=False), 1001.0)
    assert not ready
    assert "caches" in why


def test_not_ready_without_the_api_server() -> None:
    never = _health(probes.ROLE_LEADER, api=None)
    never.api_failed("MaxRetryError")
    assert readiness(never, 1001.0) == (
        False,
        "no answer from the Kubernetes API server: MaxRetryError",
    )
    stale = _health(probes.ROLE_STANDBY, api=1000.0)
    assert not readiness(stale, 1000.0 + probes.API_SILENCE_SECONDS + 1)[0]


def test_a_stuck_event_loop_is_not_alive() -> None:
    health = _health(probes.ROLE_LEADER, beat=1000.0)
    assert liveness(health, 1000.0 + probes.STALL_SECONDS - 1) == (True, "ok")
    alive, why = liveness(health, 1000.0 + probes.STALL_SECONDS + 5)
    assert not alive
    assert "35s" in why


def test_a_standby_has_no_loop_to_watch_and_is_alive() -> None:
    health = _health(probes.ROLE_STANDBY, beat=0.0)
    assert liveness(health, 10_000.0) == (True, "ok")
