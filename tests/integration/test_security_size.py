"""Trust boundary: a huge file in a tenant's repository reaches neither the operator's
memory nor its disk beyond the byte budget, and other tenants keep syncing; and what
the byte budgets let through (dense rendered output, many files, sample bodies) costs
the operator's memory no more than the loader's budget.

Each test runs `modelsync run` as a process of its own (its peak RSS, VmHWM, is read
from /proc) against a git server that honours partial-clone filters or one that does
not. One repository holds a 300 MiB random blob (a 300 MiB pack), another 300 MiB of
zeros (a pack of a few hundred KiB that inflates to 300 MiB): both outside spec.path,
since the snapshot holds the whole tree whatever the path."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelsync.api import constants as c
from modelsync.gitops.writeback import branch_name
from testcluster.stages import FAULT_LABEL, NEVER_READY
from tests.support.cluster import LocalCluster
from tests.support.gitserver import GitHttpServer, WorkRepo
from tests.support.kube import dict_condition
from tests.support.operatorproc import spawn_operator
from tests.support.syncs import Syncs, model_yaml

BIG = 300 << 20  # bytes of each big file
LIMIT = 100 << 20  # the default --max-revision-bytes
BIG_PATH = "base/weights.bin"  # outside spec.path ("models")
MIB = 1 << 20


def commit_big_file(repo: WorkRepo, path: str, size: int, random: bool) -> str:
    """A commit on main of `repo`'s bare repository adding `path`, `size` bytes of random
    data or of zeros, written by git from a stream (never whole in this process)."""
    with subprocess.Popen(
        ["git", "--git-dir", str(repo.bare), "hash-object", "-w", "--stdin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as git:
        assert git.stdin is not None
        assert git.stdout is not None
        zeros = bytes(MIB)
        for _ in range(size // MIB):
            git.stdin.write(os.urandom(MIB) if random else zeros)
        git.stdin.close()
        blob = git.stdout.read().decode().strip()
    assert git.returncode == 0, "git hash-object failed"
    with tempfile.TemporaryDirectory() as scratch:
        index = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        bare = ["--git-dir", str(repo.bare)]

        def run(*args: str) -> str:
            env = {**os.environ, **index, "GIT_CONFIG_NOSYSTEM": "1"}
            env |= {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com"}
            env |= {"GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com"}
            done = subprocess.run(
                ["git", *bare, *args], env=env, capture_output=True, text=True, check=True
            )
            return done.stdout.strip()

        run("read-tree", "main")
        run("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}")
        tree = run("write-tree")
        commit = run("commit-tree", tree, "-p", "main", "-m", f"add {path}")
        run("update-ref", "refs/heads/main", commit)
    return commit


@pytest.fixture(scope="module")
def big_repos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Two repositories with one model under models/ and a 300 MiB file outside it,
    random and zeros; made once, served by both kinds of server."""
    root = tmp_path_factory.mktemp("big-git")
    heads = {}
    for kind in ("random", "zeros"):
        repo = WorkRepo(root, kind)
        repo.write("models/m.yaml", model_yaml(f"big-{kind}")).commit("a model")
        heads[kind] = commit_big_file(repo, BIG_PATH, BIG, random=kind == "random")
    return root, heads


def peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


@contextlib.contextmanager
def operator_process(
    local_cluster: LocalCluster, namespace: str, directory: Path, *args: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`modelsync run` for `namespace` (and `args`), its cache and log in `directory`."""
    log_path = directory / "operator.log"
    with log_path.open("ab") as log:
        process = spawn_operator(
            local_cluster.kubeconfig,
            *("-n", namespace, "--http-port", "0", "--log-level", "INFO"),
            *("--git-cache-dir", str(directory / "git-cache"), *args),
            log=log,
            die_with_parent=True,
        )
    try:
        yield process
    except BaseException:
        print(f"operator log ({log_path}):\n" + "\n".join(log_path.read_text().splitlines()[-60:]))
        raise
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.mark.parametrize("allow_filter", [True, False], ids=["filtering-server", "plain-server"])
def test_security_huge_file_is_refused_without_reaching_memory_and_others_keep_syncing(
    local_cluster: LocalCluster,
    crds: list[str],
    own_namespace: str,
    big_repos: tuple[Path, dict[str, str]],
    allow_filter: bool,
    tmp_path: Path,
) -> None:
    root, heads = big_repos
    server = GitHttpServer(root, allow_filter=allow_filter).start()
    try:
        syncs = Syncs(local_cluster, own_namespace, server)
        syncs.secret("git", server.username, server.password)
        healthy = WorkRepo(root, f"{own_namespace}-healthy")
        first = healthy.write("models/ok.yaml", model_yaml("ok", version="1")).commit()
        with operator_process(local_cluster, own_namespace, tmp_path) as operator:
            syncs.create("healthy", server.url(healthy.bare.name), secret="git", path="models")
            syncs.wait_applied("healthy", f"main@sha1:{first}")
            baseline = peak_rss(operator.pid)

            started = time.monotonic()
            for kind in heads:
                syncs.create(kind, server.url(f"{kind}.git"), secret="git", path="models")
            refused: dict[str, dict[str, Any]] = {}
            for kind in heads:
                refused[kind] = syncs.wait_failed(kind, c.REASON_REVISION_TOO_LARGE)
                print(f"{kind}: refused {time.monotonic() - started:.1f}s after creation")
            peak = peak_rss(operator.pid)
            print(
                f"{'filtering' if allow_filter else 'plain'} server: operator VmHWM "
                f"{baseline / MIB:.0f} MiB after the first sync, {peak / MIB:.0f} MiB after "
                f"refusing both (+{(peak - baseline) / MIB:.0f} MiB)"
            )

            for kind, ms in refused.items():
                # The condition's message is a headline; the whole is in the history.
                headline = (dict_condition(ms, c.READY) or {}).get("message", "")
                assert BIG_PATH in headline, headline
                message = ms["status"]["history"][0]["message"]
                assert heads[kind] in message, message  # the revision
                assert BIG_PATH in message, message  # the file
                assert f"{LIMIT} bytes" in message, message  # the limit
                assert "--max-revision-bytes" in message, message  # what raises it
                if not allow_filter:  # a server that filters never tells the size
                    assert f"{BIG} bytes" in message, message
                assert (ms.get("status") or {}).get("lastAppliedRevision") is None
            assert peak < baseline + 100 * MIB, (
                f"the operator's peak RSS grew by {(peak - baseline) / MIB:.0f} MiB "
                f"(from {baseline / MIB:.0f} MiB) while refusing the big files"
            )

            # The same operator still serves the other tenant: a new commit is applied.
            second = healthy.write("models/ok.yaml", model_yaml("ok", version="2")).commit()
            syncs.request("healthy")
            syncs.wait_applied("healthy", f"main@sha1:{second}")
            assert operator.poll() is None, "the operator exited"
            # Nothing of the refused revisions stays on disk: no snapshot, no scratch, and
            # no big blob in the cached repositories (a server that does not filter sent it).
            cache = tmp_path / "git-cache"
            snapshots = {p.name for p in (cache / "snapshots").iterdir()}
            assert snapshots <= {first, second}, snapshots
            on_disk = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
            assert on_disk < 10 * MIB, f"the git cache holds {on_disk / MIB:.0f} MiB"
    finally:
        server.stop()


# Issue 29 item 3: what the byte budgets let through must not cost more than its bytes.
# The loader's per-file limit, and a value every two bytes: the densest YAML there is.
FILE_LIMIT = 1 << 20
DENSE_CHART = """\
apiVersion: v2
name: dense
version: 0.1.0
"""
# Seven documents, each just under the per-file limit, in one template's output: 7 MiB
# of flow sequences of 0 from a repository of a few hundred bytes.
DENSE_TEMPLATE = """\
{{- range $i := until 7 }}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: dense-{{ $i }}}
data: {}
zeros: [{{ repeat 524200 "0," }}0]
{{- end }}
"""


WIDE_FILES = 16


def wide_file(index: int) -> str:
    """A plain file just under the per-file limit and dense in values (90,000 of them, so
    each document passes the node limit): today's parse cache kept ~6 MiB of it."""
    values = "".join(f"  - v{index:03d}{i:06d}\n" for i in range(FILE_LIMIT // 16))
    text = f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: wide-{index}\nwide:\n{values}"
    assert len(text) < FILE_LIMIT
    return text


def sample_body(size: int) -> str:
    """JSON a sample request might send: rows of numbers, `size` bytes."""
    row = "[" + ",".join(["0.5"] * 30) + "]"
    rows = ",".join([row] * (size // (len(row) + 1)))
    return '{"inputs": [' + rows + "]}\n"


@pytest.mark.parametrize("case", ["rendered", "files", "write-back"])
def test_security_memory_stays_bounded_by_the_budgets_not_the_bytes(
    local_cluster: LocalCluster,
    crds: list[str],
    own_namespace: str,
    renderers: dict[str, Path],
    tmp_path: Path,
    case: str,
) -> None:
    """The operator's peak RSS (VmHWM) stays under its baseline + 100 MiB while it refuses
    7 MiB of rendered output in 7 documents each just under the per-file limit (flow
    sequences of 0), loads files of 1 MiB past the loaded budget, or writes back a
    rollback next to a 4 MiB sample body (`*.body.json`, which the sync never parses)."""
    server = GitHttpServer(tmp_path / "git").start()
    try:
        syncs = Syncs(local_cluster, own_namespace, server)
        syncs.secret("git", server.username, server.password)
        repo = WorkRepo(tmp_path / "git", f"{own_namespace}-{case}")
        with operator_process(
            local_cluster, own_namespace, tmp_path, "--helm", str(renderers["helm"])
        ) as operator:
            if case == "write-back":
                _write_back_next_to_a_body(syncs, repo, server, operator)
                return
            first = repo.write("models/ok.yaml", model_yaml("ok")).commit()
            spec: dict[str, Any] = {"path": "models"}
            syncs.create("prod", server.url(repo.bare.name), secret="git", **spec)
            syncs.wait_applied("prod", f"main@sha1:{first}")
            baseline = peak_rss(operator.pid)
            started = time.monotonic()
            if case == "rendered":
                repo.write("charts/dense/Chart.yaml", DENSE_CHART)
                repo.write("charts/dense/templates/dense.yaml", DENSE_TEMPLATE)
                repo.commit("a chart of 7 MiB")
                syncs.patch("prod", {"spec": {"helm": {"chart": "charts/dense"}}})
            else:
                # 16 files of 1 MiB: past the loaded budget (64 MiB of objects, ~11 of
                # these) as the 80 are; fetching 80 MiB took 60 s here. The 80
                # are measured in tests/unit/gitops/test_load.py (the loader, in a process
                # of its own).
                for index in range(WIDE_FILES):
                    repo.write(f"models/wide-{index:02d}.yaml", wide_file(index))
                repo.commit(f"{WIDE_FILES} files of 1 MiB")
                syncs.request("prod")
            ms = syncs.wait_failed("prod", c.REASON_VALIDATION_FAILED)
            peak = peak_rss(operator.pid)
            print(
                f"{case}: refused in {time.monotonic() - started:.1f}s; VmHWM "
                f"{baseline / MIB:.0f} MiB before, {peak / MIB:.0f} MiB after"
            )
            message = ms["status"]["history"][0]["message"]
            if case == "rendered":
                assert "more than 100000 values" in message, message
            else:
                assert "MiB of the operator's memory" in message, message
            assert peak < baseline + 100 * MIB, (
                f"{case}: the operator's peak RSS grew by {(peak - baseline) / MIB:.0f} MiB"
            )
            assert operator.poll() is None, "the operator exited"
    finally:
        server.stop()


def _write_back_next_to_a_body(
    syncs: Syncs, repo: WorkRepo, server: GitHttpServer, operator: subprocess.Popen[bytes]
) -> None:
    deadline = 5
    healthy = model_yaml("iris", version="1", replicas=2) + (
        f"  rollout:\n    progressDeadlineSeconds: {deadline}\n"
    )
    repo.write("models/iris.yaml", healthy)
    # Beside the model, never referenced: the sync skips *.body.json; write-back read it.
    repo.write("models/big.body.json", sample_body(4 << 20))
    good = repo.commit("iris 1")
    url = server.url(repo.bare.name)
    syncs.create("prod", url, secret="git", path="models", rollbackWriteBack=True)
    syncs.wait_applied("prod", f"main@sha1:{good}")
    baseline = peak_rss(operator.pid)
    broken = healthy.replace('version: "1"', 'version: "2"') + (
        f"  podMetadata:\n    labels:\n      {FAULT_LABEL}: {NEVER_READY}\n"
    )
    repo.write("models/iris.yaml", broken)
    bad = repo.commit("iris 2")
    syncs.request("prod")
    branch = branch_name("iris", bad)
    syncs.wait(
        "prod",
        lambda ms: branch in ((ms or {}).get("status", {}).get("writeBacks") or []),
        f"{branch} to be pushed",
        timeout=deadline + 25,
    )
    peak = peak_rss(operator.pid)
    print(f"write-back: VmHWM {baseline / MIB:.0f} MiB before, {peak / MIB:.0f} MiB after")
    assert peak < baseline + 100 * MIB, (
        f"write-back: the operator's peak RSS grew by {(peak - baseline) / MIB:.0f} MiB"
    )
