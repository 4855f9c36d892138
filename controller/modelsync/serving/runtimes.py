"""The serving runtimes modelsync knows, as data.

A runtime is a template: which image serves the model, on which port, with
which arguments, how Kubernetes checks it, and which storage schemes it can
load a model from. Rendering (`render.py`) reads this table and nothing else
about runtimes; the CRD's enum and scheme rule are checked against it by a
unit test, so the schema and the code cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

# Where every runtime finds the model inside its container.
MODEL_DIR: Final = "/mnt/models"

# How a model reaches the server, by URI scheme.
SCHEME_S3: Final = "s3"
SCHEME_GS: Final = "gs"
SCHEME_HTTPS: Final = "https"
SCHEME_PVC: Final = "pvc"
SCHEME_OCI: Final = "oci"
DOWNLOADED_SCHEMES: Final = frozenset({SCHEME_S3, SCHEME_GS, SCHEME_HTTPS})
ALL_SCHEMES: Final = (SCHEME_S3, SCHEME_GS, SCHEME_HTTPS, SCHEME_PVC, SCHEME_OCI)

# The init container that downloads s3://, gs:// and https:// models into MODEL_DIR.
STORAGE_INITIALIZER_IMAGE: Final = "docker.io/kserve/storage-initializer:v0.14.1"

CUSTOM: Final = "custom"

# Locked-down pods (the default; a platform setting relaxes it) run every container as
# this user: not root, a number (runAsNonRoot cannot check a user name), and the uid
# the upstream MLServer, TorchServe and Triton images create for their server.
SERVER_UID: Final = 1000
# The root filesystem is read-only; servers write here (an emptyDir of each pod), and
# it is HOME, since uid 1000 may have no home in the image.
SCRATCH_DIR: Final = "/tmp"  # noqa: S108 - an emptyDir of the pod, not a shared /tmp
SCRATCH_LIMIT: Final = "1Gi"

# When a pod is deleted, the kubelet's SIGTERM and the removal of the pod from its
# Service's endpoints happen at the same time; kube-proxy, ingresses and clients keep
# sending to the pod until they have seen the removal. The server waits this long
# before it is told to stop (a preStop sleep, so the image needs no shell), and no
# request is sent to a server that has stopped listening.
PRESTOP_DRAIN_SECONDS: Final = 10
# After SIGTERM, the time a server gets to finish the requests it holds.
SHUTDOWN_SECONDS: Final = 30
# The pod's whole grace period includes its preStop hook.
TERMINATION_GRACE_SECONDS: Final = PRESTOP_DRAIN_SECONDS + SHUTDOWN_SECONDS


@dataclass(frozen=True)
class Probe:
    """An HTTP GET probe; `path` may use {model} for the model name."""

    path: str
    initial_delay_seconds: int = 5
    period_seconds: int = 10
    failure_threshold: int = 3


@dataclass(frozen=True)
class Runtime:
    name: str
    description: str
    image: str
    port: int
    # Arguments and environment may use {model} (model name), {model_dir}, {port},
    # {scratch} (a writable directory).
    args: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    readiness: Probe | None = None
    liveness: Probe | None = None
    schemes: frozenset[str] = field(default_factory=lambda: frozenset(ALL_SCHEMES))
    # Model formats it serves; empty: any (the custom runtime). A format outside the list
    # is refused (render and the CRD's rule); the field itself stays optional.
    formats: tuple[str, ...] = ()
    # Environment that depends on the format (MLServer's implementation class).
    format_env: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)


RUNTIMES: Final[dict[str, Runtime]] = {
    runtime.name: runtime
    for runtime in (
        Runtime(
            name="mlserver",
            description="Seldon MLServer (V2 inference protocol): scikit-learn, XGBoost, "
            "LightGBM, MLflow",
            image="docker.io/seldonio/mlserver:1.6.1",
            port=8080,
            command=("mlserver", "start", "{model_dir}"),
            env=(
                ("MLSERVER_MODEL_NAME", "{model}"),
                ("MLSERVER_MODEL_URI", "{model_dir}"),
                ("MLSERVER_HTTP_PORT", "{port}"),
                # It writes its metrics under the working directory (/ by default),
                # which a read-only root filesystem refuses.
                ("MLSERVER_METRICS_DIR", "{scratch}/mlserver-metrics"),
            ),
            # The V2 protocol's model readiness: /v2/health/ready answers 200 while no
            # model is loaded (MLServer 1.7.1 without an implementation does exactly that).
            readiness=Probe("/v2/models/{model}/ready"),
            liveness=Probe("/v2/health/live", initial_delay_seconds=30),
            schemes=frozenset(ALL_SCHEMES),
            formats=("sklearn", "xgboost", "lightgbm", "mlflow"),
            # Without an implementation MLServer loads nothing (unless the model directory
            # holds a model-settings.json that names one).
            format_env={
                "sklearn": (("MLSERVER_MODEL_IMPLEMENTATION", "mlserver_sklearn.SKLearnModel"),),
                "xgboost": (("MLSERVER_MODEL_IMPLEMENTATION", "mlserver_xgboost.XGBoostModel"),),
                "lightgbm": (("MLSERVER_MODEL_IMPLEMENTATION", "mlserver_lightgbm.LightGBMModel"),),
                "mlflow": (("MLSERVER_MODEL_IMPLEMENTATION", "mlserver_mlflow.MLflowRuntime"),),
            },
        ),
        Runtime(
            name="triton",
            description="NVIDIA Triton Inference Server: ONNX, TensorRT, TensorFlow, PyTorch",
            image="nvcr.io/nvidia/tritonserver:24.08-py3",
            port=8000,
            command=("tritonserver",),
            args=("--model-repository={model_dir}", "--http-port={port}", "--strict-readiness"),
            # V2 protocol, the model's own readiness (Triton's HTTP/REST API docs).
            readiness=Probe("/v2/models/{model}/ready"),
            liveness=Probe("/v2/health/live", initial_delay_seconds=30),
            # Triton reads a model repository directory; a single https file is not one.
            schemes=frozenset({SCHEME_S3, SCHEME_GS, SCHEME_PVC, SCHEME_OCI}),
            formats=("onnx", "tensorrt", "tensorflow", "pytorch", "python"),
        ),
        Runtime(
            name="torchserve",
            description="TorchServe: PyTorch model archives (.mar)",
            image="docker.io/pytorch/torchserve:0.12.0-cpu",
            port=8080,
            command=("torchserve",),
            args=(
                "--foreground",
                "--model-store={model_dir}",
                "--models",
                "{model}={model}.mar",
                "--disable-token-auth",
            ),
            # On the inference port no GET names a model without running an inference
            # (GET /predictions/{model} predicts; OPTIONS is not a probe). The model's own
            # status (GET /models/{model}) is on the management port, which listens on
            # localhost only by default and would let whoever reaches the pod scale
            # workers. /ping answers 500 "Unhealthy" once a registered model has fewer
            # live workers than its minWorkers for longer than maxRetryTimeoutInSec (5 min
            # by default) -- but 200 if the model of --models never registered: a gap
            # no probe on this port closes.
            readiness=Probe("/ping"),
            liveness=Probe("/ping", initial_delay_seconds=30),
            schemes=frozenset({SCHEME_S3, SCHEME_GS, SCHEME_HTTPS, SCHEME_PVC}),
            formats=("pytorch",),
        ),
        Runtime(
            name="tfserving",
            description="TensorFlow Serving: SavedModel",
            image="docker.io/tensorflow/serving:2.17.0",
            port=8501,
            args=(
                "--model_name={model}",
                "--model_base_path={model_dir}",
                "--rest_api_port={port}",
            ),
            # The model status API (/v1/models/{model}) answers 200 while the version is
            # LOADING or has failed (the state is in the body); the metadata API answers
            # only from a loaded, AVAILABLE version (404 otherwise).
            readiness=Probe("/v1/models/{model}/metadata"),
            liveness=Probe("/v1/models/{model}", initial_delay_seconds=30),
            schemes=frozenset({SCHEME_S3, SCHEME_GS, SCHEME_PVC, SCHEME_OCI}),
            formats=("tensorflow",),
        ),
        Runtime(
            name="vllm",
            description="vLLM OpenAI-compatible server: large language models",
            image="docker.io/vllm/vllm-openai:v0.6.3",
            port=8000,
            args=("--model={model_dir}", "--served-model-name={model}", "--port={port}"),
            # vLLM starts answering HTTP only once its engine has loaded the one model of
            # --model (named by --served-model-name); /health then answers 503 when the
            # engine has died. /v1/models answers 200 even then.
            readiness=Probe("/health", initial_delay_seconds=30),
            liveness=Probe("/health", initial_delay_seconds=120, period_seconds=20),
            schemes=frozenset({SCHEME_S3, SCHEME_GS, SCHEME_PVC, SCHEME_OCI}),
            formats=("huggingface", "safetensors"),
        ),
        Runtime(
            name=CUSTOM,
            description="Your own server image: set runtime.image, runtime.port and args",
            image="",
            port=8080,
            schemes=frozenset(ALL_SCHEMES),
        ),
    )
}


def runtime_names() -> list[str]:
    return list(RUNTIMES)


def scheme_rule() -> str:
    """The CEL expression (on a ModelDeployment's spec) that admits only URI schemes the
    chosen runtime can load. The CRD carries exactly this text; a unit test checks it."""
    clauses = [
        f"(self.runtime.name == '{runtime.name}' && "
        f"self.model.uri.matches('^({'|'.join(sorted(runtime.schemes))})://'))"
        for runtime in RUNTIMES.values()
    ]
    return " || ".join(clauses)


def format_rule() -> str:
    """The CEL expression that admits only a model format the chosen runtime serves (or
    none: the field is optional). The CRD carries exactly this text; a unit test checks it."""
    clauses = []
    for runtime in RUNTIMES.values():
        if not runtime.formats:
            clauses.append(f"self.runtime.name == '{runtime.name}'")
            continue
        listed = ", ".join(f"'{name}'" for name in runtime.formats)
        clauses.append(
            f"(self.runtime.name == '{runtime.name}' && "
            f"(!has(self.model.format) || self.model.format in [{listed}]))"
        )
    return " || ".join(clauses)


def format_message_expression() -> str:
    """The CEL message for a format the runtime cannot serve: names both and the formats
    that runtime serves."""
    serves = ", ".join(
        f"'{runtime.name}': '{', '.join(runtime.formats)}'"
        for runtime in RUNTIMES.values()
        if runtime.formats
    )
    return (
        "'runtime ' + self.runtime.name + ' cannot serve model format ' + self.model.format"
        f" + '; it serves ' + {{{serves}}}[self.runtime.name]"
    )


def scheme_message_expression() -> str:
    """The CEL message for a URI the runtime cannot load: names the runtime, the URI
    and what that runtime does load."""
    loads = ", ".join(
        f"'{runtime.name}': '{', '.join(f'{scheme}://' for scheme in sorted(runtime.schemes))}'"
        for runtime in RUNTIMES.values()
    )
    return (
        "'runtime ' + self.runtime.name + ' cannot load a model from ' + self.model.uri"
        f" + '; it loads ' + {{{loads}}}[self.runtime.name]"
    )
