"""Rollbacks through git: by hand (the library the CLI calls), and written back by the
operator after an automatic rollback, onto a real git server."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from modelsync.api import constants as c
from modelsync.gitops.writeback import RollbackError, branch_name, restore_model
from tests.integration.test_rollback import DEADLINE, broken_model_yaml, rolled_back
from tests.support.gitserver import GitHttpServer, WorkRepo, _git
from tests.support.kube import dict_condition
from tests.support.models import Models, ready_on
from tests.support.syncs import Syncs, model_yaml


def test_rollback_by_hand_commits_the_models_file_from_the_target_revision(
    tmp_path: Path,
) -> None:
    repo = WorkRepo(tmp_path, "models")
    repo.write("models/iris.yaml", model_yaml("iris", version="1"))
    repo.write("models/ranker.yaml", model_yaml("ranker", version="1"))
    first = repo.commit("iris 1")
    repo.write("models/iris.yaml", model_yaml("iris", version="2"))
    repo.write("models/ranker.yaml", model_yaml("ranker", version="5"))
    repo.commit("iris 2, ranker 5")

    restored = restore_model(
        repo.work,
        "iris",
        f"main@sha1:{first}",
        path="models",
        branch="rollback-iris",
        reason="v2 misbehaves",
    )
    assert restored.file == "models/iris.yaml"
    assert (repo.work / "models/iris.yaml").read_text() == model_yaml("iris", version="1")
    # Only that model's file changes; the rest of the later commit stays.
    assert (repo.work / "models/ranker.yaml").read_text() == model_yaml("ranker", version="5")
    assert _git("rev-parse", "--abbrev-ref", "HEAD", cwd=repo.work) == "rollback-iris"
    message = _git("log", "-1", "--format=%B", cwd=repo.work)
    assert message.startswith(f"Roll back model iris to main@sha1:{first}")
    assert "v2 misbehaves" in message
    assert _git("rev-parse", "HEAD", cwd=repo.work) == restored.sha


def test_rollback_by_hand_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    repo = WorkRepo(tmp_path, "models")
    repo.write("iris.yaml", model_yaml("iris"))
    first = repo.commit("iris")
    with pytest.raises(RollbackError, match="no ModelDeployment 'fraud'"):
        restore_model(repo.work, "fraud", first)
    with pytest.raises(RollbackError, match="nothing to commit"):
        restore_model(repo.work, "iris", first)
    with pytest.raises(RollbackError, match="cannot restore"):
        restore_model(repo.work, "iris", "0" * 40)
    with pytest.raises(RollbackError, match="is not a git repository"):
        restore_model(tmp_path / "nowhere", "iris", first)


@pytest.fixture
def read_only_server(git_server: GitHttpServer) -> Iterator[GitHttpServer]:
    server = GitHttpServer(
        git_server.root, git_server.username, git_server.password, read_only=True
    ).start()
    yield server
    server.stop()


def _secret(syncs: Syncs, server: GitHttpServer) -> None:
    syncs.core.create_namespaced_secret(
        syncs.namespace,
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name="git-auth"),
            type=c.SECRET_TYPE_GIT,
            data={
                k: base64.b64encode(v.encode()).decode()
                for k, v in {"username": server.username, "password": server.password}.items()
            },
        ),
    )


def _fail_iris(syncs: Syncs, url: str, repo: WorkRepo) -> tuple[str, str]:
    healthy = model_yaml("iris", version="1", replicas=2) + (
        f"  rollout:\n    progressDeadlineSeconds: {DEADLINE}\n"
    )
    repo.write("iris.yaml", healthy)
    good = repo.commit("iris 1")
    syncs.create("prod", url, secret="git-auth", rollbackWriteBack=True)
    syncs.wait_applied("prod", f"main@sha1:{good}")
    models = Models(syncs.cluster, syncs.namespace)
    models.wait("iris", ready_on("1"))
    repo.write("iris.yaml", broken_model_yaml("iris", "2"))
    bad = repo.commit("iris 2")
    syncs.request("prod")
    models.wait("iris", rolled_back, timeout=DEADLINE + 30)
    return good, bad


def test_rollback_write_back_branch_appears_on_the_git_server(
    syncs: Syncs, git_server: GitHttpServer
) -> None:
    _secret(syncs, git_server)
    repo = syncs.repo("models")
    good, bad = _fail_iris(syncs, syncs.http_url(repo), repo)
    branch = branch_name("iris", bad)
    ms = syncs.wait(
        "prod",
        lambda ms: branch in ((ms or {}).get("status", {}).get("writeBacks") or []),
        f"{branch} to be pushed",
    )
    assert (dict_condition(ms, c.WRITE_BACK) or {}).get("status") == "True"
    heads = _git("ls-remote", str(repo.bare), f"refs/heads/{branch}")
    assert heads, "the branch is on the server"
    content = _git("--git-dir", str(repo.bare), "show", f"{branch}:iris.yaml")
    assert content == _git("--git-dir", str(repo.bare), "show", f"{good}:iris.yaml")
    log = _git("--git-dir", str(repo.bare), "log", "-1", "--format=%B%n%P", branch)
    assert f"main@sha1:{bad} failed and was rolled back automatically" in log
    assert bad in log.splitlines()[-1]  # branched off the failed commit

    # Asked again, it pushes nothing new: one branch per failure.
    token = syncs.request("prod")
    ms = syncs.wait(
        "prod",
        lambda ms: (ms or {}).get("status", {}).get("lastHandledReconcileAt") == token,
        "another sync",
    )
    assert ms["status"]["writeBacks"] == [branch]
    assert _git("ls-remote", str(repo.bare), f"refs/heads/{branch}") == heads


def test_rollback_write_back_without_permission_still_rolls_back(
    syncs: Syncs, read_only_server: GitHttpServer
) -> None:
    _secret(syncs, read_only_server)
    repo = syncs.repo("models")
    _fail_iris(syncs, read_only_server.url(repo.bare.name), repo)
    ms = syncs.wait(
        "prod",
        lambda ms: (
            (dict_condition(ms, c.WRITE_BACK) or {}).get("reason") == c.REASON_WRITE_BACK_FAILED
        ),
        "the write-back to fail",
    )
    assert "could not push" in str(dict_condition(ms, c.WRITE_BACK)["message"])  # type: ignore[index]
    assert (dict_condition(ms, c.READY) or {}).get("reason") == c.REASON_ROLLED_BACK
    assert (
        subprocess.run(
            ["git", "ls-remote", str(repo.bare), "refs/heads/modelsync/*"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        == ""
    )
