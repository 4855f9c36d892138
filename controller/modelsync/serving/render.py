"""Serve, step one: a ModelDeployment's spec becomes its serving objects.

Pure functions of plain data. `render` takes the ModelDeployment as the API
server returns it (a dict, schema defaults applied), reads its spec once into the
typed view (api/modeldeployment.py), and returns the Deployment, Service and, with
autoscaling, HorizontalPodAutoscaler to apply — or raises `InvalidSpecError` naming
the field, for what the CRD's schema cannot check.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from modelsync.api import constants as c
from modelsync.api import modeldeployment
from modelsync.api.manifest import JsonValue, Manifest, child, get, json_value, mapping, text
from modelsync.api.manifest import labels as string_map
from modelsync.api.modeldeployment import ModelDeploymentSpec
from modelsync.serving import runtimes, validation
from modelsync.serving.runtimes import MODEL_DIR, Runtime

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
    port: int  # the Service's (and the server's) port

    @property
    def objects(self) -> list[Manifest]:
        """In apply order: the Service first, so the endpoint exists when pods do."""
        found = [self.service, self.deployment]
        if self.autoscaler is not None:
            found.append(self.autoscaler)
        return found


def spec_hash(pod_template: object) -> str:
    """A digest of the pod template: equal for equal templates whatever their key order,
    different whenever a pod would have to be replaced."""
    canonical = json.dumps(pod_template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def parse_quantity(field: str, value: object) -> Decimal:
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
    """A template of the runtime table (ours, never a tenant's) with `values` filled in."""
    return template.format(**values)


MODEL_PLACEHOLDER = "{model}"


def model_path(path: str, model: str) -> str:
    """A tenant's readinessPath with `{model}` replaced, and nothing else read as a
    template: str.format would take `/{model:>900000000}` for a 900 MB string (the
    CRD's pattern refuses it; an object stored before that pattern reaches here)."""
    if "{" in path.replace(MODEL_PLACEHOLDER, "") or "}" in path.replace(MODEL_PLACEHOLDER, ""):
        raise InvalidSpecError(
            "spec.runtime.readinessPath",
            f"{path[:80]!r}: the only placeholder is {MODEL_PLACEHOLDER} (the model's name); "
            "remove any other brace",
        )
    return path.replace(MODEL_PLACEHOLDER, model)


@dataclass(frozen=True)
class _Source:
    """The ModelDeployment as render reads it: its metadata and its typed spec, parsed
    once; `raw` is the spec's JSON, for what passes to the pods as it is."""

    name: str
    namespace: str
    uid: str
    labels: dict[str, str]
    annotations: dict[str, str]
    spec: ModelDeploymentSpec
    raw: Mapping[str, JsonValue]


def _source(md: Mapping[str, object]) -> _Source:
    raw = mapping(md, "spec")
    return _Source(
        name=text(md, "metadata", "name"),
        namespace=text(md, "metadata", "namespace"),
        uid=text(md, "metadata", "uid"),
        labels=string_map(md, "metadata", "labels"),
        annotations=string_map(md, "metadata", "annotations"),
        spec=modeldeployment.parse_spec(raw),
        raw=raw,
    )


def _labels(md: _Source) -> dict[str, str]:
    model = md.spec.model
    labels = {
        c.LABEL_NAME: model.name,
        c.LABEL_INSTANCE: md.name,
        c.LABEL_COMPONENT: "model-server",
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_MODEL: model.name,
        c.LABEL_MODEL_VERSION: model.version,
        c.LABEL_DEPLOYMENT: md.name,
    }
    # The shard that serves the model watches its objects (and pods) by this label.
    shard = md.labels.get(c.LABEL_SHARD)
    if shard:
        labels[c.LABEL_SHARD] = shard
    return labels


def _selector(name: str) -> dict[str, str]:
    """Stable for the life of the ModelDeployment: a Deployment's selector is immutable."""
    return {c.LABEL_INSTANCE: name, c.LABEL_DEPLOYMENT: name}


def _owner(md: _Source) -> Manifest:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.MODELDEPLOYMENT_KIND,
        "name": md.name,
        "uid": md.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(md: _Source, labels: dict[str, str], annotations: dict[str, str]) -> Manifest:
    meta: Manifest = {
        "name": md.name,
        "namespace": md.namespace,
        "labels": dict(labels),
        "ownerReferences": [_owner(md)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def _resources(spec: ModelDeploymentSpec) -> Manifest:
    wanted = spec.resources
    requests: Manifest = {k: str(v) for k, v in wanted.requests.items()}
    limits: Manifest = {k: str(v) for k, v in wanted.limits.items()}
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
    gpus = wanted.gpus or 0
    if gpus:
        requests[GPU_RESOURCE] = str(gpus)
        limits[GPU_RESOURCE] = str(gpus)
    result: Manifest = {}
    if requests:
        result["requests"] = requests
    if limits:
        result["limits"] = limits
    return result


def _probe(probe: runtimes.Probe, path: str) -> Manifest:
    return {
        "httpGet": {"path": path, "port": PORT_NAME},
        "initialDelaySeconds": probe.initial_delay_seconds,
        "periodSeconds": probe.period_seconds,
        "failureThreshold": probe.failure_threshold,
    }


def _model_source(md: _Source, images: Images) -> tuple[list[JsonValue], list[JsonValue], Manifest]:
    """Init containers, volumes, and the server's volume mount that bring the model
    to MODEL_DIR, chosen by the URI's scheme."""
    model = md.spec.model
    uri = model.uri
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
        if model.storage_secret_ref:
            initializer["envFrom"] = [{"secretRef": {"name": model.storage_secret_ref}}]
        return [initializer], [{"name": MODEL_VOLUME, "emptyDir": {}}], mount
    if scheme == runtimes.SCHEME_PVC:
        claim, _, sub_path = rest.partition("/")
        if sub_path.strip("/"):
            mount["subPath"] = sub_path.strip("/")
        volume: Manifest = {
            "name": MODEL_VOLUME,
            "persistentVolumeClaim": {"claimName": claim, "readOnly": True},
        }
        return [], [volume], mount
    if scheme == runtimes.SCHEME_OCI:
        volume = {"name": MODEL_VOLUME, "image": {"reference": rest, "pullPolicy": "IfNotPresent"}}
        return [], [volume], mount
    raise InvalidSpecError("spec.model.uri", f"unsupported scheme {scheme}:// in {uri!r}")


def _server_container(
    md: _Source, runtime: Runtime, mount: Manifest, images: Images, *, locked_down: bool
) -> Manifest:
    spec = md.spec
    wanted = spec.runtime
    port = wanted.port or runtime.port
    values = {
        "model": spec.model.name,
        "model_dir": MODEL_DIR,
        "port": str(port),
        "scratch": runtimes.SCRATCH_DIR,
    }
    env = _server_env(spec, runtime, values, locked_down=locked_down)
    container: Manifest = {
        "name": SERVER_CONTAINER,
        "image": images.server(runtime, wanted.image),
        "ports": [{"name": PORT_NAME, "containerPort": port, "protocol": "TCP"}],
    }
    if images.pull_policy:
        container["imagePullPolicy"] = images.pull_policy
    if runtime.command:
        container["command"] = [_fill(part, values) for part in runtime.command]
    args: list[JsonValue] = [_fill(part, values) for part in runtime.args]
    args += wanted.args
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
    spec: ModelDeploymentSpec, runtime: Runtime, values: dict[str, str], *, locked_down: bool
) -> dict[str, str]:
    """The runtime's env, its model format's, then the ModelDeployment's own."""
    env = {name: _fill(value, values) for name, value in runtime.env}
    for name, value in runtime.format_env.get(spec.model.format or "", ()):
        env[name] = _fill(value, values)
    if locked_down:
        env["HOME"] = runtimes.SCRATCH_DIR
    for name, value in spec.runtime.env:
        env[name] = value
    return env


def _probes(
    runtime: Runtime, wanted: modeldeployment.RuntimeSpec, values: dict[str, str]
) -> Manifest:
    """Readiness (the runtime's, else the spec's path, else the port) and liveness."""
    probes: Manifest = {}
    if runtime.readiness is not None:
        probes["readinessProbe"] = _probe(runtime.readiness, _fill(runtime.readiness.path, values))
    elif wanted.readiness_path:
        path = model_path(wanted.readiness_path, values["model"])
        probes["readinessProbe"] = _probe(runtimes.Probe(path), path)
    else:
        probes["readinessProbe"] = {"tcpSocket": {"port": PORT_NAME}, "periodSeconds": 10}
    if runtime.liveness is not None:
        probes["livenessProbe"] = _probe(runtime.liveness, _fill(runtime.liveness.path, values))
    return probes


def _lock_down(pod: Manifest, containers: list[Manifest]) -> None:
    """Every container non-root, unprivileged, on a read-only root filesystem with a
    scratch emptyDir at SCRATCH_DIR; relaxed only by the platform's setting."""
    pod["securityContext"] = copy.deepcopy(LOCKED_DOWN_POD)
    _append(
        pod, "volumes", {"name": SCRATCH_VOLUME, "emptyDir": {"sizeLimit": runtimes.SCRATCH_LIMIT}}
    )
    for container in containers:
        container["securityContext"] = copy.deepcopy(LOCKED_DOWN_CONTAINER)
        _append(
            container, "volumeMounts", {"name": SCRATCH_VOLUME, "mountPath": runtimes.SCRATCH_DIR}
        )


def _append(obj: Manifest, key: str, item: JsonValue) -> None:
    """`item` at the end of the list at `key` (a new list where there is none)."""
    found = obj.get(key)
    if isinstance(found, list):
        found.append(item)
    else:
        obj[key] = [item]


def _pod_template(md: _Source, runtime: Runtime, images: Images, *, locked_down: bool) -> Manifest:
    spec = md.spec
    init_containers, volumes, mount = _model_source(md, images)
    server = _server_container(md, runtime, mount, images, locked_down=locked_down)
    pod: Manifest = {
        "containers": [server],
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
        initializers = [item for item in init_containers if isinstance(item, dict)]
        _lock_down(pod, [server, *initializers])
    # Passed on to the pods as they are in the spec.
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        if md.raw.get(key):
            pod[key] = json_value(md.raw[key])
    extra = spec.pod_metadata
    metadata: Manifest = {"labels": {**extra.labels, **_labels(md)}}
    if extra.annotations:
        metadata["annotations"] = dict(extra.annotations)
    return {"metadata": metadata, "spec": pod}


def _check(md: _Source, runtime: Runtime) -> None:
    spec = md.spec
    scheme = spec.model.uri.partition("://")[0]
    if scheme not in runtime.schemes:  # the CRD says so too; an old CRD might not
        raise InvalidSpecError(
            "spec.model.uri",
            f"runtime {runtime.name} cannot load {scheme}:// models; it loads "
            + ", ".join(f"{s}://" for s in sorted(runtime.schemes)),
        )
    model_format = spec.model.format
    if model_format and runtime.formats and model_format not in runtime.formats:
        raise InvalidSpecError(  # the CRD says so too; an old CRD might not
            "spec.model.format",
            f"runtime {runtime.name} cannot serve {model_format!r} models; it serves "
            f"{', '.join(runtime.formats)} (or use runtime custom with an image that can)",
        )
    if runtime.name == runtimes.CUSTOM and not spec.runtime.image:
        raise InvalidSpecError("spec.runtime.image", "a custom runtime needs an image")
    _check_validation(spec, runtime)
    if spec.autoscaling is not None and "cpu" not in spec.resources.requests:
        raise InvalidSpecError(
            "spec.resources.requests.cpu",
            "autoscaling on CPU utilization needs a CPU request to measure against; "
            "set spec.resources.requests.cpu",
        )


def _check_validation(spec: ModelDeploymentSpec, runtime: Runtime) -> None:
    """spec.validation must be able to pass: first of `validation.problems`."""
    if spec.validation is None:
        return
    speaks_http = runtime.readiness is not None or bool(spec.runtime.readiness_path)
    found = validation.problems(spec.validation, speaks_http)
    if found:
        raise InvalidSpecError(*found[0])


def _gate(template: Manifest, md: _Source) -> None:
    """With spec.validation, new pods stay out of their Service until the operator has
    validated them; the samples' digest makes new samples a new revision (a version
    quarantined for failing them is tried again once they change)."""
    if not md.raw.get("validation"):
        return
    child(template, "spec")["readinessGates"] = [{"conditionType": c.CONDITION_VALIDATED}]
    annotations = child(template, "metadata", "annotations")
    annotations[c.ANNOTATION_VALIDATION] = spec_hash(md.raw["validation"])


def render(
    md: Mapping[str, object], *, locked_down: bool = True, images: Images = DEFAULT_IMAGES
) -> Rendered:
    """The serving objects of one ModelDeployment (as read from the API server).
    `locked_down` is the platform's `model_pod_security` setting: False leaves the pod's
    user, capabilities and root filesystem as the image has them. `images` are the
    installation's runtime images and pull policy (`modelsync validate`/`diff` use
    the defaults). Raises InvalidSpecError and nothing else: whatever one object holds
    is that object's finding, never the end of a sync or a reconcile loop."""
    try:
        return _render(md, locked_down=locked_down, images=images)
    except InvalidSpecError:
        raise
    except Exception as error:  # one object's fault stays its own finding
        raise InvalidSpecError(
            "spec",
            f"cannot be rendered ({type(error).__name__}: {str(error)[:200]}); check the "
            "spec against the CRD (an object stored under an older CRD may break newer rules)",
        ) from error


def _render(md: Mapping[str, object], *, locked_down: bool, images: Images) -> Rendered:
    runtime_name = text(md, "spec", "runtime", "name")
    runtime = runtimes.RUNTIMES.get(runtime_name)
    if runtime is None:
        raise InvalidSpecError(
            "spec.runtime.name",
            f"unknown runtime {get(md, 'spec', 'runtime', 'name')!r}; "
            f"use one of {', '.join(runtimes.RUNTIMES)}",
        )
    source = _source(md)
    spec = source.spec
    _check(source, runtime)
    template = _pod_template(source, runtime, images, locked_down=locked_down)
    _gate(template, source)
    digest = spec_hash(template)
    # Each pod says which revision it runs (after hashing, so the hash stays its own).
    child(template, "metadata", "labels")[c.LABEL_SPEC_HASH] = digest
    labels = _labels(source)
    annotations = {c.ANNOTATION_SPEC_HASH: digest}
    revision = source.annotations.get(c.ANNOTATION_REVISION)
    if revision:
        annotations[c.ANNOTATION_REVISION] = revision
    rollout = spec.rollout
    deployment_spec: Manifest = {
        "selector": {"matchLabels": {**_selector(source.name)}},
        "progressDeadlineSeconds": rollout.progress_deadline_seconds,
        "revisionHistoryLimit": spec.rollback.history_limit,
        "strategy": {
            "type": "RollingUpdate",
            # Never below the wanted capacity while a new version comes up.
            "rollingUpdate": {
                "maxSurge": "25%" if rollout.max_surge is None else rollout.max_surge,
                "maxUnavailable": 0 if rollout.max_unavailable is None else rollout.max_unavailable,
            },
        },
        "template": template,
    }
    autoscaling = spec.autoscaling
    if autoscaling is None:  # else the autoscaler owns replicas; we never write them
        deployment_spec["replicas"] = DEFAULT_REPLICAS if spec.replicas is None else spec.replicas
    deployment: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(source, labels, annotations),
        "spec": deployment_spec,
    }
    port = spec.runtime.port or runtime.port
    # The model's version labels the Deployment and its pods, which a new version
    # rewrites anyway; on the Service and the autoscaler it would cost a write per
    # version bump for a label nothing selects on.
    steady = {k: v for k, v in labels.items() if k != c.LABEL_MODEL_VERSION}
    service: Manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(source, steady, {}),
        "spec": {
            "type": "ClusterIP",
            "selector": {**_selector(source.name)},
            "ports": [
                {"name": PORT_NAME, "port": port, "targetPort": PORT_NAME, "protocol": "TCP"}
            ],
        },
    }
    autoscaler: Manifest | None = None
    if autoscaling is not None:
        autoscaler = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": _metadata(source, steady, {}),
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": source.name,
                },
                "minReplicas": autoscaling.min_replicas,
                "maxReplicas": autoscaling.max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": autoscaling.target_cpu_utilization,
                            },
                        },
                    }
                ],
            },
        }
    endpoint = f"http://{source.name}.{source.namespace}.svc.cluster.local:{port}"
    return Rendered(deployment, service, autoscaler, digest, endpoint, port)
