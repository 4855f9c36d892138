"""Serve, step one: a ModelDeployment's spec becomes its serving objects.

Pure functions of plain data. `render` takes the ModelDeployment as the API
server returns it (a dict, schema defaults applied) and returns the Deployment,
Service and, with autoscaling, HorizontalPodAutoscaler to apply — or raises
`InvalidSpecError` naming the field, for what the CRD's schema cannot check.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from modelsync.api import constants as c
from modelsync.api import modeldeployment
from modelsync.serving import runtimes, validation
from modelsync.serving.runtimes import MODEL_DIR, Runtime

Manifest = dict[str, Any]

SERVER_CONTAINER = "server"
INITIALIZER_CONTAINER = "storage-initializer"
MODEL_VOLUME = "model-store"
SCRATCH_VOLUME = "scratch"
# What every container of a locked-down pod gets: Kubernetes' "restricted" Pod
# Security Standard, with a read-only root filesystem on top.
LOCKED_DOWN_CONTAINER: Final[Manifest] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
LOCKED_DOWN_POD: Final[Manifest] = {
    "runAsNonRoot": True,
    "runAsUser": runtimes.SERVER_UID,
    "runAsGroup": runtimes.SERVER_UID,
    # The model volume (an emptyDir the initializer fills) is the group's to write.
    "fsGroup": runtimes.SERVER_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
PORT_NAME = "http"
DEFAULT_REPLICAS = 1
GPU_RESOURCE = "nvidia.com/gpu"

# A Kubernetes resource quantity: 500m, 2, 1.5Gi, 1e3.
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(\d+(\.\d*)?|\.\d+))"
    r"(?:(?P<exponent>[eE][+-]?\d+)|(?P<suffix>[KMGTPE]i|[numkKMGTPE]))?$"
)
_SUFFIX = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "K": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"),
    "T": Decimal("1e12"), "P": Decimal("1e15"), "E": Decimal("1e18"),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30),
    "Ti": Decimal(2**40), "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}  # fmt: skip


class InvalidSpecError(ValueError):
    """The spec passed the schema but cannot be served; `field` is its JSON path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Images:
    """The installation's images (platform settings), as plain data: an image per
    runtime where it is not runtimes.py's default, the storage initializer's, and the
    pull policy of every container ("" renders none)."""

    servers: Mapping[str, str] = field(default_factory=dict)
    storage_initializer: str = runtimes.STORAGE_INITIALIZER_IMAGE
    pull_policy: str = ""

    def server(self, runtime: Runtime, wanted: str | None) -> str:
        """The ModelDeployment's own image first, then the installation's, then the default."""
        return wanted or self.servers.get(runtime.name) or runtime.image


DEFAULT_IMAGES: Final = Images()


@dataclass(frozen=True)
class Rendered:
    """What serving one ModelDeployment takes."""

    deployment: Manifest
    service: Manifest
    autoscaler: Manifest | None
    spec_hash: str
    endpoint: str

    @property
    def objects(self) -> list[Manifest]:
        """In apply order: the Service first, so the endpoint exists when pods do."""
        found = [self.service, self.deployment]
        if self.autoscaler is not None:
            found.append(self.autoscaler)
        return found


def spec_hash(pod_template: Manifest) -> str:
    """A digest of the pod template: equal for equal templates whatever their key order,
    different whenever a pod would have to be replaced."""
    canonical = json.dumps(pod_template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def parse_quantity(field: str, value: Any) -> Decimal:
    """A resource quantity as a number (2Gi -> 2147483648), or InvalidSpecError naming `field`."""
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise InvalidSpecError(
            field, f"{value!r} is not a Kubernetes quantity (write e.g. 500m, 2, 4Gi)"
        )
    number = Decimal(match["number"])
    if match["exponent"]:
        return number * Decimal(10) ** int(match["exponent"][1:])
    return number * _SUFFIX[match["suffix"] or ""]


def _fill(template: str, values: dict[str, str]) -> str:
    return template.format(**values)


def labels_for(md: Manifest) -> dict[str, str]:
    spec = md["spec"]
    name = md["metadata"]["name"]
    labels = {
        c.LABEL_NAME: spec["model"]["name"],
        c.LABEL_INSTANCE: name,
        c.LABEL_COMPONENT: "model-server",
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_MODEL: spec["model"]["name"],
        c.LABEL_MODEL_VERSION: spec["model"]["version"],
        c.LABEL_DEPLOYMENT: name,
    }
    # The shard that serves the model watches its objects (and pods) by this label.
    shard = (md["metadata"].get("labels") or {}).get(c.LABEL_SHARD)
    if shard:
        labels[c.LABEL_SHARD] = shard
    return labels


def selector_for(md: Manifest) -> dict[str, str]:
    """Stable for the life of the ModelDeployment: a Deployment's selector is immutable."""
    name = md["metadata"]["name"]
    return {c.LABEL_INSTANCE: name, c.LABEL_DEPLOYMENT: name}


def owner_reference(md: Manifest) -> Manifest:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.MODELDEPLOYMENT_KIND,
        "name": md["metadata"]["name"],
        "uid": md["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(md: Manifest, labels: dict[str, str], annotations: dict[str, str]) -> Manifest:
    meta: Manifest = {
        "name": md["metadata"]["name"],
        "namespace": md["metadata"]["namespace"],
        "labels": dict(labels),
        "ownerReferences": [owner_reference(md)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def _resources(spec: Manifest) -> Manifest:
    wanted = spec.get("resources") or {}
    requests = {k: str(v) for k, v in (wanted.get("requests") or {}).items()}
    limits = {k: str(v) for k, v in (wanted.get("limits") or {}).items()}
    parsed_requests = {
        k: parse_quantity(f"spec.resources.requests.{k}", v) for k, v in requests.items()
    }
    for name, value in limits.items():
        limit = parse_quantity(f"spec.resources.limits.{name}", value)
        if name in parsed_requests and limit < parsed_requests[name]:
            raise InvalidSpecError(
                f"spec.resources.limits.{name}",
                f"limit {value} is below the request {requests[name]}; "
                "raise the limit or lower the request",
            )
    gpus = wanted.get("gpus") or 0
    if gpus:
        requests[GPU_RESOURCE] = str(gpus)
        limits[GPU_RESOURCE] = str(gpus)
    result: Manifest = {}
    if requests:
        result["requests"] = requests
    if limits:
        result["limits"] = limits
    return result


def _probe(probe: runtimes.Probe, values: dict[str, str]) -> Manifest:
    return {
        "httpGet": {"path": _fill(probe.path, values), "port": PORT_NAME},
        "initialDelaySeconds": probe.initial_delay_seconds,
        "periodSeconds": probe.period_seconds,
        "failureThreshold": probe.failure_threshold,
    }


def _model_source(md: Manifest, images: Images) -> tuple[list[Manifest], list[Manifest], Manifest]:
    """Init containers, volumes, and the server's volume mount that bring the model
    to MODEL_DIR, chosen by the URI's scheme."""
    model = md["spec"]["model"]
    uri: str = model["uri"]
    scheme, _, rest = uri.partition("://")
    mount: Manifest = {"name": MODEL_VOLUME, "mountPath": MODEL_DIR, "readOnly": True}
    if scheme in runtimes.DOWNLOADED_SCHEMES:
        initializer: Manifest = {
            "name": INITIALIZER_CONTAINER,
            "image": images.storage_initializer,
            "args": [uri, MODEL_DIR],
            "volumeMounts": [{"name": MODEL_VOLUME, "mountPath": MODEL_DIR}],
            "resources": {
                "requests": {"cpu": "100m", "memory": "100Mi"},
                "limits": {"memory": "1Gi"},
            },
        }
        if images.pull_policy:
            initializer["imagePullPolicy"] = images.pull_policy
        secret = (model.get("storageSecretRef") or {}).get("name")
        if secret:
            initializer["envFrom"] = [{"secretRef": {"name": secret}}]
        return [initializer], [{"name": MODEL_VOLUME, "emptyDir": {}}], mount
    if scheme == runtimes.SCHEME_PVC:
        claim, _, sub_path = rest.partition("/")
        if sub_path.strip("/"):
            mount["subPath"] = sub_path.strip("/")
        volume = {
            "name": MODEL_VOLUME,
            "persistentVolumeClaim": {"claimName": claim, "readOnly": True},
        }
        return [], [volume], mount
    if scheme == runtimes.SCHEME_OCI:
        volume = {"name": MODEL_VOLUME, "image": {"reference": rest, "pullPolicy": "IfNotPresent"}}
        return [], [volume], mount
    raise InvalidSpecError("spec.model.uri", f"unsupported scheme {scheme}:// in {uri!r}")


def _server_container(
    md: Manifest, runtime: Runtime, mount: Manifest, images: Images, *, locked_down: bool
) -> Manifest:
    spec = md["spec"]
    wanted = spec["runtime"]
    port = int(wanted.get("port") or runtime.port)
    values = {
        "model": spec["model"]["name"],
        "model_dir": MODEL_DIR,
        "port": str(port),
        "scratch": runtimes.SCRATCH_DIR,
    }
    env = _server_env(spec, runtime, values, locked_down=locked_down)
    container: Manifest = {
        "name": SERVER_CONTAINER,
        "image": images.server(runtime, wanted.get("image")),
        "ports": [{"name": PORT_NAME, "containerPort": port, "protocol": "TCP"}],
    }
    if images.pull_policy:
        container["imagePullPolicy"] = images.pull_policy
    if runtime.command:
        container["command"] = [_fill(part, values) for part in runtime.command]
    args = [_fill(part, values) for part in runtime.args] + list(wanted.get("args") or [])
    if args:
        container["args"] = args
    if env:
        container["env"] = [{"name": name, "value": value} for name, value in env.items()]
    resources = _resources(spec)
    if resources:
        container["resources"] = resources
    container.update(_probes(runtime, wanted, values))
    # Endpoints drain before the server is told to stop (runtimes.PRESTOP_DRAIN_SECONDS).
    container["lifecycle"] = {"preStop": {"sleep": {"seconds": runtimes.PRESTOP_DRAIN_SECONDS}}}
    container["volumeMounts"] = [mount]
    return container


def _server_env(
    spec: Manifest, runtime: Runtime, values: dict[str, str], *, locked_down: bool
) -> dict[str, str]:
    """The runtime's env, its model format's, then the ModelDeployment's own."""
    env = {name: _fill(value, values) for name, value in runtime.env}
    for name, value in runtime.format_env.get(spec["model"].get("format") or "", ()):
        env[name] = _fill(value, values)
    if locked_down:
        env["HOME"] = runtimes.SCRATCH_DIR
    for item in spec["runtime"].get("env") or []:
        env[item["name"]] = item.get("value", "")
    return env


def _probes(runtime: Runtime, wanted: Manifest, values: dict[str, str]) -> Manifest:
    """Readiness (the runtime's, else the spec's path, else the port) and liveness."""
    probes: Manifest = {}
    if runtime.readiness is not None:
        probes["readinessProbe"] = _probe(runtime.readiness, values)
    elif wanted.get("readinessPath"):
        probes["readinessProbe"] = _probe(runtimes.Probe(wanted["readinessPath"]), values)
    else:
        probes["readinessProbe"] = {"tcpSocket": {"port": PORT_NAME}, "periodSeconds": 10}
    if runtime.liveness is not None:
        probes["livenessProbe"] = _probe(runtime.liveness, values)
    return probes


def _lock_down(pod: Manifest) -> None:
    """Every container non-root, unprivileged, on a read-only root filesystem with a
    scratch emptyDir at SCRATCH_DIR; relaxed only by the platform's setting."""
    pod["securityContext"] = copy.deepcopy(LOCKED_DOWN_POD)
    pod["volumes"].append(
        {"name": SCRATCH_VOLUME, "emptyDir": {"sizeLimit": runtimes.SCRATCH_LIMIT}}
    )
    for container in pod["containers"] + pod.get("initContainers", []):
        container["securityContext"] = copy.deepcopy(LOCKED_DOWN_CONTAINER)
        container["volumeMounts"].append(
            {"name": SCRATCH_VOLUME, "mountPath": runtimes.SCRATCH_DIR}
        )


def _pod_template(md: Manifest, runtime: Runtime, images: Images, *, locked_down: bool) -> Manifest:
    spec = md["spec"]
    init_containers, volumes, mount = _model_source(md, images)
    pod: Manifest = {
        "containers": [_server_container(md, runtime, mount, images, locked_down=locked_down)],
        "volumes": volumes,
        # A model server needs no Kubernetes API token, and no env var per Service.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        # The preStop drain and then the server's own shutdown.
        "terminationGracePeriodSeconds": runtimes.TERMINATION_GRACE_SECONDS,
    }
    if init_containers:
        pod["initContainers"] = init_containers
    if locked_down:
        _lock_down(pod)
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        if spec.get(key):
            pod[key] = spec[key]
    extra = spec.get("podMetadata") or {}
    metadata: Manifest = {"labels": {**(extra.get("labels") or {}), **labels_for(md)}}
    if extra.get("annotations"):
        metadata["annotations"] = dict(extra["annotations"])
    return {"metadata": metadata, "spec": pod}


def _check(md: Manifest, runtime: Runtime) -> None:
    spec = md["spec"]
    scheme = spec["model"]["uri"].partition("://")[0]
    if scheme not in runtime.schemes:  # the CRD says so too; an old CRD might not
        raise InvalidSpecError(
            "spec.model.uri",
            f"runtime {runtime.name} cannot load {scheme}:// models; it loads "
            + ", ".join(f"{s}://" for s in sorted(runtime.schemes)),
        )
    model_format = spec["model"].get("format")
    if model_format and runtime.formats and model_format not in runtime.formats:
        raise InvalidSpecError(  # the CRD says so too; an old CRD might not
            "spec.model.format",
            f"runtime {runtime.name} cannot serve {model_format!r} models; it serves "
            f"{', '.join(runtime.formats)} (or use runtime custom with an image that can)",
        )
    if runtime.name == runtimes.CUSTOM and not spec["runtime"].get("image"):
        raise InvalidSpecError("spec.runtime.image", "a custom runtime needs an image")
    _check_validation(md, runtime)
    autoscaling = spec.get("autoscaling")
    if autoscaling is not None:
        requests = (spec.get("resources") or {}).get("requests") or {}
        if "cpu" not in requests:
            raise InvalidSpecError(
                "spec.resources.requests.cpu",
                "autoscaling on CPU utilization needs a CPU request to measure against; "
                "set spec.resources.requests.cpu",
            )


def _check_validation(md: Manifest, runtime: Runtime) -> None:
    """spec.validation must be able to pass: first of `validation.problems`."""
    typed = modeldeployment.parse_spec(md["spec"]).validation
    if typed is None:
        return
    speaks_http = runtime.readiness is not None or bool(md["spec"]["runtime"].get("readinessPath"))
    found = validation.problems(typed, speaks_http)
    if found:
        raise InvalidSpecError(*found[0])


def _gate(template: Manifest, spec: Manifest) -> None:
    """With spec.validation, new pods stay out of their Service until the operator has
    validated them; the samples' digest makes new samples a new revision (a version
    quarantined for failing them is tried again once they change)."""
    if not spec.get("validation"):
        return
    template["spec"]["readinessGates"] = [{"conditionType": c.CONDITION_VALIDATED}]
    annotations = template["metadata"].setdefault("annotations", {})
    annotations[c.ANNOTATION_VALIDATION] = spec_hash(spec["validation"])


def render(md: Manifest, *, locked_down: bool = True, images: Images = DEFAULT_IMAGES) -> Rendered:
    """The serving objects of one ModelDeployment (as read from the API server).
    `locked_down` is the platform's `model_pod_security` setting: False leaves the pod's
    user, capabilities and root filesystem as the image has them. `images` are the
    installation's runtime images and pull policy (`modelsync validate`/`diff` use
    the defaults)."""
    spec = md["spec"]
    name = md["metadata"]["name"]
    namespace = md["metadata"]["namespace"]
    runtime_name = spec["runtime"]["name"]
    runtime = runtimes.RUNTIMES.get(runtime_name)
    if runtime is None:
        raise InvalidSpecError(
            "spec.runtime.name",
            f"unknown runtime {runtime_name!r}; use one of {', '.join(runtimes.RUNTIMES)}",
        )
    _check(md, runtime)
    template = _pod_template(md, runtime, images, locked_down=locked_down)
    _gate(template, spec)
    digest = spec_hash(template)
    # Each pod says which revision it runs (after hashing, so the hash stays its own).
    template["metadata"]["labels"][c.LABEL_SPEC_HASH] = digest
    labels = labels_for(md)
    annotations = {c.ANNOTATION_SPEC_HASH: digest}
    revision = (md["metadata"].get("annotations") or {}).get(c.ANNOTATION_REVISION)
    if revision:
        annotations[c.ANNOTATION_REVISION] = revision
    rollout = spec.get("rollout") or {}
    rollback = spec.get("rollback") or {}
    deployment_spec: Manifest = {
        "selector": {"matchLabels": selector_for(md)},
        "progressDeadlineSeconds": int(rollout.get("progressDeadlineSeconds", 600)),
        "revisionHistoryLimit": int(rollback.get("historyLimit", 10)),
        "strategy": {
            "type": "RollingUpdate",
            # Never below the wanted capacity while a new version comes up.
            "rollingUpdate": {
                "maxSurge": rollout.get("maxSurge", "25%"),
                "maxUnavailable": rollout.get("maxUnavailable", 0),
            },
        },
        "template": template,
    }
    autoscaling = spec.get("autoscaling")
    if autoscaling is None:  # else the autoscaler owns replicas; we never write them
        deployment_spec["replicas"] = int(spec.get("replicas", DEFAULT_REPLICAS))
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(md, labels, annotations),
        "spec": deployment_spec,
    }
    port = int(spec["runtime"].get("port") or runtime.port)
    # The model's version labels the Deployment and its pods, which a new version
    # rewrites anyway; on the Service and the autoscaler it would cost a write per
    # version bump for a label nothing selects on.
    steady = {k: v for k, v in labels.items() if k != c.LABEL_MODEL_VERSION}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(md, steady, {}),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_for(md),
            "ports": [
                {"name": PORT_NAME, "port": port, "targetPort": PORT_NAME, "protocol": "TCP"}
            ],
        },
    }
    autoscaler = None
    if autoscaling is not None:
        autoscaler = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": _metadata(md, steady, {}),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": int(autoscaling.get("minReplicas", 1)),
                "maxReplicas": int(autoscaling["maxReplicas"]),
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": int(
                                    autoscaling.get("targetCPUUtilization", 80)
                                ),
                            },
                        },
                    }
                ],
            },
        }
    endpoint = f"http://{name}.{namespace}.svc.cluster.local:{port}"
    return Rendered(deployment, service, autoscaler, digest, endpoint)
