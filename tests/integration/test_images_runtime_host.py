"""What goes into the model-server images, proven on the host before any node runs it.

Each image's lock is installed offline from its wheelhouse into a venv of the
images' Python (testcluster/wheels.py), and each server is started the way
`render` renders it - command, environment, arguments and readiness path taken
from the rendered pod, with the host's ports and directories in place of the
pod's: MLServer answers an inference with the model the test trained; the storage
initializer downloads from the real object store and fails, with the store's
reason, on a wrong secret; the kserve custom server answers too.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelsync.api.manifest import mapping
from modelsync.serving.render import render
from modelsync.serving.runtimes import MODEL_DIR, SCRATCH_DIR
from testcluster import wheels
from testcluster.launcher import stop_group
from testcluster.objectstore import ObjectStore, free_port
from tests.support.kube import until

IMAGES = wheels.IMAGES_DIR
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
START_SECONDS = 120.0
# Trains an iris classifier with the image's own scikit-learn, saves it with joblib,
# and prints what it predicts for ROWS: what every server must answer.
TRAIN = """
import json, sys, joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
x, y = load_iris(return_X_y=True)
model = LogisticRegression(max_iter=1000).fit(x, y)
joblib.dump(model, sys.argv[1])
print(json.dumps(model.predict(json.loads(sys.argv[2])).tolist()))
"""


def model_deployment(runtime: dict[str, Any], uri: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelsync.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "models", "uid": "u-1"},
        "spec": {
            "model": {"name": "iris", "version": "1", "uri": uri, "format": "sklearn"},
            "runtime": runtime,
            "replicas": 1,
        },
    }


def pod_of(md: dict[str, Any]) -> dict[str, Any]:
    return dict(mapping(render(md).deployment, "spec", "template", "spec"))


def on_host(value: str, places: dict[str, str]) -> str:
    """`value` with each pod path (a whole path or its prefix) put at its place on the
    host, in one pass: a host path that starts with another pod path stays as it is."""
    pattern = "|".join(re.escape(path) for path in sorted(places, key=len, reverse=True))
    return re.sub(rf"(?<![^\s=:])({pattern})(?=/|$|\s)", lambda m: places[m[1]], value)


@contextlib.contextmanager
def serving(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        stop_group(process, 15)


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(  # noqa: S310 - loopback
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until `url` (the rendered readiness path) answers 200; fail at once if the server
    exits, with its log."""
    statuses: list[int | None] = []

    def ready() -> bool:
        statuses.append(get(url))
        if statuses[-1] != 200 and process.poll() is not None:
            pytest.fail(f"{url}: the server exited {process.poll()}; log:\n{tail()}")
        return statuses[-1] == 200

    def tail() -> str:
        return log.read_text(errors="replace")[-3000:]

    until(
        f"{url} to answer 200",
        ready,
        START_SECONDS,
        interval=0.5,
        explain=lambda: f"last answer {statuses[-1]}; log:\n{tail()}",
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """A model directory (read-only, as the pod mounts it) and the predictions for ROWS."""
    python = wheels.ensure_host_venv("mlserver")
    model_dir = tmp_path_factory.mktemp("model")
    answer = subprocess.run(
        [str(python), "-c", TRAIN, str(model_dir / "model.joblib"), json.dumps(ROWS)],
        capture_output=True,
        text=True,
        check=True,
    )
    model_dir.chmod(0o555)
    return model_dir, json.loads(answer.stdout)


def test_mlserver_runtime_host_answers_an_inference_as_rendered(
    trained: tuple[Path, list[int]], tmp_path: Path
) -> None:
    model_dir, expected = trained
    python = wheels.ensure_host_venv("mlserver")
    server = pod_of(model_deployment({"name": "mlserver"}, "pvc://store/iris"))["containers"][0]
    http, grpc, metrics = free_port("127.0.0.1"), free_port("127.0.0.1"), free_port("127.0.0.1")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    places = {MODEL_DIR: str(model_dir), SCRATCH_DIR: str(scratch)}
    env = {item["name"]: on_host(item["value"], places) for item in server["env"]}
    env.update(
        MLSERVER_HTTP_PORT=str(http),
        MLSERVER_GRPC_PORT=str(grpc),
        MLSERVER_METRICS_PORT=str(metrics),
        PATH=f"{python.parent}:/usr/bin:/bin",
    )
    command = [on_host(part, places) for part in server["command"]]
    command[0] = str(python.parent / command[0])
    log = tmp_path / "mlserver.log"
    with serving(command, env, log) as process:
        ready = server["readinessProbe"]["httpGet"]["path"]
        assert ready == "/v2/models/iris/ready"
        wait_ready(f"http://127.0.0.1:{http}{ready}", process, log)
        answer = post(
            f"http://127.0.0.1:{http}/v2/models/iris/infer",
            {
                "inputs": [
                    {
                        "name": "predict",
                        "shape": [len(ROWS), 4],
                        "datatype": "FP64",
                        "data": [value for row in ROWS for value in row],
                    }
                ]
            },
        )
    assert answer["outputs"][0]["data"] == expected


def test_storage_initializer_runtime_host_downloads_from_the_object_store(
    objectstore: ObjectStore, trained: tuple[Path, list[int]], tmp_path: Path
) -> None:
    model_dir, _ = trained
    body = (model_dir / "model.joblib").read_bytes()
    objectstore.create_bucket("initializer")
    objectstore.put("initializer", "iris/1/model.joblib", body)
    python = wheels.ensure_host_venv("storage-initializer")
    md = model_deployment({"name": "mlserver"}, "s3://initializer/iris/1")
    initializer = pod_of(md)["initContainers"][0]
    out = tmp_path / "models"
    args = [on_host(arg, {MODEL_DIR: str(out)}) for arg in initializer["args"]]
    script = str(IMAGES / "storage-initializer" / "initializer.py")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **objectstore.storage_secret()}

    done = subprocess.run(
        [str(python), script, *args], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "model.joblib").read_bytes() == body

    env["AWS_SECRET_ACCESS_KEY"] = "wrong"
    refused = subprocess.run(
        [str(python), script, *args[:1], str(tmp_path / "refused")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("storage-initializer: s3://initializer/iris/1: ")
    assert "403" in last or "SignatureDoesNotMatch" in last, last


def test_kserve_custom_runtime_host_answers_an_inference(
    trained: tuple[Path, list[int]], tmp_path: Path
) -> None:
    model_dir, expected = trained
    python = wheels.ensure_host_venv("kserve-custom")
    http, grpc = free_port("127.0.0.1"), free_port("127.0.0.1")
    runtime = {
        "name": "custom",
        "image": "modelsync.test/kserve-custom:1",
        "port": http,
        "args": ["--model_name=iris", f"--grpc_port={grpc}", f"--http_port={http}"],
        "readinessPath": "/v1/models/{model}",
    }
    server = pod_of(model_deployment(runtime, "pvc://store/iris"))["containers"][0]
    script = str(IMAGES / "kserve-custom" / "server.py")
    command = [str(python), script, *server["args"], f"--model_dir={model_dir}"]
    env = {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    log = tmp_path / "kserve.log"
    with serving(command, env, log) as process:
        ready = server["readinessProbe"]["httpGet"]["path"]
        wait_ready(f"http://127.0.0.1:{http}{ready}", process, log)
        answer = post(f"http://127.0.0.1:{http}/v1/models/iris:predict", {"instances": ROWS})
    assert answer["predictions"] == expected
