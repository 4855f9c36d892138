"""Kustomize repositories as teams write them: a base and an overlay per environment,
one ModelSync per environment, over a real git server and the real local cluster.
And what rendering refuses, each named by file and line with the last good revision
still serving: broken kustomizations, and what would reach beyond the revision."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from modelsync.api import constants as c
from modelsync.cli import main as cli
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


@pytest.mark.parametrize(
    ("what", "files", "symlinks", "expected"), BAD_OVERLAYS, ids=[c[0] for c in BAD_OVERLAYS]
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


def test_kustomize_validate_and_diff_render_as_the_operator_does(
    syncs: Syncs, renderers: dict[str, Path]
) -> None:
    """`modelsync validate` and `diff` render an overlay offline with the same code;
    without kustomize they exit 2 naming the version they expect."""
    repo = environments(syncs)
    first = repo.commit("base and two environments")
    create(syncs, "prod", repo, path="overlays/prod")
    syncs.wait_applied("prod", f"main@sha1:{first}")
    work = repo.work
    overlay_dir = work / "overlays" / "prod"

    def cli(*args: str, cwd: Path = overlay_dir) -> subprocess.CompletedProcess[str]:
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
