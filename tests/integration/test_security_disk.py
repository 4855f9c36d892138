"""Trust boundary: the git cache stays under the operator's disk budget whatever one
tenant's ModelSyncs ask for, and another tenant keeps syncing.

The noisy tenant pins 40 ModelSyncs to 40 commits of its repository (each commit
with a file of its own outside spec.path: 40 snapshots of 200 KiB) and names the
same repository over http in 40 spellings (host case, a trailing `/`, other names of
it on the host), each once a bare repository of its own: some 17 MiB in all (27.7 MiB
on disk at the peak before this budget existed) against a budget of 16 MiB. An
operator process of this test's own, with that small budget (`--git-cache-max-bytes`),
serves both tenants;
the cache's size on disk (blocks, as the kubelet measures an emptyDir) is sampled
all along."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from tests.integration.test_security_size import operator_process
from tests.support.cluster import LocalCluster, tenant_namespace
from tests.support.gitserver import GitHttpServer, WorkRepo, _git
from tests.support.kube import until
from tests.support.syncs import MS, Syncs, model_yaml

KIB, MIB = 1 << 10, 1 << 20
REVISION_BYTES = 256 * KIB  # --max-revision-bytes
BUDGET = 16 * MIB  # --git-cache-max-bytes
BLOB = 200 * KIB  # random: its pack is as large
PINNED = SPELLINGS = 40


def disk_usage(root: Path) -> int:
    """Bytes of `root` on disk, as du counts them (blocks, directories included)."""
    total = 0
    for base, dirs, names in os.walk(root):
        for name in (*dirs, *names):
            try:
                total += os.lstat(os.path.join(base, name)).st_blocks * 512
            except FileNotFoundError:
                continue  # trimmed meanwhile
    return total


class Sampler(threading.Thread):
    """The cache's size and its snapshots, read every 20 ms until stopped."""

    def __init__(self, cache: Path) -> None:
        super().__init__(name="cache-sampler", daemon=True)
        self.cache, self.stopped = cache, threading.Event()
        self.peak = 0
        self.snapshots: set[str] = set()

    def run(self) -> None:
        while not self.stopped.wait(0.02):
            self.peak = max(self.peak, disk_usage(self.cache))
            snapshots = self.cache / "snapshots"
            if snapshots.is_dir():
                self.snapshots |= {p.name for p in snapshots.iterdir() if len(p.name) == 40}


@pytest.fixture
def second_own_namespace(local_cluster: LocalCluster, own_namespace: str) -> Iterator[str]:
    """Another tenant's namespace, left alone by the shared operator as own_namespace is."""
    name = tenant_namespace(local_cluster, f"{own_namespace[:50]}-b")
    yield name
    kubernetes.client.CoreV1Api(local_cluster.api).delete_namespace(
        name, propagation_policy="Background"
    )


def spellings(server: GitHttpServer, root: Path, repo: str) -> list[str]:
    """40 ways to name one repository on the test's git host: a few that every host
    reads the same, and other names of it on the host (links to it, another key each,
    as they must be: a URL carries no user name, which the CRD refuses over http)."""
    port = server.server_address[1]
    folded = [
        f"http://127.0.0.1:{port}/{repo}",
        f"http://127.0.0.1:{port}/{repo}/",
        f"http://LOCALHOST:{port}/{repo}",
        f"http://localhost:{port}/{repo}/",
    ]
    others = []
    for n in range(SPELLINGS - len(folded)):
        (root / f"alias-{n}-{repo}").symlink_to(root / repo)
        others.append(f"http://127.0.0.1:{port}/alias-{n}-{repo}")
    return folded + others


def test_security_one_tenants_revisions_and_spellings_keep_the_cache_under_its_budget(
    local_cluster: LocalCluster,
    crds: list[str],
    own_namespace: str,
    second_own_namespace: str,
    tmp_path: Path,
) -> None:
    root = tmp_path / "served"
    root.mkdir()
    server = GitHttpServer(root, anonymous=True).start()
    cache = tmp_path / "git-cache"
    sampler = Sampler(cache)
    try:
        noisy = Syncs(local_cluster, own_namespace, server)
        quiet = Syncs(local_cluster, second_own_namespace, server)
        repo = WorkRepo(root, "noisy")
        pinned = []
        (repo.work / "data").mkdir()
        for number in range(PINNED):  # committed here, pushed once
            (repo.work / "data" / "blob.bin").write_bytes(os.urandom(BLOB))
            _git("add", "--all", cwd=repo.work)
            _git("commit", "--quiet", "-m", f"revision {number}", cwd=repo.work)
            pinned.append(_git("rev-parse", "HEAD", cwd=repo.work))
        _git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=repo.work)
        other = WorkRepo(root, "quiet")
        first = other.write("models/ok.yaml", model_yaml("ok", version="1")).commit()
        flags = ["--git-cache-max-bytes", str(BUDGET), "--max-revision-bytes", str(REVISION_BYTES)]
        flags.append("--allow-file-urls")  # the pinned ones name it file:// (no CGI: quicker)
        with operator_process(
            local_cluster, own_namespace, tmp_path, "-n", second_own_namespace, *flags
        ) as operator:
            sampler.start()
            quiet.create("quiet", server.url("quiet.git"), path="models")
            quiet.wait_applied("quiet", f"main@sha1:{first}", timeout=20)

            started = time.monotonic()
            for number, sha in enumerate(pinned):
                noisy.create(f"pin-{number}", repo.file_url, ref={"commit": sha})
            for number, url in enumerate(spellings(server, root, "noisy.git")):
                noisy.create(f"spelling-{number}", url, path="models")
            second = other.write("models/ok.yaml", model_yaml("ok", version="2")).commit()
            quiet.request("quiet")
            quiet.wait_applied("quiet", f"main@sha1:{second}", timeout=30)
            print(f"the other tenant applied its commit {time.monotonic() - started:.1f}s in")

            def synced() -> int:
                items = noisy.api.list_namespaced_custom_object(namespace=own_namespace, **MS)
                return sum(1 for ms in items["items"] if (ms.get("status") or {}).get("history"))

            until(
                "every ModelSync of the noisy tenant to have synced once",
                lambda: synced() == PINNED + SPELLINGS,
                timeout=30,
                explain=lambda: f"{synced()} have",
            )
            print(f"the noisy tenant's {synced()} syncs done {time.monotonic() - started:.1f}s in")
            assert operator.poll() is None, "the operator exited"
            assert len(sampler.snapshots) >= PINNED  # each pinned revision was checked out
    finally:
        sampler.stopped.set()
        if sampler.is_alive():
            sampler.join(5)
        server.stop()
    print(
        f"cache peak {sampler.peak / MIB:.1f} MiB (budget {BUDGET / MIB:.0f} MiB), "
        f"{len(sampler.snapshots)} snapshots made"
    )
    assert sampler.peak <= BUDGET, (
        f"the git cache reached {sampler.peak / MIB:.1f} MiB, over its budget of "
        f"{BUDGET / MIB:.0f} MiB"
    )
