"""The modelsync CLI (and kubectl plugin), run as a real program against the local
cluster, the shared operator and real git repositories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modelsync.api import constants as c
from tests.support.cluster import LocalCluster
from tests.support.gitserver import WorkRepo, _git
from tests.support.paths import FIXTURES
from tests.support.syncs import Syncs, model_yaml

VENV_BIN = Path(sys.executable).parent


def modelsync(
    cluster: LocalCluster, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "modelsync"), *args],
        env=env or cluster.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


@pytest.fixture
def synced(syncs: Syncs) -> tuple[Syncs, WorkRepo, str]:
    repo = syncs.repo("models")
    repo.write("iris.yaml", model_yaml("iris"))
    sha = repo.commit("iris")
    syncs.create("prod", repo.file_url)
    syncs.wait_applied("prod", f"main@sha1:{sha}")
    return syncs, repo, sha


def test_cli_status_shows_syncs_and_models(
    synced: tuple[Syncs, WorkRepo, str], local_cluster: LocalCluster
) -> None:
    syncs, _, sha = synced
    result = modelsync(local_cluster, "status", "-n", syncs.namespace)
    assert result.returncode == 0, result.stderr
    assert "prod" in result.stdout
    assert f"main@sha1:{sha}" in result.stdout
    assert "iris" in result.stdout
    assert "\x1b[" not in result.stdout  # no colour when not on a terminal
    everywhere = modelsync(local_cluster, "status", "-A")
    assert syncs.namespace in everywhere.stdout


def test_cli_works_as_a_kubectl_plugin(
    synced: tuple[Syncs, WorkRepo, str], local_cluster: LocalCluster
) -> None:
    syncs, _, _ = synced
    env = local_cluster.env()
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env['PATH']}"
    plugins = subprocess.run(
        [str(local_cluster.binaries.kubectl), "plugin", "list"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert "kubectl-modelsync" in plugins.stdout
    result = subprocess.run(
        [str(local_cluster.binaries.kubectl), "modelsync", "status", "-n", syncs.namespace],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "prod" in result.stdout


def test_cli_history_lists_the_rollouts(
    synced: tuple[Syncs, WorkRepo, str], local_cluster: LocalCluster
) -> None:
    syncs, repo, _ = synced
    from tests.support.models import Models, ready_on

    models = Models(syncs.cluster, syncs.namespace)
    models.wait("iris", ready_on("1"))
    repo.write("iris.yaml", model_yaml("iris", version="2"))
    repo.commit("iris 2")
    assert modelsync(local_cluster, "sync", "prod", "--wait", "-n", syncs.namespace).returncode == 0
    models.wait("iris", ready_on("2"))
    result = modelsync(local_cluster, "history", "iris", "-n", syncs.namespace)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if c.HISTORY_SUCCEEDED in line]
    assert len(rows) == 2


def test_cli_sync_wait_exits_by_the_outcome(
    synced: tuple[Syncs, WorkRepo, str], local_cluster: LocalCluster
) -> None:
    syncs, repo, _ = synced
    sha = repo.write("ranker.yaml", model_yaml("ranker")).commit("ranker")
    ok = modelsync(local_cluster, "sync", "prod", "--wait", "-n", syncs.namespace)
    assert ok.returncode == 0, ok.stderr
    assert f"main@sha1:{sha}" in ok.stdout
    repo.write("broken.yaml", "a: [1,\n").commit("broken")
    failed = modelsync(local_cluster, "sync", "prod", "--wait", "-n", syncs.namespace)
    assert failed.returncode == 1
    assert "sync failed" in failed.stderr
    assert "broken.yaml:2: invalid YAML" in failed.stderr


def test_cli_suspend_and_resume(
    synced: tuple[Syncs, WorkRepo, str], local_cluster: LocalCluster
) -> None:
    syncs, _, _ = synced
    for command, expected in (("suspend", True), ("resume", False)):
        result = modelsync(local_cluster, command, "prod", "-n", syncs.namespace)
        assert result.returncode == 0, result.stderr
        ms = syncs.api.get_namespaced_custom_object(
            name="prod",
            namespace=syncs.namespace,
            group=c.GROUP,
            version=c.VERSION,
            plural=c.MODELSYNC_PLURAL,
        )
        assert ms["spec"]["suspend"] is expected


def test_cli_rollback_writes_and_pushes_the_commit(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    repo = WorkRepo(tmp_path, "models")
    first = repo.write("iris.yaml", model_yaml("iris", version="1")).commit("1")
    repo.write("iris.yaml", model_yaml("iris", version="2")).commit("2")
    result = modelsync(
        local_cluster,
        "rollback",
        "iris",
        "--to",
        f"main@sha1:{first}",
        "--repo-dir",
        str(repo.work),
        "--branch",
        "rollback/iris",
        "--push",
    )
    assert result.returncode == 0, result.stderr
    pushed = _git("--git-dir", str(repo.bare), "show", "rollback/iris:iris.yaml")
    assert yaml.safe_load(pushed)["spec"]["model"]["version"] == "1"


def test_cli_bad_input_gives_one_clear_line_and_exit_2(
    local_cluster: LocalCluster, tmp_path: Path, syncs: Syncs
) -> None:
    no_config = {**os.environ, "KUBECONFIG": str(tmp_path / "missing")}
    unreachable_config = tmp_path / "unreachable"
    config = yaml.safe_load(local_cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    unreachable_config.write_text(yaml.safe_dump(config))
    repo = WorkRepo(tmp_path, "models")
    first = repo.write("iris.yaml", model_yaml("iris")).commit("1")
    dirty = repo.work / "iris.yaml"
    cases = [
        (["status"], no_config, "no usable kubeconfig"),
        (
            ["status"],
            {**os.environ, "KUBECONFIG": str(unreachable_config)},
            "cannot reach the cluster",
        ),
        (
            ["history", "nothing-here", "-n", syncs.namespace],
            None,
            "ModelDeployment 'nothing-here' not found",
        ),
        (
            ["sync", "nothing-here", "-n", syncs.namespace],
            None,
            "ModelSync 'nothing-here' not found",
        ),
        (
            ["rollback", "iris", "--to", first, "--repo-dir", str(tmp_path / "nope")],
            None,
            "does not exist",
        ),
        (
            ["rollback", "iris", "--to", "0" * 40, "--repo-dir", str(repo.work)],
            None,
            "cannot restore",
        ),
        (
            ["rollback", "fraud", "--to", first, "--repo-dir", str(repo.work)],
            None,
            "no ModelDeployment 'fraud'",
        ),
    ]
    for args, env, words in cases:
        result = modelsync(local_cluster, *args, env=env)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (args, lines)
        assert words in lines[0], (args, lines)
    dirty.write_text("changed\n")
    result = modelsync(
        local_cluster, "rollback", "iris", "--to", first, "--repo-dir", str(repo.work)
    )
    assert result.returncode == 2
    assert "uncommitted changes" in result.stderr


def test_cli_diff_says_what_a_merge_would_change(
    synced: tuple[Syncs, WorkRepo, str], local_cluster: LocalCluster
) -> None:
    syncs, repo, _ = synced
    namespace = syncs.namespace
    same = modelsync(local_cluster, "diff", str(repo.work), "--sync", "prod", "-n", namespace)
    assert same.returncode == 0, same.stderr
    assert "no changes" in same.stdout

    # A pull request: bump iris, add ranker; nothing is committed or pushed.
    repo.write("iris.yaml", model_yaml("iris", version="2"))
    repo.write("ranker.yaml", model_yaml("ranker"))
    changed = modelsync(local_cluster, "diff", str(repo.work), "--sync", "prod", "-n", namespace)
    assert changed.returncode == 1, changed.stderr
    assert f"create  ModelDeployment {namespace}/ranker" in changed.stdout
    assert f"update  ModelDeployment {namespace}/iris (spec.model.version, spec.model.uri)" in (
        changed.stdout
    )
    assert "model   iris: version 1 -> 2" in changed.stdout
    assert "model   ranker: new, version 1" in changed.stdout
    markdown = modelsync(
        local_cluster,
        "diff",
        str(repo.work),
        "--sync",
        "prod",
        "-n",
        namespace,
        "--output",
        "markdown",
    )
    assert "| create | `ModelDeployment" in markdown.stdout
    # The cluster was not touched.
    assert set(syncs.models()) == {"iris"}

    # Dropping iris would prune the whole inventory: the diff says the sync would refuse.
    repo.remove("iris.yaml")
    refused = modelsync(local_cluster, "diff", str(repo.work), "--sync", "prod", "-n", namespace)
    assert refused.returncode == 2
    assert "prune refused: pruning would delete 1 of 1 applied objects" in refused.stderr

    repo.write("broken.yaml", "a: [1,\n")
    broken = modelsync(local_cluster, "diff", str(repo.work), "--sync", "prod", "-n", namespace)
    assert broken.returncode == 2
    assert "broken.yaml:2: invalid YAML" in broken.stderr


def test_cli_validate_server_catches_what_offline_cannot(
    local_cluster: LocalCluster, namespace: str, tmp_path: Path, crds: list[str]
) -> None:
    good = FIXTURES / "manifests" / "good"
    ok = modelsync(local_cluster, "validate", str(good), "--server", "-n", namespace)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # Weights that go down: the rule needs Kubernetes' own CEL (isSorted), so only the
    # API server can judge it.
    (tmp_path / "canary.yaml").write_text(
        model_yaml("iris")
        + """\
  rollout:
    strategy: Canary
    steps: [{weight: 50}, {weight: 20}]
"""
    )
    offline = modelsync(local_cluster, "validate", str(tmp_path))
    assert offline.returncode == 0, offline.stdout
    online = modelsync(local_cluster, "validate", str(tmp_path), "--server", "-n", namespace)
    assert online.returncode == 1
    assert f"canary.yaml:1: ModelDeployment {namespace}/iris:" in online.stdout
    assert "rollout.steps weights must increase" in online.stdout
    assert modelsync(local_cluster, "get", "md").returncode == 2  # no such command: usage


def test_cli_validate_server_refuses_what_the_operator_would(
    synced: tuple[Syncs, WorkRepo, str], local_cluster: LocalCluster, tmp_path: Path
) -> None:
    """The dry run alone, with the CLI user's rights, passes what a sync then refuses:
    an object in another namespace, and (as a given ModelSync's content) an object that
    exists and is no ModelSync's."""
    syncs, _, _ = synced
    ns = syncs.namespace
    config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}{where}\ndata: {{a: b}}\n"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "cm.yaml").write_text(
        config.format(name="planted", where="\n  namespace: kube-system")
    )
    result = modelsync(local_cluster, "validate", str(elsewhere), "--server", "-n", ns)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cm.yaml:1: ConfigMap kube-system/planted: namespace 'kube-system'" in result.stdout
    assert "--allow-other-namespaces" in result.stdout

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "iris.yaml").write_text(model_yaml("iris"))
    (taken / "legacy.yaml").write_text(config.format(name="legacy", where=""))
    syncs.core.create_namespaced_config_map(ns, {"metadata": {"name": "legacy"}})
    plain = modelsync(local_cluster, "validate", str(taken), "--server", "-n", ns)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    as_prod = modelsync(
        local_cluster, "validate", str(taken), "--server", "--sync", "prod", "-n", ns
    )
    assert as_prod.returncode == 1, as_prod.stdout + as_prod.stderr
    assert f"legacy.yaml:1: ConfigMap {ns}/legacy: exists and was not created" in as_prod.stdout
    assert "iris.yaml" not in as_prod.stdout  # prod's own model: no conflict
    usage = modelsync(local_cluster, "validate", str(taken), "--sync", "prod", "-n", ns)
    assert usage.returncode == 2
    assert "--sync needs --server" in usage.stderr
