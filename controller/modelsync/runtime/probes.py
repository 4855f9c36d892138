"""What /healthz and /readyz answer: plain functions of the operator's state.

Alive: the process answers, and — once it acts — its event loop has beaten within
`STALL_SECONDS` (a loop stuck in a blocking call is restarted by the kubelet).
Ready: the API server answered recently, and this replica either stands by (another
one leads) or leads with its caches synced. A standby is ready on purpose: it is
healthy and will take over; the webhook Service routes by leadership, not readiness.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

ROLE_STARTING = "starting"
ROLE_STANDBY = "standby"
ROLE_LEADER = "leader"

STALL_SECONDS = 30.0  # event loop silent this long: not alive
API_SILENCE_SECONDS = 30.0  # no answer from the API server this long: not ready


@dataclass
class Health:
    """Written by the operator as it goes; read by the HTTP server's thread."""

    role: str = ROLE_STARTING
    caches_synced: bool = False
    heartbeat: float = field(default_factory=time.monotonic)
    api_contact: float | None = None  # monotonic time the API server last answered
    api_error: str = ""

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    def api_answered(self) -> None:
        self.api_contact, self.api_error = time.monotonic(), ""

    def api_failed(self, error: str) -> None:
        self.api_error = error


def liveness(health: Health, now: float) -> tuple[bool, str]:
    if health.role == ROLE_LEADER and health.caches_synced:
        silent = now - health.heartbeat
        if silent > STALL_SECONDS:
            return False, f"the operator's event loop has not run for {silent:.0f}s"
    return True, "ok"


def readiness(health: Health, now: float) -> tuple[bool, str]:
    if health.api_contact is None or now - health.api_contact > API_SILENCE_SECONDS:
        detail = f": {health.api_error}" if health.api_error else ""
        return False, f"no answer from the Kubernetes API server{detail}"
    if health.role == ROLE_STANDBY:
        return True, "ok: standby, another replica leads"
    if health.role != ROLE_LEADER:
        return False, "starting"
    if not health.caches_synced:
        return False, "leading; caches are not synced yet"
    return True, "ok: leading"
