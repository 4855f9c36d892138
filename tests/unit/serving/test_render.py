"""Rendering, from YAML fixtures to expected output files.

Each `fixtures/render/<case>.yaml` is a ModelDeployment as the API server returns
it (defaults applied); `<case>.expected.yaml` is what `render` must make of it.
After a deliberate change, rewrite the expected files with
MODELSYNC_UPDATE_GOLDEN=1 and read the diff.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelsync.api import constants as c
from modelsync.serving import render as rendering
from modelsync.serving import runtimes
from modelsync.serving.render import Images, InvalidSpecError, parse_quantity, spec_hash
from tests.support.paths import REPO

FIXTURES = Path(__file__).parent / "fixtures" / "render"
CASES = sorted(p.stem for p in FIXTURES.glob("*.yaml") if not p.stem.endswith(".expected"))


def render(md: dict[str, Any], **options: Any) -> Any:
    """`render`, its objects read as plain JSON: these tests index the shapes they know."""
    return rendering.render(md, **options)


def load(case: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((FIXTURES / f"{case}.yaml").read_text())
    return loaded


def rendered_documents(md: dict[str, Any]) -> dict[str, Any]:
    result = render(md)
    return {
        "specHash": result.spec_hash,
        "endpoint": result.endpoint,
        "objects": result.objects,
    }


@pytest.mark.parametrize("case", CASES)
def test_render_matches_expected_output(case: str) -> None:
    actual = rendered_documents(load(case))
    expected_file = FIXTURES / f"{case}.expected.yaml"
    if os.environ.get("MODELSYNC_UPDATE_GOLDEN"):
        expected_file.write_text(yaml.safe_dump(actual, sort_keys=False))
    assert actual == yaml.safe_load(expected_file.read_text())


def test_every_runtime_and_scheme_has_a_fixture() -> None:
    from modelsync.serving import runtimes

    mds = [load(case) for case in CASES]
    assert {md["spec"]["runtime"]["name"] for md in mds} == set(runtimes.RUNTIMES)
    assert {md["spec"]["model"]["uri"].split("://")[0] for md in mds} == set(runtimes.ALL_SCHEMES)


def test_serving_objects_are_owned_and_labelled() -> None:
    md = load("triton-gs-gpu")
    for obj in render(md).objects:
        meta = obj["metadata"]
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "modelsync.io/v1alpha1",
                "kind": "ModelDeployment",
                "name": "ranker",
                "uid": "2222-bbbb",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["labels"][c.LABEL_MANAGED_BY] == "modelsync"
        assert meta["labels"][c.LABEL_MODEL] == "ranker"
    deployment = render(md).deployment
    # The version labels what a new version rewrites anyway: the Deployment and its
    # pods, not the Service (a write per version bump for a label nothing selects on).
    assert deployment["metadata"]["labels"][c.LABEL_MODEL_VERSION] == "2024-10-01"
    assert deployment["spec"]["template"]["metadata"]["labels"][c.LABEL_MODEL_VERSION] == (
        "2024-10-01"
    )
    assert c.LABEL_MODEL_VERSION not in render(md).service["metadata"]["labels"]
    assert deployment["metadata"]["annotations"][c.ANNOTATION_REVISION].startswith("main@sha1:")
    # The user's pod labels are kept, but never over ours.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["team"] == "search"
    assert labels[c.LABEL_NAME] == "ranker"


def test_autoscaled_deployment_leaves_replicas_to_the_autoscaler() -> None:
    result = render(load("torchserve-https-autoscaling"))
    assert "replicas" not in result.deployment["spec"]
    assert result.autoscaler is not None
    assert result.autoscaler["spec"]["scaleTargetRef"]["name"] == "resnet"
    assert "replicas" in render(load("mlserver-s3")).deployment["spec"]


def test_spec_hash_ignores_key_order() -> None:
    template = render(load("mlserver-s3")).deployment["spec"]["template"]
    reordered = yaml.safe_load(yaml.safe_dump(template, sort_keys=True))
    reversed_keys = {key: reordered[key] for key in reversed(list(reordered))}
    assert spec_hash(reversed_keys) == spec_hash(template)


def mutated(case: str, change: Any) -> dict[str, Any]:
    md = copy.deepcopy(load(case))
    change(md["spec"])
    return md


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s["model"].update(version="1.5.0"),
        lambda s: s["model"].update(uri="s3://models/fraud/1.5.0"),
        lambda s: s["runtime"].update(image="docker.io/seldonio/mlserver:1.7.0"),
        lambda s: s["resources"]["requests"].update(cpu="1"),
        lambda s: s["runtime"].update(env=[{"name": "X", "value": "1"}]),
    ],
    ids=["version", "uri", "image", "cpu", "env"],
)
def test_spec_hash_changes_when_pods_must_change(change: Any) -> None:
    before = render(load("mlserver-s3")).spec_hash
    assert render(mutated("mlserver-s3", change)).spec_hash != before


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.update(replicas=7),
        lambda s: s["rollout"].update(progressDeadlineSeconds=60),
        lambda s: s["rollback"].update(historyLimit=2),
    ],
    ids=["replicas", "deadline", "history"],
)
def test_spec_hash_stays_when_pods_need_not_change(change: Any) -> None:
    before = render(load("mlserver-s3")).spec_hash
    assert render(mutated("mlserver-s3", change)).spec_hash == before


@pytest.mark.parametrize(
    ("case", "change", "field", "words"),
    [
        (
            "torchserve-https-autoscaling",
            lambda s: s["resources"]["requests"].pop("cpu"),
            "spec.resources.requests.cpu",
            "autoscaling on CPU utilization needs a CPU request",
        ),
        (
            "mlserver-s3",
            lambda s: s["resources"]["limits"].update(memory="512Mi"),
            "spec.resources.limits.memory",
            "below the request",
        ),
        (
            "mlserver-s3",
            lambda s: s["resources"]["requests"].update(cpu="lots"),
            "spec.resources.requests.cpu",
            "not a Kubernetes quantity",
        ),
        (
            "triton-gs-gpu",
            lambda s: s["model"].update(uri="https://example.com/model"),
            "spec.model.uri",
            "runtime triton cannot load https:// models",
        ),
        (
            "custom-pvc",
            lambda s: s["runtime"].pop("image"),
            "spec.runtime.image",
            "a custom runtime needs an image",
        ),
        (
            "mlserver-s3",
            lambda s: s["runtime"].update(name="seldon"),
            "spec.runtime.name",
            "unknown runtime 'seldon'",
        ),
    ],
    ids=["hpa-without-cpu", "limit-below-request", "bad-quantity", "scheme", "custom", "runtime"],
)
def test_what_the_schema_cannot_catch_is_an_invalid_spec(
    case: str, change: Any, field: str, words: str
) -> None:
    with pytest.raises(InvalidSpecError) as invalid:
        render(mutated(case, change))
    assert invalid.value.field == field
    assert words in str(invalid.value)


@pytest.mark.parametrize(
    ("text", "value"),
    [("500m", "0.5"), ("2", "2"), ("1Gi", str(2**30)), ("1.5G", "1.5E+9"), ("1e3", "1E+3")],
)
def test_quantities(text: str, value: str) -> None:
    from decimal import Decimal

    assert parse_quantity("f", text) == Decimal(value)


@pytest.mark.parametrize("text", ["lots", "1GB", "", "--1", "1.2.3"])
def test_bad_quantities(text: str) -> None:
    with pytest.raises(InvalidSpecError, match="not a Kubernetes quantity"):
        parse_quantity("spec.resources.requests.memory", text)


# ------------------------------------------------------------------ tenants: pod security


def _pod(md: dict[str, Any], **options: Any) -> dict[str, Any]:
    pod: dict[str, Any] = render(md, **options).deployment["spec"]["template"]["spec"]
    return pod


@pytest.mark.parametrize("case", CASES)
def test_tenant_model_pods_are_locked_down_by_default(case: str) -> None:
    pod = _pod(load(case))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    scratch = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    for container in pod["containers"] + pod.get("initContainers", []):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]
        writable = [
            m["mountPath"]
            for m in container["volumeMounts"]
            if m["name"] in scratch and not m.get("readOnly")
        ]
        assert "/tmp" in writable, container["name"]
    server = pod["containers"][0]
    assert {"name": "HOME", "value": "/tmp"} in server["env"]


@pytest.mark.parametrize("case", CASES)
def test_tenant_pod_security_is_relaxed_only_by_the_platform_setting(case: str) -> None:
    pod = _pod(load(case), locked_down=False)
    assert "securityContext" not in pod
    for container in pod["containers"] + pod.get("initContainers", []):
        assert "securityContext" not in container
    # The restricted pod is another pod: the switch rolls every model.
    assert render(load(case), locked_down=False).spec_hash != render(load(case)).spec_hash


def test_tenant_modeldeployment_schema_has_no_field_that_reaches_pod_security() -> None:
    """Whatever a tenant writes in a ModelDeployment, the pod's user, privileges, host
    namespaces and volumes are the platform's: the CRD has no field for any of them (and
    the API server prunes unknown fields)."""
    crd = yaml.safe_load((REPO / "crds" / "modeldeployment.yaml").read_text())
    forbidden = {
        "securityContext",
        "privileged",
        "capabilities",
        "hostNetwork",
        "hostPID",
        "hostIPC",
        "hostPath",
        "runAsUser",
        "runAsNonRoot",
        "volumes",
        "serviceAccountName",
    }

    def fields(schema: Any) -> set[str]:
        found: set[str] = set()
        if isinstance(schema, dict):
            for key, value in schema.items():
                if key == "properties" and isinstance(value, dict):
                    found |= set(value)
                found |= fields(value)
        elif isinstance(schema, list):
            for item in schema:
                found |= fields(item)
        return found

    for version in crd["spec"]["versions"]:
        assert not fields(version["schema"]) & forbidden, version["name"]
    # Unknown fields a tenant adds anyway are not read by render either.
    md = load("mlserver-s3")
    md["spec"]["securityContext"] = {"privileged": True, "runAsUser": 0}
    md["spec"]["runtime"]["securityContext"] = {"privileged": True}
    assert render(md).objects == render(load("mlserver-s3")).objects


# ------------------------------------------------------------------ the installation's images


MIRROR = Images(
    servers={"mlserver": "mirror.local/mlserver:1.7.1", "triton": "mirror.local/triton:1"},
    storage_initializer="mirror.local/storage-initializer:1",
    pull_policy="Never",
)


def _containers(md: dict[str, Any], **options: Any) -> list[dict[str, Any]]:
    pod = render(md, **options).deployment["spec"]["template"]["spec"]
    found: list[dict[str, Any]] = pod["containers"] + pod.get("initContainers", [])
    return found


def test_installation_images_replace_the_defaults() -> None:
    server, initializer = _containers(load("mlserver-s3"), images=MIRROR)
    assert server["image"] == "mirror.local/mlserver:1.7.1"
    assert initializer["image"] == "mirror.local/storage-initializer:1"
    assert server["imagePullPolicy"] == initializer["imagePullPolicy"] == "Never"
    # A runtime the installation does not name keeps its default.
    (torchserve, _) = _containers(load("torchserve-https-autoscaling"), images=MIRROR)
    assert torchserve["image"] == runtimes.RUNTIMES["torchserve"].image
    # A new image is a new pod: the setting rolls the models it touches.
    assert (
        render(load("mlserver-s3"), images=MIRROR).spec_hash
        != render(load("mlserver-s3")).spec_hash
    )


def test_a_modeldeployment_image_wins_over_the_installation_image() -> None:
    md = mutated("mlserver-s3", lambda s: s["runtime"].update(image="team.local/mlserver:2"))
    assert _containers(md, images=MIRROR)[0]["image"] == "team.local/mlserver:2"


@pytest.mark.parametrize("case", CASES)
def test_default_images_render_no_pull_policy(case: str) -> None:
    """Kubernetes' own default applies; an operator upgrade rolls no model for it."""
    for container in _containers(load(case)):
        assert "imagePullPolicy" not in container, container["name"]


# ------------------------------------------------------------------ ready means the model answers


def _server(md: dict[str, Any]) -> dict[str, Any]:
    server: dict[str, Any] = render(md).deployment["spec"]["template"]["spec"]["containers"][0]
    return server


def _on(runtime: str, model_format: str | None = None) -> dict[str, Any]:
    """A ModelDeployment of model `iris` on `runtime` (from that runtime's fixture)."""
    case = next(c for c in CASES if load(c)["spec"]["runtime"]["name"] == runtime)
    md = load(case)
    md["spec"]["model"]["name"] = "iris"
    if model_format is None:
        md["spec"]["model"].pop("format", None)
    else:
        md["spec"]["model"]["format"] = model_format
    return md


@pytest.mark.parametrize(
    ("runtime", "path"),
    [
        ("mlserver", "/v2/models/iris/ready"),
        ("triton", "/v2/models/iris/ready"),
        ("tfserving", "/v1/models/iris/metadata"),
    ],
)
def test_readiness_probe_asks_for_the_model(runtime: str, path: str) -> None:
    """The V2 protocol's model readiness, TF Serving's metadata (answered only by an
    AVAILABLE version): a server up with no model loaded is not Ready."""
    assert _server(_on(runtime))["readinessProbe"]["httpGet"] == {"path": path, "port": "http"}


def test_torchserve_readiness_is_its_ping_and_the_model_is_the_one_it_starts_with() -> None:
    """No GET on TorchServe's inference port names a model without running an inference
    (runtimes.py says why); /ping fails once the model's workers are gone."""
    server = _server(_on("torchserve"))
    assert server["readinessProbe"]["httpGet"]["path"] == "/ping"
    assert server["args"][server["args"].index("--models") + 1] == "iris=iris.mar"


def test_vllm_readiness_answers_only_once_its_one_model_is_loaded() -> None:
    """vLLM serves HTTP only after its engine loaded --model; /health then fails with the
    engine. The model is the one named --served-model-name."""
    server = _server(_on("vllm"))
    assert server["readinessProbe"]["httpGet"]["path"] == "/health"
    assert "--served-model-name=iris" in server["args"]


def test_custom_runtime_readiness_path_may_name_the_model() -> None:
    md = _on("custom")
    md["spec"]["runtime"]["readinessPath"] = "/v2/models/{model}/ready"
    assert _server(md)["readinessProbe"]["httpGet"]["path"] == "/v2/models/iris/ready"


@pytest.mark.parametrize(
    "path", ["/{model:>9000}", "/{x}", "/x{", "/x}", "/{model!r}", "/{0}", "/{model.x}"]
)
def test_security_readiness_path_substitutes_the_model_only(path: str) -> None:
    """A ModelDeployment stored before the CRD's pattern (or under an old CRD) reaches
    render: a format spec builds no string (/{model:>900000000} was 1 GB), a stray
    brace raises nothing but InvalidSpecError naming the field."""
    md = _on("custom")
    md["spec"]["runtime"]["readinessPath"] = path
    with pytest.raises(InvalidSpecError) as refused:
        render(md)
    assert refused.value.field == "spec.runtime.readinessPath"
    assert "{model}" in refused.value.message
    md["spec"]["runtime"]["readinessPath"] = "/{model}/a/{model}"
    assert _server(md)["readinessProbe"]["httpGet"]["path"] == "/iris/a/iris"


@pytest.mark.parametrize(
    ("model_format", "implementation"),
    [
        ("sklearn", "mlserver_sklearn.SKLearnModel"),
        ("xgboost", "mlserver_xgboost.XGBoostModel"),
        ("lightgbm", "mlserver_lightgbm.LightGBMModel"),
        ("mlflow", "mlserver_mlflow.MLflowRuntime"),
    ],
)
def test_mlserver_loads_the_model_with_the_implementation_of_its_format(
    model_format: str, implementation: str
) -> None:
    env = {e["name"]: e["value"] for e in _server(_on("mlserver", model_format))["env"]}
    assert env["MLSERVER_MODEL_IMPLEMENTATION"] == implementation
    assert env["MLSERVER_MODEL_NAME"] == "iris"


def test_mlserver_formats_and_implementations_agree() -> None:
    mlserver = runtimes.RUNTIMES["mlserver"]
    assert set(mlserver.format_env) == set(mlserver.formats)


def test_mlserver_without_a_format_leaves_the_implementation_to_model_settings() -> None:
    """MLServer's own model-settings.json in the model directory may name it."""
    env = {e["name"] for e in _server(_on("mlserver"))["env"]}
    assert "MLSERVER_MODEL_IMPLEMENTATION" not in env


@pytest.mark.parametrize(
    ("runtime", "model_format"),
    [("mlserver", "onnx"), ("triton", "sklearn"), ("tfserving", "pytorch"), ("vllm", "onnx")],
)
def test_a_format_the_runtime_cannot_serve_is_an_invalid_spec(
    runtime: str, model_format: str
) -> None:
    with pytest.raises(InvalidSpecError) as invalid:
        render(_on(runtime, model_format))
    assert invalid.value.field == "spec.model.format"
    assert f"runtime {runtime} cannot serve {model_format!r} models" in str(invalid.value)


def test_a_custom_runtime_serves_any_format() -> None:
    assert render(_on("custom", "my-own-format")).deployment


@pytest.mark.parametrize("case", CASES)
def test_endpoints_drain_before_the_server_stops(case: str) -> None:
    pod = render(load(case)).deployment["spec"]["template"]["spec"]
    drain = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert drain == runtimes.PRESTOP_DRAIN_SECONDS > 0
    # The grace period holds the drain and then the server's own shutdown.
    assert pod["terminationGracePeriodSeconds"] == drain + runtimes.SHUTDOWN_SECONDS
