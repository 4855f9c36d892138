"""The ModelDeployment resource, typed: spec and status as dataclasses with the CRD's
defaults (crds/modeldeployment.yaml; tests/unit/api/test_typed_defaults.py checks they
agree), read once from the object's JSON by `parse`."""

from __future__ import annotations

from dataclasses import dataclass, field

from modelsync.api import fields as f
from modelsync.api.fields import Object, StatusCondition


@dataclass(frozen=True)
class Model:
    name: str
    version: str
    uri: str
    format: str | None = None
    storage_secret_ref: str | None = None


@dataclass(frozen=True)
class RuntimeSpec:
    """spec.runtime: a built-in serving runtime by name, or `custom` with an image."""

    name: str
    image: str | None = None
    port: int | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    readiness_path: str | None = None


@dataclass(frozen=True)
class Autoscaling:
    max_replicas: int
    min_replicas: int = 1
    target_cpu_utilization: int = 80


@dataclass(frozen=True)
class Resources:
    requests: dict[str, int | str] = field(default_factory=dict)
    limits: dict[str, int | str] = field(default_factory=dict)
    gpus: int | None = None


@dataclass(frozen=True)
class Toleration:
    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = None


@dataclass(frozen=True)
class PodMetadata:
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CanaryStep:
    weight: int
    pause_seconds: int = 0


@dataclass(frozen=True)
class AnalysisQuery:
    """One of spec.rollout.analysis.queries (or its one `query`, named "query")."""

    name: str
    query: str
    threshold: float
    comparison: str = "LessThan"


@dataclass(frozen=True)
class Analysis:
    prometheus_url: str
    query: str = ""
    threshold: float = 0.0
    inconclusive: str = "Hold"
    comparison: str = "LessThan"
    interval_seconds: int = 30
    failure_limit: int = 1
    queries: tuple[AnalysisQuery, ...] = ()
    headers_secret: str | None = None
    post_promotion_seconds: int = 0

    def all_queries(self) -> tuple[AnalysisQuery, ...]:
        """Every query judged: `queries`, or the one `query` with its threshold."""
        if self.queries:
            return self.queries
        return (AnalysisQuery("query", self.query, self.threshold, self.comparison),)


@dataclass(frozen=True)
class Rollout:
    strategy: str = "RollingUpdate"
    progress_deadline_seconds: int = 600
    max_surge: int | str | None = None
    max_unavailable: int | str | None = None
    steps: tuple[CanaryStep, ...] = ()
    analysis: Analysis | None = None


@dataclass(frozen=True)
class Rollback:
    automatic: bool = True
    history_limit: int = 10
    max_restarts: int = 3


@dataclass(frozen=True)
class JsonCheck:
    """One value the answer must hold: `equals` at `path`, within `tolerance` if a number."""

    path: str
    equals: object
    tolerance: float | None = None


@dataclass(frozen=True)
class Expect:
    status: int = 200
    max_latency_milliseconds: int | None = None
    json: tuple[JsonCheck, ...] = ()


@dataclass(frozen=True)
class Sample:
    """One request of spec.validation, and what its answer must be."""

    name: str
    path: str
    method: str = "POST"
    body: object = None  # any JSON value; None sends no body
    expect: Expect = field(default_factory=Expect)


@dataclass(frozen=True)
class Validation:
    """spec.validation: the samples each new pod must answer before it takes traffic."""

    samples: tuple[Sample, ...]
    min_passing: int | None = None  # None: every sample
    timeout_seconds: int = 10

    @property
    def required(self) -> int:
        return len(self.samples) if self.min_passing is None else self.min_passing


@dataclass(frozen=True)
class ModelDeploymentSpec:
    model: Model
    runtime: RuntimeSpec
    replicas: int | None = None
    autoscaling: Autoscaling | None = None
    resources: Resources = field(default_factory=Resources)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    affinity: Object | None = None  # passed on to the pods as it is
    priority_class_name: str | None = None
    pod_metadata: PodMetadata = field(default_factory=PodMetadata)
    rollout: Rollout = field(default_factory=Rollout)
    rollback: Rollback = field(default_factory=Rollback)
    validation: Validation | None = None


@dataclass(frozen=True)
class CanaryState:
    """status.canary: where a canary rollout stands."""

    spec_hash: str = ""
    step: int = 0
    weight: int = 0
    step_started_at: str = ""
    failures: int = 0
    last_analysis: str = ""


@dataclass(frozen=True)
class PostPromotion:
    """status.postPromotion: the watch after a promotion, and what a failure restores."""

    spec_hash: str = ""
    started_at: str = ""
    checks: int = 0
    failures: int = 0
    last_analysis: str = ""
    last_check_at: str = ""
    previous_spec: Object | None = None
    previous_spec_hash: str = ""
    previous_revision: str = ""


@dataclass(frozen=True)
class RolloutRecord:
    """One of status.history."""

    revision: str = ""
    model_version: str = ""
    spec_hash: str = ""
    time: str = ""
    result: str = ""
    message: str = ""


@dataclass(frozen=True)
class ModelDeploymentStatus:
    observed_generation: int | None = None
    conditions: tuple[StatusCondition, ...] = ()
    spec_hash: str = ""
    current_revision: str = ""
    stable_spec_hash: str = ""
    stable_spec: Object | None = None  # the last healthy spec, as it was
    failed_git_revision: str = ""
    model_version: str = ""
    endpoint: str = ""
    replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    canary: CanaryState | None = None
    post_promotion: PostPromotion | None = None
    history: tuple[RolloutRecord, ...] = ()


@dataclass(frozen=True)
class ModelDeployment:
    namespace: str
    name: str
    generation: int
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus


def _model(data: Object, path: str) -> Model:
    secret = f.opt_obj(data, "storageSecretRef", path)
    return Model(
        name=f.string(data, "name", path),
        version=f.string(data, "version", path),
        uri=f.string(data, "uri", path),
        format=f.opt_string(data, "format", path),
        storage_secret_ref=f.string(secret, "name", path) if secret else None,
    )


def _runtime(data: Object, path: str) -> RuntimeSpec:
    return RuntimeSpec(
        name=f.string(data, "name", path),
        image=f.opt_string(data, "image", path),
        port=f.opt_integer(data, "port", path),
        args=f.strings(data, "args", path),
        env=tuple(
            (f.string(item, "name", f"{path}.env"), f.string(item, "value", f"{path}.env"))
            for item in f.objects(data, "env", path)
        ),
        readiness_path=f.opt_string(data, "readinessPath", path),
    )


def _autoscaling(data: Object | None, path: str) -> Autoscaling | None:
    if data is None:
        return None
    return Autoscaling(
        max_replicas=f.integer(data, "maxReplicas", path),
        min_replicas=f.integer(data, "minReplicas", path, Autoscaling.min_replicas),
        target_cpu_utilization=f.integer(
            data, "targetCPUUtilization", path, Autoscaling.target_cpu_utilization
        ),
    )


def _analysis(data: Object | None, path: str) -> Analysis | None:
    if data is None:
        return None
    secret = f.opt_obj(data, "headersSecretRef", path)
    return Analysis(
        prometheus_url=f.string(data, "prometheusURL", path),
        query=f.string(data, "query", path, Analysis.query),
        threshold=f.number(data, "threshold", path, Analysis.threshold),
        inconclusive=f.string(data, "inconclusive", path, Analysis.inconclusive),
        comparison=f.string(data, "comparison", path, Analysis.comparison),
        interval_seconds=f.integer(data, "intervalSeconds", path, Analysis.interval_seconds),
        failure_limit=f.integer(data, "failureLimit", path, Analysis.failure_limit),
        queries=tuple(
            AnalysisQuery(
                name=f.string(item, "name", f"{path}.queries"),
                query=f.string(item, "query", f"{path}.queries"),
                threshold=f.number(item, "threshold", f"{path}.queries"),
                comparison=f.string(
                    item, "comparison", f"{path}.queries", AnalysisQuery.comparison
                ),
            )
            for item in f.objects(data, "queries", path)
        ),
        headers_secret=f.string(secret, "name", f"{path}.headersSecretRef") if secret else None,
        post_promotion_seconds=f.integer(
            data, "postPromotionSeconds", path, Analysis.post_promotion_seconds
        ),
    )


def _rollout(data: Object, path: str) -> Rollout:
    return Rollout(
        strategy=f.string(data, "strategy", path, Rollout.strategy),
        progress_deadline_seconds=f.integer(
            data, "progressDeadlineSeconds", path, Rollout.progress_deadline_seconds
        ),
        max_surge=f.int_or_string(data, "maxSurge", path),
        max_unavailable=f.int_or_string(data, "maxUnavailable", path),
        steps=tuple(
            CanaryStep(
                weight=f.integer(step, "weight", f"{path}.steps"),
                pause_seconds=f.integer(
                    step, "pauseSeconds", f"{path}.steps", CanaryStep.pause_seconds
                ),
            )
            for step in f.objects(data, "steps", path)
        ),
        analysis=_analysis(f.opt_obj(data, "analysis", path), f"{path}.analysis"),
    )


def _rollback(data: Object, path: str) -> Rollback:
    return Rollback(
        automatic=f.boolean(data, "automatic", path, Rollback.automatic),
        history_limit=f.integer(data, "historyLimit", path, Rollback.history_limit),
        max_restarts=f.integer(data, "maxRestarts", path, Rollback.max_restarts),
    )


def _expect(data: Object, path: str) -> Expect:
    return Expect(
        status=f.integer(data, "status", path, Expect.status),
        max_latency_milliseconds=f.opt_integer(data, "maxLatencyMilliseconds", path),
        json=tuple(
            JsonCheck(
                path=f.string(check, "path", f"{path}.json"),
                equals=check.get("equals"),
                tolerance=(
                    f.number(check, "tolerance", f"{path}.json")
                    if check.get("tolerance") is not None
                    else None
                ),
            )
            for check in f.objects(data, "json", path)
        ),
    )


def _validation(data: Object | None, path: str) -> Validation | None:
    if data is None:
        return None
    return Validation(
        samples=tuple(
            Sample(
                name=f.string(sample, "name", f"{path}.samples"),
                path=f.string(sample, "path", f"{path}.samples"),
                method=f.string(sample, "method", f"{path}.samples", Sample.method),
                body=sample.get("body"),
                expect=_expect(
                    f.obj(sample, "expect", f"{path}.samples"), f"{path}.samples.expect"
                ),
            )
            for sample in f.objects(data, "samples", path)
        ),
        min_passing=f.opt_integer(data, "minPassing", path),
        timeout_seconds=f.integer(data, "timeoutSeconds", path, Validation.timeout_seconds),
    )


def parse_spec(data: Object, path: str = "spec") -> ModelDeploymentSpec:
    resources = f.obj(data, "resources", path)
    pod_metadata = f.obj(data, "podMetadata", path)
    return ModelDeploymentSpec(
        model=_model(f.obj(data, "model", path), f"{path}.model"),
        runtime=_runtime(f.obj(data, "runtime", path), f"{path}.runtime"),
        replicas=f.opt_integer(data, "replicas", path),
        autoscaling=_autoscaling(f.opt_obj(data, "autoscaling", path), f"{path}.autoscaling"),
        resources=Resources(
            requests=f.quantities(resources, "requests", f"{path}.resources"),
            limits=f.quantities(resources, "limits", f"{path}.resources"),
            gpus=f.opt_integer(resources, "gpus", f"{path}.resources"),
        ),
        node_selector=f.string_map(data, "nodeSelector", path),
        tolerations=tuple(
            Toleration(
                key=f.opt_string(item, "key", f"{path}.tolerations"),
                operator=f.opt_string(item, "operator", f"{path}.tolerations"),
                value=f.opt_string(item, "value", f"{path}.tolerations"),
                effect=f.opt_string(item, "effect", f"{path}.tolerations"),
                toleration_seconds=f.opt_integer(item, "tolerationSeconds", f"{path}.tolerations"),
            )
            for item in f.objects(data, "tolerations", path)
        ),
        affinity=f.opt_obj(data, "affinity", path),
        priority_class_name=f.opt_string(data, "priorityClassName", path),
        pod_metadata=PodMetadata(
            labels=f.string_map(pod_metadata, "labels", f"{path}.podMetadata"),
            annotations=f.string_map(pod_metadata, "annotations", f"{path}.podMetadata"),
        ),
        rollout=_rollout(f.obj(data, "rollout", path), f"{path}.rollout"),
        rollback=_rollback(f.obj(data, "rollback", path), f"{path}.rollback"),
        validation=_validation(f.opt_obj(data, "validation", path), f"{path}.validation"),
    )


def _canary(data: Object | None, path: str) -> CanaryState | None:
    if data is None:
        return None
    return CanaryState(
        spec_hash=f.string(data, "specHash", path),
        step=f.integer(data, "step", path),
        weight=f.integer(data, "weight", path),
        step_started_at=f.string(data, "stepStartedAt", path),
        failures=f.integer(data, "failures", path),
        last_analysis=f.string(data, "lastAnalysis", path),
    )


def _post_promotion(data: Object | None, path: str) -> PostPromotion | None:
    if data is None:
        return None
    return PostPromotion(
        spec_hash=f.string(data, "specHash", path),
        started_at=f.string(data, "startedAt", path),
        checks=f.integer(data, "checks", path, 0),
        failures=f.integer(data, "failures", path, 0),
        last_analysis=f.string(data, "lastAnalysis", path),
        last_check_at=f.string(data, "lastCheckAt", path),
        previous_spec=f.opt_obj(data, "previousSpec", path),
        previous_spec_hash=f.string(data, "previousSpecHash", path),
        previous_revision=f.string(data, "previousRevision", path),
    )


def parse_status(data: Object, path: str = "status") -> ModelDeploymentStatus:
    return ModelDeploymentStatus(
        observed_generation=f.opt_integer(data, "observedGeneration", path),
        conditions=f.conditions(data, path),
        spec_hash=f.string(data, "specHash", path),
        current_revision=f.string(data, "currentRevision", path),
        stable_spec_hash=f.string(data, "stableSpecHash", path),
        stable_spec=f.opt_obj(data, "stableSpec", path),
        failed_git_revision=f.string(data, "failedGitRevision", path),
        model_version=f.string(data, "modelVersion", path),
        endpoint=f.string(data, "endpoint", path),
        replicas=f.integer(data, "replicas", path),
        ready_replicas=f.integer(data, "readyReplicas", path),
        updated_replicas=f.integer(data, "updatedReplicas", path),
        canary=_canary(f.opt_obj(data, "canary", path), f"{path}.canary"),
        post_promotion=_post_promotion(
            f.opt_obj(data, "postPromotion", path), f"{path}.postPromotion"
        ),
        history=tuple(
            RolloutRecord(
                revision=f.string(entry, "revision", f"{path}.history"),
                model_version=f.string(entry, "modelVersion", f"{path}.history"),
                spec_hash=f.string(entry, "specHash", f"{path}.history"),
                time=f.string(entry, "time", f"{path}.history"),
                result=f.string(entry, "result", f"{path}.history"),
                message=f.string(entry, "message", f"{path}.history"),
            )
            for entry in f.objects(data, "history", path)
        ),
    )


def parse(resource: Object) -> ModelDeployment:
    """A ModelDeployment as the API server returns it (plain JSON)."""
    meta = f.obj(resource, "metadata", "")
    return ModelDeployment(
        namespace=f.string(meta, "namespace", "metadata"),
        name=f.string(meta, "name", "metadata"),
        generation=f.integer(meta, "generation", "metadata"),
        spec=parse_spec(f.obj(resource, "spec", "")),
        status=parse_status(f.obj(resource, "status", "")),
    )
