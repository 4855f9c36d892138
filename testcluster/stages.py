"""kwok Stages for the local cluster: kwok's own defaults plus our fault injection.

A pod whose labels carry `modelsync.io/kwok-fault` is taken out of kwok's
default `pod-ready` stage and follows one of ours instead:

- `never-ready`: the pod runs but never becomes Ready (a readiness probe that
  never passes), so a Deployment using it ends `ProgressDeadlineExceeded`.
- `crash-loop`: the containers keep crashing; `restartCount` grows every
  couple of seconds and the container waits in `CrashLoopBackOff`.
- `slow-ready`: kwok's own `pod-ready`, SLOW_READY_MS after the pod is scheduled
  (a model server loading its model): rollouts whose capacity is counted need pods
  that are not Ready at once.

Put the label on a Deployment's pod template to make its rollout fail on purpose.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

FAULT_LABEL = "modelsync.io/kwok-fault"
NEVER_READY = "never-ready"
CRASH_LOOP = "crash-loop"
SLOW_READY = "slow-ready"
SLOW_READY_MS = 3000
FAULTS = (NEVER_READY, CRASH_LOOP, SLOW_READY)

_FAULT_KEY = f'.metadata.labels["{FAULT_LABEL}"]'

# Addresses and init containers as kwok's pod-ready stage reports them; only once,
# since a repeating stage would otherwise allocate the pod a second IP.
_ADDRESSES = """\
{{ if not .status.podIP }}
{{ $hostIPs := NodeIPsWith .spec.nodeName }}
{{ with $hostIPs }}
hostIP: {{ index . 0 | Quote }}
hostIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
{{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) \
( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
{{ with $podIPs }}
podIP: {{ index . 0 | Quote }}
podIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
initContainerStatuses:
{{ range .spec.initContainers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: true
  restartCount: 0
  state:
    terminated:
      exitCode: 0
      reason: Completed
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
{{ end }}
{{ end }}
"""

_NOT_READY_CONDITIONS = """\
conditions:
- type: Initialized
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
- type: Ready
  status: "False"
  reason: ContainersNotReady
  lastTransitionTime: {{ $now | Quote }}
- type: ContainersReady
  status: "False"
  reason: ContainersNotReady
  lastTransitionTime: {{ $now | Quote }}
"""

NEVER_READY_TEMPLATE = (
    "{{ $now := Now }}\n"
    + _NOT_READY_CONDITIONS
    + """\
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
"""
    + _ADDRESSES
    + """\
phase: Running
startTime: {{ or .status.startTime $now | Quote }}
"""
)

CRASH_LOOP_TEMPLATE = (
    "{{ $now := Now }}\n"
    + _NOT_READY_CONDITIONS
    + """\
{{ $previous := or .status.containerStatuses list }}
containerStatuses:
{{ range $container := .spec.containers }}
{{ $restarts := 0 }}
{{ range $previous }}{{ if eq .name $container.name }}\
{{ $restarts = add ( or .restartCount 0 ) 1 }}{{ end }}{{ end }}
- image: {{ $container.image | Quote }}
  name: {{ $container.name | Quote }}
  ready: false
  started: false
  restartCount: {{ $restarts }}
  lastState:
    terminated:
      exitCode: 1
      reason: Error
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
  state:
    waiting:
      reason: CrashLoopBackOff
      message: back-off restarting failed container {{ $container.name }}
{{ end }}
"""
    + _ADDRESSES
    + """\
phase: Running
startTime: {{ or .status.startTime $now | Quote }}
"""
)


def _fault_stage(
    name: str, fault: str, template: str, extra: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {
                "matchExpressions": [
                    {"key": _FAULT_KEY, "operator": "In", "values": [fault]},
                    {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                    {"key": ".spec.nodeName", "operator": "Exists"},
                    *extra,
                ]
            },
            "next": {"statusTemplate": template},
        },
    }


def fault_stages() -> list[dict[str, Any]]:
    never_ready = _fault_stage(
        "modelsync-pod-never-ready",
        NEVER_READY,
        NEVER_READY_TEMPLATE,
        [{"key": ".status.phase", "operator": "In", "values": ["Pending"]}],
    )
    # No phase condition: the stage matches again after each update it makes,
    # which is what makes the restart count keep growing.
    crash_loop = _fault_stage("modelsync-pod-crash-loop", CRASH_LOOP, CRASH_LOOP_TEMPLATE, [])
    crash_loop["spec"]["delay"] = {"durationMilliseconds": 2000}
    return [never_ready, crash_loop]


def kwok_config(default_stages_yaml: str) -> str:
    """The `--config` file for kwok: its default stages, with faulted pods kept out of
    `pod-ready`, followed by our fault stages."""
    stages = [doc for doc in yaml.safe_load_all(default_stages_yaml) if doc]
    names = {stage["metadata"]["name"] for stage in stages}
    if "pod-ready" not in names:
        raise ValueError(f"kwok's default stages have no pod-ready stage (found {sorted(names)})")
    slow: list[dict[str, Any]] = []
    for stage in stages:
        if stage["metadata"]["name"] == "pod-ready":
            slow.append(_slow_ready(stage))
            stage["spec"]["selector"]["matchExpressions"].append(
                {"key": _FAULT_KEY, "operator": "DoesNotExist"}
            )
    return yaml.safe_dump_all([*stages, *fault_stages(), *slow], sort_keys=False)


def _slow_ready(pod_ready: dict[str, Any]) -> dict[str, Any]:
    """kwok's `pod-ready` stage for `slow-ready` pods only, after a delay."""
    stage: dict[str, Any] = copy.deepcopy(pod_ready)
    stage["metadata"]["name"] = "modelsync-pod-slow-ready"
    stage["spec"]["selector"]["matchExpressions"].append(
        {"key": _FAULT_KEY, "operator": "In", "values": [SLOW_READY]}
    )
    stage["spec"]["delay"] = {"durationMilliseconds": SLOW_READY_MS}
    return stage
