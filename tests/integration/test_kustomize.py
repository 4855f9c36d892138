"""Kustomize repositories as teams write them: a base and an overlay per environment,
one ModelSync per environment, over a real git server and the real local cluster.
And what rendering refuses, each named by file and line with the last good revision
still serving: broken kustomizations, and what would reach beyond the revision."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from modelsync.api import constants as c
from modelsync.cli import main as cli
from modelsync.gitops import render
from modelsync.gitops.render import RenderSettings, render_snapshot
from tests.support.gitserver import WorkRepo, _git
from tests.support.kube import dict_condition
from tests.support.models import Models, ready_on
from tests.support.paths import REPO
from tests.support.syncs import MS, Syncs, model_yaml

BASE = "base/kustomization.yaml"
ENVS = ("staging", "prod")


def overlay(suffix: str, version: str, replicas: int, extra: str = "") -> str:
    """An environment: the base's models renamed `<name>-<suffix>`, version and replicas
    pinned by a patch on every ModelDeployment."""
    return f"""\
resources:
  - ../../base
nameSuffix: -{suffix}
labels:
  - pairs: {{environment: {suffix}}}
patches:
  - target: {{kind: ModelDeployment}}
    patch: |-
      - op: replace
        path: /spec/model/version
        value: "{version}"
      - op: replace
        path: /spec/replicas
        value: {replicas}
{extra}"""


def environments(syncs: Syncs) -> WorkRepo:
    repo = syncs.repo("envs")
    repo.write("base/iris.yaml", model_yaml("iris"))
    repo.write("base/fraud.yaml", model_yaml("fraud"))
    repo.write(BASE, "resources: [iris.yaml, fraud.yaml]\n")
    repo.write("overlays/staging/kustomization.yaml", overlay("staging", "2", 1))
    repo.write("overlays/prod/kustomization.yaml", overlay("prod", "1", 2))
    return repo


def create(syncs: Syncs, name: str, repo: WorkRepo, **spec: Any) -> None:
    """A ModelSync of `repo` over the real git server's smart HTTP, with its password."""
    try:
        syncs.secret("git-auth", syncs.server.username, syncs.server.password)
    except kubernetes.client.ApiException as error:
        if error.status != 409:  # made for an earlier ModelSync of this test
            raise
    syncs.create(name, syncs.http_url(repo), secret="git-auth", **spec)


def spec_of(md: dict[str, Any]) -> tuple[str, int]:
    return md["spec"]["model"]["version"], md["spec"]["replicas"]


def test_kustomize_base_and_two_overlays_each_environment_applies_its_own(
    syncs: Syncs,
) -> None:
    repo = environments(syncs)
    first = repo.commit("base and two environments")
    create(syncs, "staging", repo, path="overlays/staging")
    create(syncs, "prod", repo, path="overlays/prod")
    for env in ("staging", "prod"):
        syncs.wait_applied(env, f"main@sha1:{first}")
    models = syncs.models()
    assert set(models) == {"iris-staging", "fraud-staging", "iris-prod", "fraud-prod"}
    assert spec_of(models["iris-staging"]) == ("2", 1)
    assert spec_of(models["iris-prod"]) == ("1", 2)
    assert models["fraud-prod"]["metadata"]["labels"]["environment"] == "prod"
    annotations = models["iris-prod"]["metadata"]["annotations"]
    assert annotations[c.ANNOTATION_REVISION] == f"main@sha1:{first}"
    fraud_uids = {name: models[name]["metadata"]["uid"] for name in models if "fraud" in name}

    # A change in the base reaches both environments; each overlay's pins stay.
    repo.write(
        "base/iris.yaml", model_yaml("iris").replace("mlserver", "mlserver\n    args: [--debug]")
    )
    second = repo.commit("iris: debug logging, in the base")
    for env in ("staging", "prod"):
        syncs.wait_applied(env, f"main@sha1:{second}", syncs.request(env))
    models = syncs.models()
    for name in ("iris-staging", "iris-prod"):
        assert models[name]["spec"]["runtime"]["args"] == ["--debug"], name
    assert spec_of(models["iris-staging"]) == ("2", 1)
    assert spec_of(models["iris-prod"]) == ("1", 2)

    # A change in one overlay reaches that environment only.
    repo.write("overlays/prod/kustomization.yaml", overlay("prod", "2", 3))
    third = repo.commit("prod: iris and fraud to version 2")
    for env in ("staging", "prod"):
        syncs.wait_applied(env, f"main@sha1:{third}", syncs.request(env))
    staging_generation = models["iris-staging"]["metadata"]["generation"]
    Models(syncs.cluster, syncs.namespace).wait("iris-prod", ready_on("2"))
    models = syncs.models()
    assert spec_of(models["iris-prod"]) == ("2", 3)
    assert models["iris-staging"]["metadata"]["generation"] == staging_generation

    # An object removed from the base is deleted in both environments (by UID).
    repo.remove("base/fraud.yaml")
    repo.write(BASE, "resources: [iris.yaml]\n")
    fourth = repo.commit("drop fraud")
    for env in ("staging", "prod"):
        syncs.wait_applied(env, f"main@sha1:{fourth}", syncs.request(env))
    left = {md["metadata"]["uid"] for md in syncs.models().values()}
    assert set(syncs.models()) == {"iris-staging", "iris-prod"}
    assert not set(fraud_uids.values()) & left


class CountingListener:
    """A loopback TCP listener that counts connections (and answers none)."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    server = CountingListener()
    yield server
    server.close()


PROD = "overlays/prod/kustomization.yaml"
REMOTE = "http://127.0.0.1:{port}/org/models.git//base?ref=v1"
# (what, files written, symlinks to /etc/passwd, what status.errors must hold)
BAD_OVERLAYS: list[tuple[str, dict[str, str], list[str], str]] = [
    (
        "broken-yaml",
        {PROD: "resources:\n  - ../../base\npatches: [\n"},
        [],
        f"{PROD}:3: invalid kustomization YAML: ",
    ),
    (
        "missing-resource",
        {PROD: overlay("prod", "1", 2) + "  - path: tune.yaml\n"},
        [],
        f"{PROD}:15: patches: 'tune.yaml' does not exist in the revision",
    ),
    (
        "cycle",
        {BASE: "resources: [iris.yaml, fraud.yaml, ../overlays/prod]\n"},
        [],
        "kustomizations form a cycle: overlays/prod -> base -> overlays/prod",
    ),
    (
        "patch-does-not-apply",
        {PROD: overlay("prod", "1", 2).replace("path: /spec/replicas", "path: /spec/no/such")},
        [],
        f"{PROD}:1: kustomize build: ",
    ),
    (
        "resource-outside-the-revision",
        {PROD: "resources:\n  - ../../base\n  - ../../../../../../etc/hostname\n"},
        [],
        f"{PROD}:3: resources: '../../../../../../etc/hostname' is outside the revision",
    ),
    (
        "another-snapshot-directory",
        {PROD: "resources:\n  - ../../base\n  - ../../../0123456789abcdef/models\n"},
        [],
        f"{PROD}:3: resources: '../../../0123456789abcdef/models' is outside the revision",
    ),
    (
        "symlink-to-etc-passwd",
        {PROD: "resources:\n  - ../../base\n  - passwd.yaml\n"},
        ["overlays/prod/passwd.yaml"],
        f"{PROD}:3: resources: 'passwd.yaml' goes through the symlink overlays/prod/passwd.yaml",
    ),
    (
        "remote-base",
        {PROD: "resources:\n  - ../../base\n  - " + REMOTE + "\n"},
        [],
        f"{PROD}:3: resources: '{REMOTE}' is a remote base",
    ),
]


# Fields as kustomize reads them, whatever their case (Go's encoding/json).
SPELLED_OTHERWISE: list[tuple[str, dict[str, str], list[str], str]] = [
    (
        "remote-base-as-RESOURCES",
        {PROD: "RESOURCES:\n  - ../../base\n  - " + REMOTE + "\n"},
        [],
        f"{PROD}:3: RESOURCES: '{REMOTE}' is a remote base",
    ),
    (
        "http-file-as-ConfigMapGenerator",
        {
            PROD: "resources:\n  - ../../base\nConfigMapGenerator:\n  - name: metadata\n"
            "    files:\n      - http://127.0.0.1:{port}/latest/meta-data\n"
        },
        [],
        f"{PROD}:6: ConfigMapGenerator.files: 'http://127.0.0.1:{{port}}/latest/meta-data' "
        "is a URL",
    ),
]


@pytest.mark.parametrize(
    ("what", "files", "symlinks", "expected"),
    [*BAD_OVERLAYS, *SPELLED_OTHERWISE],
    ids=[case[0] for case in (*BAD_OVERLAYS, *SPELLED_OTHERWISE)],
)
def test_security_kustomize_bad_overlay_is_refused_naming_the_file_and_serving_stays(
    syncs: Syncs,
    listener: CountingListener,
    what: str,
    files: dict[str, str],
    symlinks: list[str],
    expected: str,
) -> None:
    """The bad commit is refused as a whole, named by file and line, and nothing is
    applied: the last good revision keeps serving. The remote base is served by a
    loopback listener that must see no connection: it is refused before kustomize runs."""
    repo = environments(syncs)
    good = repo.commit("base and two environments")
    create(syncs, "prod", repo, path="overlays/prod")
    syncs.wait_applied("prod", f"main@sha1:{good}")
    for path, text in files.items():
        repo.write(path, text.replace("{port}", str(listener.port)))
    for path in symlinks:
        repo.symlink(path, "/etc/passwd")
    bad = repo.commit(what)
    ms = syncs.wait_failed("prod", c.REASON_VALIDATION_FAILED, syncs.request("prod"))
    status = ms["status"]
    assert status["lastAttemptedRevision"] == f"main@sha1:{bad}"
    assert status["lastAppliedRevision"] == f"main@sha1:{good}"
    expected = expected.replace("{port}", str(listener.port))
    assert any(expected in error for error in status["errors"]), status["errors"]
    assert (dict_condition(ms, c.STALLED) or {}).get("status") == "True"
    models = syncs.models()
    assert set(models) == {"iris-prod", "fraud-prod"}
    assert spec_of(models["iris-prod"]) == ("1", 2)
    assert listener.connections == 0


def modelsync_cli(syncs: Syncs, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own, with the test cluster's kubeconfig."""
    return subprocess.run(
        [sys.executable, "-m", "modelsync", *args],
        cwd=cwd,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(REPO / "controller"),
            "KUBECONFIG": str(syncs.cluster.kubeconfig),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_kustomize_validate_and_diff_render_as_the_operator_does(
    syncs: Syncs, renderers: dict[str, Path]
) -> None:
    """`modelsync validate` and `diff` render an overlay offline with the same code;
    without kustomize they exit 2 naming the version they expect."""
    repo = environments(syncs)
    first = repo.commit("base and two environments")
    create(syncs, "prod", repo, path="overlays/prod")
    syncs.wait_applied("prod", f"main@sha1:{first}")
    overlay_dir = repo.work / "overlays" / "prod"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return modelsync_cli(syncs, overlay_dir, *args)

    kustomize = ("--kustomize", str(renderers["kustomize"]))
    done = cli("validate", ".", *kustomize)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 files, 2 objects: ok" in done.stderr

    # Offline: the same refusal the operator gives, with the file as the user reaches it.
    (overlay_dir / "kustomization.yaml").write_text(
        "resources:\n  - ../../base\n  - ../../../../../../etc/hostname\n"
    )
    done = cli("validate", ".", *kustomize)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith(
        "kustomization.yaml:3: resources: '../../../../../../etc/hostname' is outside the revision"
    ), done.stdout

    (overlay_dir / "kustomization.yaml").write_text(overlay("prod", "3", 2))
    done = cli("diff", ".", "--sync", "prod", "-n", syncs.namespace, *kustomize)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "model   iris-prod: version 1 -> 3" in done.stdout, done.stdout
    assert "model   fraud-prod: version 1 -> 3" in done.stdout, done.stdout

    done = cli("validate", ".", "--kustomize", "kustomize-not-installed")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "kustomize v5.8.2 is needed" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_kustomize_renders_of_a_snapshot_are_remembered_and_handed_out_as_copies(
    renderers: dict[str, Path], tmp_path: Path
) -> None:
    """A resync of the same revision runs no renderer; what it gets may be changed freely.
    A refusal is not remembered (one at the time limit may be the machine's load)."""
    root = tmp_path / "snapshot"
    (root / "base").mkdir(parents=True)
    (root / "base" / "iris.yaml").write_text(model_yaml("iris"))
    (root / "base" / "kustomization.yaml").write_text("resources: [iris.yaml]\n")
    settings = RenderSettings(kustomize=str(renderers["kustomize"]))
    first = render_snapshot(root, "base", None, settings, namespace="n", release="r")
    first.objects[0].manifest["spec"]["replicas"] = 7
    # Changed under it (a snapshot never is): only the remembered render answers so.
    (root / "base" / "kustomization.yaml").write_text("resources: [gone.yaml]\n")
    second = render_snapshot(root, "base", None, settings, namespace="n", release="r")
    assert [o.manifest["spec"]["replicas"] for o in second.objects] == [1]
    assert second.errors == []
    refused = render_snapshot(root, "base", None, settings, namespace="n", release="other")
    assert refused.errors
    (root / "base" / "kustomization.yaml").write_text("resources: [iris.yaml]\n")
    again = render_snapshot(root, "base", None, settings, namespace="n", release="other")
    assert again.errors == []


def test_kustomize_the_example_repository_each_environment_applies_its_overlay(
    syncs: Syncs, renderers: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """manifests/ as a team would push it: each ModelSync of environments.yaml applies its
    overlay, the overlays validate offline, and promote edits prod's pin of the model."""
    repo = syncs.repo("example")
    shutil.copytree(REPO / "manifests", repo.work / "manifests")
    first = repo.commit("the example repository")
    documents = list(yaml.safe_load_all((REPO / "manifests/environments.yaml").read_text()))
    for ms in documents:
        ms["spec"]["repo"] = {"url": repo.file_url}
        syncs.api.create_namespaced_custom_object(namespace=syncs.namespace, body=ms, **MS)
    for ms in documents:
        # Applied is enough: churn's PersistentVolumeClaim is the demo's to make.
        syncs.wait(
            ms["metadata"]["name"],
            lambda found: (
                ((found or {}).get("status") or {}).get("lastAppliedRevision")
                == f"main@sha1:{first}"
            ),
            "the example applied",
        )
    models = syncs.models()
    assert set(models) == {f"{m}-{e}" for m in ("iris", "ranker", "churn") for e in ENVS}
    assert spec_of(models["iris-staging"]) == ("1.1.0", 1)
    assert spec_of(models["iris-prod"]) == ("1.0.0", 3)
    assert models["ranker-prod"]["spec"]["autoscaling"]["minReplicas"] == 2
    assert models["churn-prod"]["metadata"]["labels"][c.LABEL_SYNC_NAME] == "prod"

    kustomize = ["--kustomize", str(renderers["kustomize"])]
    for env in ENVS:
        overlay_dir = repo.work / "manifests" / "overlays" / env
        assert cli.main(["validate", str(overlay_dir), *kustomize]) == 0
        assert "1 files, 3 objects: ok" in capsys.readouterr().err
    promote = ["promote", "iris", "--from", "staging", "--to", "prod", "--force"]
    code = cli.main([*promote, "--repo-dir", str(repo.work), *kustomize])
    assert code == 0, capsys.readouterr().err
    changed = _git("diff", "--name-only", first, "HEAD", cwd=repo.work)
    assert changed == "manifests/overlays/prod/iris.yaml"


def test_security_kustomize_validate_and_diff_refuse_a_field_spelled_otherwise(
    syncs: Syncs, renderers: dict[str, Path]
) -> None:
    """`Resources:` is kustomize's `resources`: `validate` and `diff` refuse its escape
    from the revision as the operator does, naming the file and the key as written."""
    repo = environments(syncs)
    repo.commit("base and two environments")
    create(syncs, "prod", repo, path="overlays/prod")
    overlay_dir = repo.work / "overlays" / "prod"
    (overlay_dir / "kustomization.yaml").write_text(
        "Resources:\n  - ../../base\n  - ../../../../../../etc/hostname\n"
    )
    expected = (
        "kustomization.yaml:3: Resources: '../../../../../../etc/hostname' is outside the revision"
    )
    kustomize = ("--kustomize", str(renderers["kustomize"]))
    done = modelsync_cli(syncs, overlay_dir, "validate", ".", *kustomize)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith(expected), done.stdout
    done = modelsync_cli(
        syncs, overlay_dir, "diff", ".", "--sync", "prod", "-n", syncs.namespace, *kustomize
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(expected), done.stderr


# The renderer alone, with the inspection bypassed: what keeps kustomize off the network
# when a kustomization the inspection should have refused reaches it anyway. The
# listener is on an address of 198.18.0.0/15 (Go never proxies loopback), on an
# interface in a network namespace of the test's own, where the render runs too.
TRAP_ADDRESS = "198.18.250.1"
LISTEN = r"""
import socket, sys, threading
server = socket.create_server((sys.argv[1], 0))
print(server.getsockname()[1], flush=True)
accepted = []
def serve():
    while True:
        try:
            connection, _ = server.accept()
        except OSError:
            return
        accepted.append(1)
        connection.close()
threading.Thread(target=serve, daemon=True).start()
sys.stdin.read()
print(len(accepted), flush=True)
"""
# As the operator renders, but every file of the tree copied as it is (no inspection).
RENDER_UNINSPECTED = r"""
import json, sys
from pathlib import Path
from modelsync.gitops import render
root, app, kustomize, unshare = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
if unshare == "refused":  # as in the chart's pod, where creating a namespace is refused
    render.UNSHARE = None
files = {path for path in root.rglob("*") if path.is_file()}
render.inspect_kustomization = lambda *_: render.Inspection(files=files)
rendered = render.render(root, app, None, render.RenderSettings(kustomize=kustomize))
print(json.dumps([str(error) for error in rendered.errors]))
"""
NOBODY = 65534


def python_for_nobody() -> tuple[str, str]:
    """An interpreter of this Python's version that any uid may run (this one may live
    under /root), and this environment's packages for it to import."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    python = shutil.which(f"python{version}", path="/usr/bin:/bin")
    if python is None:
        pytest.skip(f"no python{version} in /usr/bin or /bin for a non-root uid to run")
    return python, sysconfig.get_paths()["purelib"]


@pytest.fixture
def trap_namespace() -> Iterator[str]:
    """A network namespace with loopback up and TRAP_ADDRESS on an interface of its own."""
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace needs root")
    name = f"ms-kust-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for command in (
            ["link", "set", "lo", "up"],
            # A veth pair with both ends inside (these hosts have no dummy module).
            ["link", "add", "trap0", "type", "veth", "peer", "name", "trap1"],
            ["addr", "add", f"{TRAP_ADDRESS}/32", "dev", "trap0"],
            ["link", "set", "trap0", "up"],
            ["link", "set", "trap1", "up"],
        ):
            subprocess.run(["ip", "-n", name, *command], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.mark.parametrize("unshare", ["as-the-host-allows", "refused"])
def test_security_kustomize_renderer_reaches_no_address_with_the_inspection_bypassed(
    renderers: dict[str, Path], trap_namespace: str, unshare: str
) -> None:
    """An http `files` entry and remote bases (http, https) aimed at a listener, rendered
    as a non-root uid with nothing checked first: the listener sees no connection from
    the renderer (and one from a plain client of the same uid, which shows it is
    reachable). With `refused`, no network namespace of its own: the proxy and git
    settings of the renderer's environment alone."""
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ms-trap-")))
        scratch.chmod(0o755)
        kustomize = scratch / "kustomize"
        shutil.copyfile(renderers["kustomize"], kustomize)
        kustomize.chmod(0o755)
        in_namespace = ["ip", "netns", "exec", trap_namespace]
        listener = subprocess.Popen(
            [*in_namespace, sys.executable, "-c", LISTEN, TRAP_ADDRESS],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        stack.callback(listener.kill)
        assert listener.stdout is not None
        port = int(listener.stdout.readline())
        trap = f"{TRAP_ADDRESS}:{port}"
        root = scratch / "repo"
        apps = {
            "files": "configMapGenerator:\n  - name: metadata\n    files:\n"
            f"      - http://{trap}/latest/meta-data\n",
            "http-base": f"resources:\n  - http://{trap}/org/models.git//base?ref=v1\n",
            "https-base": f"resources:\n  - https://{trap}/org/models//base?ref=v1\n",
        }
        for app, text in apps.items():
            (root / app).mkdir(parents=True)
            (root / app / "kustomization.yaml").write_text(text)
        for path in (root, *root.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)
        as_nobody = [
            *in_namespace,
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            "--",
        ]
        python, packages = python_for_nobody()
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": f"{REPO / 'controller'}:{packages}",
            "HOME": str(scratch),
        }
        probe = f"import socket; socket.create_connection(({TRAP_ADDRESS!r}, {port}), 5).close()"
        subprocess.run([*as_nobody, python, "-c", probe], env=env, check=True, timeout=10)
        for app in apps:
            done = subprocess.run(
                [
                    *as_nobody,
                    python,
                    "-c",
                    RENDER_UNINSPECTED,
                    str(root),
                    app,
                    str(kustomize),
                    unshare,
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=25,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            errors = " ".join(json.loads(done.stdout))
            # Refused at the dead proxy (Go's client), and by git for the bases.
            assert f"proxyconnect tcp: dial tcp {render.DEAD_PROXY[7:]}" in errors, errors
            assert app == "files" or "not allowed" in errors, errors
        accepted, _ = listener.communicate("", timeout=10)
    assert int(accepted) == 1, f"the listener accepted {accepted.strip()} connections, not 1"
