"""`modelsync promote`: the version staging serves, committed into prod's overlay, over
real git and the real local cluster — and refused, naming the file and the fix, when
staging does not serve it healthily or the repository cannot take it."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelsync.cli import main as cli
from tests.integration.test_rollback import DEADLINE, rolled_back
from tests.support.gitserver import WorkRepo, _git
from tests.support.models import Models, ready_on
from tests.support.syncs import Syncs, model_yaml

ENVIRONMENTS = """\
apiVersion: modelsync.io/v1alpha1
kind: ModelSync
metadata:
  name: staging
  labels: {modelsync.io/environment: staging}
spec:
  repo: {url: https://git.example.com/models.git}
  path: overlays/staging
---
apiVersion: modelsync.io/v1alpha1
kind: ModelSync
metadata:
  name: prod
  labels: {modelsync.io/environment: prod}
spec:
  repo: {url: https://git.example.com/models.git}
  path: overlays/prod
"""


def overlay(env: str, pinned: list[str], extra: str = "") -> str:
    return (
        f"resources: [../../base]\nnameSuffix: -{env}\npatches:\n"
        + "".join(f"  - path: {name}.yaml\n" for name in pinned)
        + extra
    )


def pin_yaml(name: str, version: str, replicas: int, extra: str = "") -> str:
    return f"""\
# {name}: what this environment serves
apiVersion: modelsync.io/v1alpha1
kind: ModelDeployment
metadata:
  name: {name}
spec:
  model:
    version: "{version}"
    uri: s3://models/{name}/{version}
  replicas: {replicas}
{extra}"""


def environments_repo(root: Path, name: str) -> WorkRepo:
    """Base iris and fraud; staging pins both at 2, prod pins iris at 1 (fraud: the base's)."""
    repo = WorkRepo(root, name)
    repo.write("environments.yaml", ENVIRONMENTS)
    repo.write("base/iris.yaml", model_yaml("iris"))
    repo.write("base/fraud.yaml", model_yaml("fraud"))
    repo.write("base/kustomization.yaml", "resources: [iris.yaml, fraud.yaml]\n")
    repo.write("overlays/staging/kustomization.yaml", overlay("staging", ["iris", "fraud"]))
    repo.write("overlays/staging/iris.yaml", pin_yaml("iris", "2", 1))
    repo.write("overlays/staging/fraud.yaml", pin_yaml("fraud", "2", 1))
    repo.write("overlays/prod/kustomization.yaml", overlay("prod", ["iris"]))
    repo.write("overlays/prod/iris.yaml", pin_yaml("iris", "1", 2))
    return repo


def promote(
    capsys: pytest.CaptureFixture[str],
    repo: WorkRepo,
    kustomize: Path,
    *args: str,
    syncs: Syncs | None = None,
) -> tuple[int, str, str]:
    """`modelsync promote ARGS` in this clone; with `syncs`, its cluster and namespace."""
    capsys.readouterr()
    where = ["--kubeconfig", str(syncs.cluster.kubeconfig), "-n", syncs.namespace] if syncs else []
    code = cli.main(
        [*where, "promote", *args, "--repo-dir", str(repo.work), "--kustomize", str(kustomize)]
    )
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def branches(repo: WorkRepo) -> list[str]:
    return _git("branch", "--format=%(refname:short)", cwd=repo.work).split()


def test_promote_commits_the_pin_prod_rolls_it_out_and_an_unhealthy_staging_is_refused(
    syncs: Syncs, renderers: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    repo = environments_repo(syncs.server.root, f"{syncs.namespace}-envs")
    first = repo.commit("base, staging and prod")
    for env in ("staging", "prod"):
        syncs.create(env, repo.file_url, path=f"overlays/{env}")
    for env in ("staging", "prod"):
        syncs.wait_applied(env, f"main@sha1:{first}")
    models = Models(syncs.cluster, syncs.namespace)
    models.wait("iris-staging", ready_on("2"))
    models.wait("iris-prod", ready_on("1"))
    kustomize = renderers["kustomize"]

    code, out, err = promote(
        capsys, repo, kustomize, "iris", "--from", "staging", "--to", "prod", syncs=syncs
    )
    assert code == 0, err
    assert "overlays/prod/iris.yaml: iris version 1, uri s3://models/iris/1 -> version 2" in out
    # Only the pin changes, on its own branch, off main: the comment and replicas stay.
    assert _git("rev-parse", "--abbrev-ref", "HEAD", cwd=repo.work) == "modelsync/promote/iris-2"
    assert _git("rev-parse", "HEAD^", cwd=repo.work) == first
    assert _git("diff", "--name-only", first, "HEAD", cwd=repo.work) == "overlays/prod/iris.yaml"
    assert (repo.work / "overlays/prod/iris.yaml").read_text() == pin_yaml("iris", "2", 2)
    message = _git("log", "-1", "--format=%B", cwd=repo.work)
    assert message.startswith("Promote model iris to prod: version 2, uri s3://models/iris/2")

    # The pull request merged: prod rolls version 2 out with its own replicas.
    _git("checkout", "--quiet", "main", cwd=repo.work)
    _git("merge", "--quiet", "--ff-only", "modelsync/promote/iris-2", cwd=repo.work)
    merged = repo.commit("merge the promotion")  # pushes main (an empty commit on top)
    syncs.wait_applied("prod", f"main@sha1:{merged}", syncs.request("prod"))
    iris_prod = models.wait("iris-prod", ready_on("2"))
    assert iris_prod["spec"]["replicas"] == 2
    assert iris_prod["spec"]["model"]["uri"] == "s3://models/iris/2"

    # Staging gets a version that never becomes ready: rolled back, promote refuses it.
    broken = f"  rollout: {{progressDeadlineSeconds: {DEADLINE}}}\n  podMetadata:\n" + (
        "    labels: {modelsync.io/kwok-fault: never-ready}\n"
    )
    repo.write("overlays/staging/iris.yaml", pin_yaml("iris", "3", 1, broken))
    bad = repo.commit("iris 3 in staging")
    syncs.request("staging")
    models.wait("iris-staging", rolled_back, timeout=DEADLINE + 60, describe="3 rolled back")
    code, out, err = promote(
        capsys, repo, kustomize, "iris", "--from", "staging", "--to", "prod", syncs=syncs
    )
    assert code == 1, out + err
    assert (
        f"staging does not serve iris 3 healthily: ModelDeployment {syncs.namespace}/"
        "iris-staging: it is rolled back"
    ) in err, err
    assert "serves version 2, git says 3" in err
    assert "Nothing committed" in err
    assert _git("rev-parse", "HEAD", cwd=repo.work) == bad
    assert "modelsync/promote/iris-3" not in branches(repo)
    # --force: the team's call, committed all the same.
    code, out, err = promote(
        capsys, repo, kustomize, "iris", "--from", "staging", "--to", "prod", "--force",
        syncs=syncs,
    )  # fmt: skip
    assert code == 0, err
    assert "modelsync/promote/iris-3" in branches(repo)


def test_promote_bad_input_is_refused_naming_the_file_and_the_fix(
    renderers: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each refused before the cluster is asked: nothing committed, no branch."""
    repo = environments_repo(tmp_path, "envs")
    head = repo.commit("base, staging and prod")
    kustomize = renderers["kustomize"]

    def refused(code: int, *args: str) -> str:
        done, out, err = promote(capsys, repo, kustomize, *args)
        assert done == code, out + err
        assert "Traceback" not in err
        assert _git("rev-parse", "HEAD", cwd=repo.work) == head
        assert branches(repo) == ["main"]
        return err

    err = refused(2, "ranker", "--from", "staging", "--to", "prod")
    assert (
        "overlays/staging: the staging overlay renders no model 'ranker' (models: fraud, iris)"
    ) in err
    err = refused(2, "iris", "--from", "staging", "--to", "qa")
    assert (
        "environments.yaml: no environment 'qa' (declared: prod, staging); add a ModelSync"
    ) in err
    # Prod takes fraud from the base: refused, not pinned behind the team's back.
    err = refused(1, "fraud", "--from", "staging", "--to", "prod")
    assert (
        "overlays/prod/kustomization.yaml: no patch of the prod overlay pins spec.model of "
        "fraud, so prod takes it from the base"
    ) in err, err
    assert "(as overlays/staging/fraud.yaml does for staging) under patches:" in err
    # A second patch of prod that sets the version: the render check catches it.
    override = (
        "  - target: {kind: ModelDeployment}\n    patch: |-\n"
        "      - {op: replace, path: /spec/model/version, value: '1'}\n"
    )
    repo.write("overlays/prod/kustomization.yaml", overlay("prod", ["iris"], override))
    head = repo.commit("prod: every model at version 1")
    err = refused(1, "iris", "--from", "staging", "--to", "prod")
    assert (
        "overlays/prod/iris.yaml: after the edit prod renders iris with version 1, uri "
        "s3://models/iris/2"
    ) in err, err
    assert "another patch of overlays/prod sets spec.model" in err
    repo.write("overlays/prod/iris.yaml", pin_yaml("iris", "1", 5))  # not committed
    err = refused(2, "iris", "--from", "staging", "--to", "prod")
    assert "has uncommitted changes; commit or stash them first" in err
