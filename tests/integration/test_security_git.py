"""The trust boundary on the git side: what a tenant's repository, URL, ref or Secret can
make the operator's git do. Each test plants what an attacker would, against real git
servers and the real cluster, and checks that nothing reached past the tenant."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from modelsync.api import constants as c
from modelsync.gitops.fetch import FetchError, GitFetcher, Ref
from tests.integration.test_cli import VENV_BIN
from tests.integration.test_rollback import DEADLINE, broken_model_yaml, rolled_back
from tests.support.cluster import LocalCluster, tenant_namespace
from tests.support.gitserver import GitHttpServer, WorkRepo, _git
from tests.support.models import Models, ready_on
from tests.support.operatorproc import spawn_operator
from tests.support.syncs import Syncs, model_yaml


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` (a symlink: of where it points, never followed)."""
    hashes = {}
    for base, _, names in os.walk(root):
        for name in names:
            path = Path(base) / name
            data = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
            hashes[str(path.relative_to(root))] = hashlib.sha256(data).hexdigest()
    return hashes


def healthy_yaml(name: str) -> str:
    return model_yaml(name, version="1", replicas=2) + (
        f"  rollout:\n    progressDeadlineSeconds: {DEADLINE}\n"
    )


def status_of(ms: dict[str, Any] | None) -> dict[str, Any]:
    return (ms or {}).get("status") or {}


def message_of(ms: dict[str, Any] | None) -> str:
    ready = [x for x in status_of(ms).get("conditions") or [] if x["type"] == c.READY]
    return str(ready[0]["message"]) if ready else ""


@pytest.fixture
def other_namespace(local_cluster: LocalCluster, namespace: str) -> Iterator[str]:
    """A second tenant's namespace, served by the shared operator."""
    name = tenant_namespace(local_cluster, f"{namespace[:50]}-b")
    yield name
    kubernetes.client.CoreV1Api(local_cluster.api).delete_namespace(
        name, propagation_policy="Background"
    )


@pytest.fixture
def public_server(tmp_path: Path) -> Iterator[GitHttpServer]:
    """A git host anyone may read from, with repositories of its own."""
    (tmp_path / "public").mkdir()
    server = GitHttpServer(tmp_path / "public", anonymous=True).start()
    yield server
    server.stop()


@pytest.fixture
def counting_server(tmp_path: Path) -> Iterator[GitHttpServer]:
    """A git host of this test alone: its `requests` count is this test's."""
    (tmp_path / "counted").mkdir()
    server = GitHttpServer(tmp_path / "counted").start()
    yield server
    server.stop()


# ------------------------------------------------------------------ 1. symlinks


def test_security_write_back_never_writes_through_planted_symlinks(
    local_cluster: LocalCluster,
    crds: list[str],
    own_namespace: str,
    git_server: GitHttpServer,
    tmp_path: Path,
) -> None:
    """A failed commit plants three symlinks where the loader does not look: one to a
    file, one as a parent directory, one inside a dot-directory (to the operator's own
    cache). The rollback branches are pushed, and not one byte changes behind a link."""
    cache = tmp_path / "cache"
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "sentinel.yaml").write_text("sentinel\n")
    (outside / "dir" / "fraud.yaml").write_text("sentinel\n")
    syncs = Syncs(local_cluster, own_namespace, git_server)
    models = Models(local_cluster, own_namespace)
    names = ("iris", "fraud", "ranker")
    repo = syncs.repo("planted")
    for name in names:
        repo.write(f"{name}.yaml", healthy_yaml(name))
    # Copies of the models in dot-directories, which the loader skips: the write-back
    # used to take the first file naming the model, and these sort first.
    repo.write(".a/iris.yaml", healthy_yaml("iris"))
    repo.write(".b/fraud.yaml", healthy_yaml("fraud"))
    repo.write(".c/deep/ranker.yaml", healthy_yaml("ranker"))
    good = repo.commit("three healthy models")
    syncs.secret("git-auth", git_server.username, git_server.password)

    log = (tmp_path / "operator.log").open("ab")
    process = spawn_operator(
        local_cluster.kubeconfig,
        "-n",
        own_namespace,
        "--http-port",
        "0",
        "--git-cache-dir",
        str(cache),
        "--log-level",
        "WARNING",
        log=log,
    )
    try:
        syncs.create("prod", syncs.http_url(repo), secret="git-auth", rollbackWriteBack=True)
        syncs.wait_applied("prod", f"main@sha1:{good}")
        for name in names:
            models.wait(name, ready_on("1"))

        for name in names:
            repo.write(f"{name}.yaml", broken_model_yaml(name, "2"))
        repo.remove(".a/iris.yaml").symlink(".a/iris.yaml", str(outside / "sentinel.yaml"))
        repo.remove(".b").symlink(".b", str(outside / "dir"))
        repo.remove(".c/deep").symlink(".c/deep", str(cache))
        bad = repo.commit("version 2 of each, and three symlinks")
        syncs.request("prod")
        syncs.wait(
            "prod",
            lambda ms: status_of(ms).get("lastAppliedRevision") == f"main@sha1:{bad}",
            "the failing revision to be applied",
        )
        before = file_hashes(cache)
        outside_before = file_hashes(outside)
        assert before, "the operator's cache holds files"

        for name in names:
            models.wait(name, rolled_back, timeout=DEADLINE + 60)
        syncs.request("prod")
        syncs.wait(
            "prod",
            lambda ms: any(x["type"] == c.WRITE_BACK for x in status_of(ms).get("conditions", [])),
            "a write-back to be tried",
        )
        # Whether or not a branch could be pushed, nothing behind a link changed.
        assert file_hashes(cache) == before
        assert file_hashes(outside) == outside_before
        branches = {name: f"modelsync/rollback/{name}-{bad[:12]}" for name in names}
        syncs.request("prod")
        syncs.wait(
            "prod",
            lambda ms: set(status_of(ms).get("writeBacks") or []) == set(branches.values()),
            "the three rollback branches to be pushed",
        )
    finally:
        process.terminate()
        process.wait(30)
        log.close()

    assert file_hashes(cache) == before
    assert file_hashes(outside) == outside_before
    assert (outside / "sentinel.yaml").read_text() == "sentinel\n"
    for name, branch in branches.items():
        # Each branch restores the file the loader reads, and leaves the links as they were.
        restored = _git("--git-dir", str(repo.bare), "show", f"{branch}:{name}.yaml")
        assert restored + "\n" == healthy_yaml(name)
        changed = _git("--git-dir", str(repo.bare), "diff", "--name-only", bad, branch)
        assert changed == f"{name}.yaml"


CLI_VARIANTS = {
    # The restored file itself is a symlink in the checked-out commit.
    "symlink-to-a-file": (
        {"iris.yaml": "model"},
        {"iris.yaml": "link:sentinel.yaml"},
        "iris.yaml is a symlink",
    ),
    # A directory above the restored file is a symlink.
    "symlink-as-parent-directory": (
        {"models/iris.yaml": "model"},
        {"models": "link:dir"},
        "models is a symlink",
    ),
    # The same, with a name git would quote in its listings.
    "symlink-as-parent-directory-named-in-unicode": (
        {"modèles/iris.yaml": "model"},
        {"modèles": "link:dir"},
        "modèles is a symlink",
    ),
    # A symlink inside a dot-directory, which the loader never reads.
    "symlink-inside-a-dot-directory": (
        {"iris.yaml": "model", ".w/deep/iris.yaml": "model"},
        {"iris.yaml": "broken", ".w/deep": "link:dir"},
        None,
    ),
}


@pytest.mark.parametrize("variant", list(CLI_VARIANTS))
def test_security_cli_rollback_never_writes_through_planted_symlinks(
    variant: str, tmp_path: Path
) -> None:
    healthy, planted, refusal = CLI_VARIANTS[variant]
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "sentinel.yaml").write_text("sentinel\n")
    (outside / "dir" / "iris.yaml").write_text("sentinel\n")
    repo = WorkRepo(tmp_path, "models")
    for path in healthy:
        repo.write(path, model_yaml("iris", version="1"))
    good = repo.commit("iris 1")
    for path, what in planted.items():
        if (repo.work / path).exists():
            repo.remove(path)
        if what.startswith("link:"):
            repo.symlink(path, str(outside / what.removeprefix("link:")))
        else:
            repo.write(path, model_yaml("iris", version="2"))
    bad = repo.commit("iris 2, and a symlink")
    before = file_hashes(outside)

    result = subprocess.run(
        [str(VENV_BIN / "modelsync"), "rollback", "iris", "--to", f"main@sha1:{good}"],
        cwd=repo.work,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert file_hashes(outside) == before
    assert (outside / "sentinel.yaml").read_text() == "sentinel\n"
    if refusal:
        assert result.returncode == 2, result.stdout
        assert refusal in result.stderr
        assert "never writes through it" in result.stderr
        assert _git("rev-parse", "HEAD", cwd=repo.work) == bad
    else:
        assert result.returncode == 0, result.stderr
        restored = yaml.safe_load((repo.work / "iris.yaml").read_text())
        assert restored["spec"]["model"]["version"] == "1"
        assert _git("diff", "--name-only", bad, "HEAD", cwd=repo.work) == "iris.yaml"
        assert _git("status", "--porcelain", cwd=repo.work) == ""


# ------------------------------------------------------------------ 2. other tenants' commits


def test_security_pinned_commit_is_served_only_to_who_can_read_its_repository(
    syncs: Syncs,
    git_server: GitHttpServer,
    public_server: GitHttpServer,
    local_cluster: LocalCluster,
    other_namespace: str,
) -> None:
    """Tenant A's commit is in the operator's cache. Tenant B names that sha with A's URL
    and no Secret, with A's URL and a wrong password, and with B's own public repository:
    each is refused, and none of A's files reach B."""
    private = syncs.repo("private")
    private.write("secret-model.yaml", model_yaml("secret-model"))
    sha = private.commit("A's model")
    syncs.secret("git-a", git_server.username, git_server.password)
    syncs.create("tenant-a", syncs.http_url(private), ref={"commit": sha}, secret="git-a")
    syncs.wait_applied("tenant-a", f"{sha[:12]}@sha1:{sha}")

    tenant_b = Syncs(local_cluster, other_namespace, public_server)
    own = tenant_b.repo("public")
    own.write("README.md", "B's own repository\n")
    own.commit("B's commit")
    tenant_b.secret("wrong", git_server.username, "not-the-password")
    tenant_b.create("no-secret", syncs.http_url(private), ref={"commit": sha})
    tenant_b.create("wrong-password", syncs.http_url(private), ref={"commit": sha}, secret="wrong")
    tenant_b.create("own-repository", tenant_b.http_url(own), ref={"commit": sha})

    for name, expected in (
        ("no-secret", "authentication failed"),
        ("wrong-password", "authentication failed"),
        ("own-repository", f"commit {sha[:12]} is not in {tenant_b.http_url(own)}"),
    ):
        ms = tenant_b.wait_failed(name, c.REASON_FETCH_FAILED)
        assert expected in message_of(ms), message_of(ms)
        assert not status_of(ms).get("lastAppliedRevision")
        assert not status_of(ms).get("inventory")
    assert tenant_b.models() == {}


# ------------------------------------------------------------------ 3. file:// and transports


def test_security_file_urls_are_refused_unless_the_operator_allows_them(
    local_cluster: LocalCluster,
    crds: list[str],
    own_namespace: str,
    git_server: GitHttpServer,
    tmp_path: Path,
) -> None:
    syncs = Syncs(local_cluster, own_namespace, git_server)
    repo = syncs.repo("local")
    repo.write("iris.yaml", model_yaml("iris"))
    repo.commit("one model")
    log = (tmp_path / "operator.log").open("ab")
    process = spawn_operator(
        local_cluster.kubeconfig,
        "-n",
        own_namespace,
        "--http-port",
        "0",
        "--git-cache-dir",
        str(tmp_path / "cache"),
        "--log-level",
        "WARNING",
        log=log,
    )
    try:
        syncs.create("local", repo.file_url)
        ms = syncs.wait_failed("local", c.REASON_FETCH_FAILED)
    finally:
        process.terminate()
        process.wait(30)
        log.close()
    assert len(message_of(ms)) <= 120
    message = ms["status"]["history"][0]["message"]  # whole; the condition's is cut
    assert "file:// URLs are turned off in this operator" in message
    assert "spec.repo.url" in message
    assert c.FLAG_ALLOW_FILE_URLS in message
    assert syncs.models() == {}


def test_security_git_speaks_no_other_transport(tmp_path: Path) -> None:
    """Whatever URL reaches the fetcher (the CRD's rule aside), git runs no command, reads
    no local repository unless allowed, and takes nothing for an option."""
    marker = tmp_path / "pwned"
    target = WorkRepo(tmp_path, "target")
    target.write("iris.yaml", model_yaml("iris")).commit()
    fetcher = GitFetcher(tmp_path / "cache", timeout=30)
    for url in (
        f"--upload-pack=touch {marker}",
        f"ext::sh -c touch% {marker}",
        "fd::3,4",
        target.file_url,
        str(target.bare),
    ):
        with pytest.raises(FetchError):
            fetcher.resolve(url, Ref(branch="main"))
        with pytest.raises(FetchError):
            fetcher.resolve(url, Ref(commit="0" * 40))
    assert not marker.exists()

    # Allowed, a file:// URL still cannot point into the operator's own cache.
    allowing = GitFetcher(tmp_path / "cache", timeout=30, allow_file_urls=True)
    revision = allowing.resolve(target.file_url, Ref(branch="main"))
    allowing.checkout(target.file_url, revision)
    cached = next((tmp_path / "cache" / "repos").glob("*.git"))
    with pytest.raises(FetchError, match="inside the operator's git cache"):
        allowing.resolve(f"file://{cached}", Ref(commit=revision.sha))


def test_security_refs_that_look_like_options_do_nothing(syncs: Syncs) -> None:
    # A short path: the condition's message is cut at its limit, and a long temporary
    # directory (pytest-xdist's) would push "does not exist" past it.
    scratch = Path(tempfile.mkdtemp(prefix="refs-"))
    marker = scratch / "pwned"
    try:
        _refs_that_look_like_options(syncs, marker)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _refs_that_look_like_options(syncs: Syncs, marker: Path) -> None:
    repo = syncs.repo("models")
    repo.write("iris.yaml", model_yaml("iris")).commit()
    syncs.secret("git", syncs.server.username, syncs.server.password)
    syncs.create(
        "dashed",
        syncs.http_url(repo),
        ref={"branch": f"--upload-pack=touch {marker}"},
        secret="git",
    )
    ms = syncs.wait_failed("dashed", c.REASON_FETCH_FAILED)
    assert "does not exist" in message_of(ms)

    result = subprocess.run(
        [str(VENV_BIN / "modelsync"), "rollback", "iris", f"--to=--output={marker}"],
        cwd=repo.work,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "is not a revision" in result.stderr
    assert not marker.exists()


# ------------------------------------------------------------------ 8. credentials


def test_security_only_git_secrets_are_sent_to_the_repository(
    syncs: Syncs, counting_server: GitHttpServer
) -> None:
    """A service-account token, and an Opaque Secret with the right password, are both
    refused before any request leaves; a Secret of type modelsync.io/git is used."""
    repo = WorkRepo(counting_server.root, "models")
    repo.write("iris.yaml", model_yaml("iris"))
    sha = repo.commit("one model")
    url = counting_server.url(repo.bare.name)
    core = syncs.core
    core.create_namespaced_service_account(
        syncs.namespace,
        kubernetes.client.V1ServiceAccount(metadata=kubernetes.client.V1ObjectMeta(name="ci")),
    )
    core.create_namespaced_secret(
        syncs.namespace,
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(
                name="ci-token", annotations={"kubernetes.io/service-account.name": "ci"}
            ),
            type="kubernetes.io/service-account-token",
        ),
    )
    core.create_namespaced_secret(
        syncs.namespace,
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name="opaque"),
            string_data={
                "username": counting_server.username,
                "password": counting_server.password,
            },
        ),
    )
    syncs.create("sa-token", url, secret="ci-token")
    syncs.create("opaque", url, secret="opaque")
    for name, kind in (
        ("sa-token", "kubernetes.io/service-account-token"),
        ("opaque", "Opaque"),
    ):
        ms = syncs.wait_failed(name, c.REASON_FETCH_FAILED)
        assert f"has type {kind!r}" in message_of(ms)
        message = ms["status"]["history"][0]["message"]  # whole; the condition's is cut
        assert f"only Secrets of type {c.SECRET_TYPE_GIT!r}" in message
    assert counting_server.requests == 0

    syncs.secret("git", counting_server.username, counting_server.password)
    syncs.create("typed", url, secret="git")
    syncs.wait_applied("typed", f"main@sha1:{sha}")
    assert counting_server.requests > 0
