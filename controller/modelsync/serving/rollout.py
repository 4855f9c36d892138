"""Rollout decisions: has a new revision of a model failed, and what happens then. Pure.

A revision has failed when its Deployment passed its progress deadline (pods that
never become ready end there) or when a container of one of its pods restarted
more than `rollback.maxRestarts` times, or when its model download has failed for good
(`initializer_failure`), or when a pod failed spec.validation's samples
(`validation_failure`; a pod that could not be reached for them fails at the
progress deadline, with that reason). A failed revision is rolled back to the
model's last healthy spec (kept in status, so it survives a restart of the
operator) and quarantined by its spec hash: it is not applied again until git
changes the model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from modelsync.api import constants as c
from modelsync.api.conditions import find
from modelsync.api.manifest import JsonValue, Manifest, get, integer, items, mapping, text

# What the store answers when retrying cannot help: refused credentials or a missing
# bucket or object. The initializer's termination message carries the store's words
# (the S3 codes) or kserve-storage's summary of them ("S3 resource 'b' not found.").
PERMANENT_DOWNLOAD_ERROR = re.compile(
    r"\b(403|404|Forbidden|AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|NoSuchBucket"
    r"|NoSuchKey|not found|does not exist|access denied|authentication failed"
    r"|invalid AWS credentials|no model found)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class GateWait:
    """The inference gate's hold on a revision's new pods (serving/gate.py): how many
    wait for a validation slot, the fewest ahead of any of them, and the seconds since
    the last of them first got a slot (None: none has yet)."""

    waiting: int
    ahead: int
    since_granted: float | None


def slot_message(wait: GateWait) -> str:
    """What status says while a new pod waits for a validation slot."""
    return c.MESSAGE_WAITING_FOR_SLOT.format(ahead=wait.ahead)


def deadline_held(wait: GateWait | None, deadline_seconds: float) -> bool:
    """Whether the gate holds the progress deadline back: kube-controller-manager's
    deadline counts from the rollout's last progress, the pods' time in line for a
    validation slot included (time another tenant's pods made them wait); the operator
    counts its own from when the slot was granted, and none while a pod waits for one."""
    if wait is None:
        return False
    if wait.waiting:
        return True
    return wait.since_granted is not None and wait.since_granted < deadline_seconds


@dataclass(frozen=True)
class Failure:
    reason: str
    message: str


class Action(Enum):
    WAIT = "wait"  # nothing to decide yet (rolling out, or serving as it should)
    PROMOTE = "promote"  # the wanted revision is healthy: it becomes the stable one
    ROLL_BACK = "roll back"  # it failed and a healthy spec is known: restore that
    FAIL = "fail"  # it failed with nothing to go back to, or rollback is off


@dataclass(frozen=True)
class Decision:
    action: Action
    failure: Failure | None = None


def detect_failure(
    deployment: Mapping[str, object] | None,
    pods: Sequence[Mapping[str, object]],
    spec_hash: str,
    max_restarts: int,
    *,
    gate: GateWait | None = None,
) -> Failure | None:
    """Why the revision with `spec_hash` has failed, or None while it has not. `gate`:
    its new pods' place at the inference gate (None: no pod of it asked the gate)."""
    for pod in sorted(pods, key=_name):
        if text(pod, "metadata", "labels", c.LABEL_SPEC_HASH) != spec_hash:
            continue
        failed = initializer_failure(pod, max_restarts) or validation_failure(pod)
        if failed is not None:
            return failed
        for container in items(pod, "status", "containerStatuses"):
            restarts = integer(container, "restartCount")
            if restarts > max_restarts:
                return Failure(
                    c.REASON_CRASH_LOOP,
                    f"container {container.get('name')} of pod {_name(pod)} "
                    f"restarted {restarts} times (rollback.maxRestarts is {max_restarts})",
                )
    return None if deployment is None else _deadline_failure(deployment, pods, spec_hash, gate)


def _deadline_failure(
    deployment: Mapping[str, object],
    pods: Sequence[Mapping[str, object]],
    spec_hash: str,
    gate: GateWait | None,
) -> Failure | None:
    """The Deployment passed its progress deadline, and the gate does not hold it."""
    if integer(deployment, "status", "observedGeneration") < integer(
        deployment, "metadata", "generation"
    ):
        return None  # the deadline of an older generation says nothing about this one
    progress = find(get(deployment, "status", "conditions"), "Progressing") or {}
    if progress.get("reason") != "ProgressDeadlineExceeded":
        return None
    deadline = get(deployment, "spec", "progressDeadlineSeconds")
    seconds = deadline if isinstance(deadline, int | float) else 600
    if deadline_held(gate, float(seconds)):
        return None
    unreachable = _unreachable(pods, spec_hash)
    if unreachable is not None:
        return Failure(
            c.REASON_POD_UNREACHABLE,
            f"not validated within progressDeadlineSeconds={deadline}: {unreachable}",
        )
    return Failure(
        c.REASON_PROGRESS_DEADLINE_EXCEEDED,
        f"not available within progressDeadlineSeconds={deadline}: "
        f"{progress.get('message', '')}".rstrip(": "),
    )


def _name(pod: Mapping[str, object]) -> str:
    return text(pod, "metadata", "name")


def initializer_failure(pod: Mapping[str, object], max_restarts: int) -> Failure | None:
    """Whether an init container of `pod` (the storage initializer) has failed for good:
    its last run ended non-zero with a permanent error (403, 404, NoSuchBucket, ...), or
    it ended non-zero `max_restarts` times. Its termination message is the message, so
    the rollout fails at once with what the store said, not at the progress deadline."""
    for container in items(pod, "status", "initContainerStatuses"):
        state = mapping(container, "state")
        ended = mapping(state, "terminated") or mapping(container, "lastState", "terminated")
        if not ended or integer(ended, "exitCode") == 0:
            continue
        # restartCount counts the runs before this one; a run that has just ended and
        # is not restarted yet is one more.
        failures = integer(container, "restartCount") + (1 if state.get("terminated") else 0)
        said = " ".join(str(ended.get("message") or ended.get("reason") or "").split())
        permanent = PERMANENT_DOWNLOAD_ERROR.search(said) is not None
        if permanent or failures >= max(1, max_restarts):
            why = (
                "with an error retrying cannot fix"
                if permanent
                else f"{failures} times (rollback.maxRestarts is {max_restarts})"
            )
            return Failure(
                c.REASON_MODEL_DOWNLOAD_FAILED,
                f"init container {container.get('name')} of pod {_name(pod)} "
                f"failed {why}, exit {ended.get('exitCode')}: {said or 'no message'}",
            )
    return None


def _gate(pod: Mapping[str, object]) -> Mapping[str, JsonValue]:
    """The pod's inference-gate condition (spec.validation), or {}."""
    return find(get(pod, "status", "conditions"), c.CONDITION_VALIDATED) or {}


def validation_failure(pod: Mapping[str, object]) -> Failure | None:
    """Whether `pod` failed spec.validation's samples: the message of its gate's
    condition names each failed sample with its request, expected and actual answer."""
    gate = _gate(pod)
    if gate.get("status") != "False" or gate.get("reason") != c.REASON_SAMPLES_FAILED:
        return None
    return Failure(
        c.REASON_SAMPLES_FAILED,
        f"pod {_name(pod)} failed validation: {gate.get('message', '')}",
    )


def _unreachable(pods: Sequence[Mapping[str, object]], spec_hash: str) -> str | None:
    """Why a pod of `spec_hash` could not be validated, if one could not be reached."""
    for pod in sorted(pods, key=_name):
        gate = _gate(pod)
        if text(pod, "metadata", "labels", c.LABEL_SPEC_HASH) == spec_hash and (
            gate.get("reason") == c.REASON_POD_UNREACHABLE and gate.get("status") == "False"
        ):
            return f"pod {_name(pod)}: {gate.get('message', '')}"
    return None


def decide(
    *,
    wanted_hash: str,
    stable_hash: str | None,
    has_stable_spec: bool,
    ready: bool,
    failure: Failure | None,
    automatic: bool,
) -> Decision:
    """What to do about the wanted revision (not quarantined) given how it is doing."""
    if failure is not None and wanted_hash != stable_hash:
        if automatic and has_stable_spec:
            return Decision(Action.ROLL_BACK, failure)
        return Decision(Action.FAIL, failure)
    if ready and wanted_hash != stable_hash:
        return Decision(Action.PROMOTE)
    return Decision(Action.WAIT)


def remember(history: list[Manifest] | None, entry: Manifest, limit: int) -> list[Manifest]:
    """Newest first, at most `limit` entries; the same outcome of the same spec once."""
    history = list(history or [])
    if history and {k: history[0].get(k) for k in ("specHash", "result")} == {
        k: entry.get(k) for k in ("specHash", "result")
    }:
        return history
    return [entry, *history][: max(1, limit)]
