"""Faults: what the operator survives, on a real cluster with real git over HTTP.

The API server restarted in the middle of a sync; the operator SIGKILLed again and
again while it applies hundreds of models, and once while git fetches; the git server
gone for a while; a git server that hangs. Each test injects its fault at a chosen
moment and then waits, with a deadline, for the state the operator must reach by itself.

Operators of these tests run as processes of their own (`modelsync run`), in a
namespace the shared session operator leaves alone (`own-operator-*`) or on a
cluster of the test's own, so killing them or their API server disturbs nothing
else. Random delays are seeded (MODELSYNC_FAULT_SEED) and named in failures.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import random
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client import AppsV1Api, CoreV1Api, CustomObjectsApi
from kubernetes.dynamic import DynamicClient

from modelsync.api import constants as c
from modelsync.runtime.operator import Operator
from testcluster import build, launcher, stages
from tests.support.cluster import LocalCluster
from tests.support.gitserver import GitHttpServer, SlowHttpServer, WorkRepo
from tests.support.kube import (
    dict_condition,
    install_crds,
    install_tenant_role,
    make_tenant,
    until,
    wait_for,
    wait_for_set,
)
from tests.support.models import MD, Models, ready_on
from tests.support.operatorproc import spawn_operator
from tests.support.syncs import MS, Syncs, model_yaml

SEED = int(os.environ.get("MODELSYNC_FAULT_SEED", "20240611"))


# --------------------------------------------------------------------------- helpers


class OwnOperator:
    """`modelsync run` as a process of the test's own, restartable: one log file for all
    of its lives (shown when a test fails), one git cache kept across them (as a pod's
    emptyDir outlives its container)."""

    def __init__(
        self, kubeconfig: Path, directory: Path, *args: str, env: dict[str, str] | None = None
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = directory / "operator.log"
        self.git_cache = directory / "git-cache"
        self.args = (
            *("--http-port", "0", "--log-level", "INFO", "--git-cache-dir", str(self.git_cache)),
            *args,
        )
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> OwnOperator:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- operator start {self.starts} ---\n".encode())
            log.flush()
            # A process group of its own, so `kill` takes its git commands along.
            self.process = spawn_operator(
                self.kubeconfig,
                *self.args,
                log=log,
                env=self.env,
                detach=True,
                die_with_parent=True,
            )
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL to the operator and its children (git): no clean-up, no last status
        write, lock files left where they are; as when a container is killed."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


@contextlib.contextmanager
def own_operator(
    kubeconfig: Path, directory: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[OwnOperator]:
    """An OwnOperator, started; stopped on the way out; its log printed if the test fails
    (pytest shows what a failing test printed)."""
    operator = OwnOperator(kubeconfig, directory, *args, env=env).start()
    try:
        yield operator
    except BaseException:
        print(f"operator log ({operator.log_path}), last lines:\n{operator.log_tail()}")
        raise
    finally:
        operator.stop()


def make_namespace(api: kubernetes.client.ApiClient, name: str) -> None:
    """A tenant namespace on a separate cluster (whose tenant role separate_cluster installs)."""
    CoreV1Api(api).create_namespace(
        kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=name))
    )
    make_tenant(api, name)


@pytest.fixture
def separate_cluster(binaries: build.Binaries, tmp_path: Path) -> Iterator[LocalCluster]:
    """A cluster of the test's own (one kwok node, CRDs installed), for faults the shared
    one must not suffer; stopped at the end."""
    with launcher.running(
        tmp_path / "cluster", binaries, nodes=1, die_with_parent=True, log=io.StringIO()
    ) as cluster:
        api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
        install_crds(api)
        install_tenant_role(api, binaries.path("helm"))
        yield LocalCluster(cluster=cluster, binaries=binaries, api=api)


def ready_at(revision: str) -> Callable[[dict[str, Any] | None], bool]:
    def check(ms: dict[str, Any] | None) -> bool:
        ready = dict_condition(ms, c.READY) or {}
        return (
            ready.get("status") == "True"
            and ((ms or {}).get("status") or {}).get("lastAppliedRevision") == revision
        )

    check.__name__ = f"Ready=True at {revision}"
    return check


def model_names(api: CustomObjectsApi, namespace: str) -> set[str]:
    items = api.list_namespaced_custom_object(namespace=namespace, **MD)["items"]
    return {md["metadata"]["name"] for md in items}


def git_secret(api: kubernetes.client.ApiClient, namespace: str, server: GitHttpServer) -> str:
    data = {"username": server.username, "password": server.password}
    CoreV1Api(api).create_namespaced_secret(
        namespace,
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name="git-auth"),
            type=c.SECRET_TYPE_GIT,
            data={k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        ),
    )
    return "git-auth"


def create_sync(
    api: CustomObjectsApi, namespace: str, name: str, url: str, secret: str | None, **spec: Any
) -> None:
    repo: dict[str, Any] = {"url": url}
    if secret:
        repo["secretRef"] = {"name": secret}
    body = {
        "apiVersion": c.API_VERSION,
        "kind": c.MODELSYNC_KIND,
        "metadata": {"name": name},
        "spec": {"repo": repo, "interval": "1h", **spec},
    }
    api.create_namespaced_custom_object(namespace=namespace, body=body, **MS)


def wait_sync(
    api: CustomObjectsApi,
    namespace: str,
    name: str,
    check: Callable[[dict[str, Any] | None], bool],
    timeout: float,
    describe: str = "",
) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(
        lambda **kw: api.list_namespaced_custom_object(**MS, **kw),
        name,
        check,
        namespace=namespace,
        timeout=timeout,
        describe=describe or f"{name} to be {getattr(check, '__name__', 'as expected')}",
    )
    return found


# --------------------------------------------------------------------------- API server


def test_fault_api_server_restarted_mid_sync_the_sync_completes(
    separate_cluster: LocalCluster, git_server: GitHttpServer, tmp_path: Path
) -> None:
    cluster = separate_cluster
    api = CustomObjectsApi(cluster.api)
    namespace = "faults"
    make_namespace(cluster.api, namespace)
    repo = WorkRepo(git_server.root, f"apiserver-restart-{secrets.token_hex(3)}")
    count = 100
    for index in range(count):
        repo.write(f"models/m{index:03}.yaml", model_yaml(f"m{index:03}", replicas=0))
    sha = repo.commit(f"{count} models")
    revision = f"main@sha1:{sha}"
    secret = git_secret(cluster.api, namespace, git_server)

    with own_operator(cluster.kubeconfig, tmp_path) as operator:
        create_sync(api, namespace, "prod", git_server.url(repo.bare.name), secret, path="models")
        # Applying has begun (the first model is there): the API server goes away.
        wait_for_set(
            DynamicClient(cluster.api).resources.get(
                api_version=c.API_VERSION, kind=c.MODELDEPLOYMENT_KIND
            ),
            lambda items: len(items) > 0,
            namespace=namespace,
            timeout=60,
            describe="the first model of the sync",
        )
        launcher.stop_apiserver(cluster.cluster)
        stopped = time.monotonic()
        # Down for a few seconds: the operator's requests and watches fail meanwhile.
        while time.monotonic() - stopped < 4:
            assert operator.running(), "the operator died while the API server was down"
            time.sleep(0.2)
        launcher.start_apiserver(cluster.cluster, cluster.binaries, die_with_parent=True)

        ms = wait_sync(api, namespace, "prod", ready_at(revision), timeout=75)
        assert model_names(api, namespace) == {f"m{index:03}" for index in range(count)}
        # The attempt the restart broke recorded nothing; the one that succeeded found
        # what it had created (unchanged) and made the rest: the restart hit mid-sync.
        last = ms["status"]["history"][0]
        assert (last["created"] + last["unchanged"], last["deleted"]) == (count, 0), last
        assert last["unchanged"] > 0, f"the restart did not interrupt the sync: {last}"
        assert operator.running(), "the operator died after the API server came back"


# --------------------------------------------------------------------------- git server down


def test_fault_git_server_down_fails_clearly_then_recovers_by_itself(
    running_operator: Operator, local_cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    server = GitHttpServer(tmp_path / "git").start()
    try:
        syncs = Syncs(local_cluster, namespace, server)
        repo = syncs.repo("models")
        repo.write("iris.yaml", model_yaml("iris")).write("fraud.yaml", model_yaml("fraud"))
        first = repo.commit("two models")
        syncs.secret("git-auth", server.username, server.password)
        syncs.create("prod", syncs.http_url(repo), secret="git-auth")
        syncs.wait_applied("prod", f"main@sha1:{first}")
        models = Models(local_cluster, namespace)
        for name in ("iris", "fraud"):
            models.wait(name, ready_on("1"))
        before = {name: md["metadata"]["resourceVersion"] for name, md in syncs.models().items()}
        apps = AppsV1Api(local_cluster.api)

        server.stop()
        token = syncs.request("prod")
        ms = syncs.wait_failed("prod", c.REASON_FETCH_FAILED, token)
        message = str((dict_condition(ms, c.READY) or {}).get("message"))
        assert message.startswith("could not reach the repository"), message
        assert ms["status"]["lastAppliedRevision"] == f"main@sha1:{first}"
        # What git said last keeps serving, untouched.
        after = {name: md["metadata"]["resourceVersion"] for name, md in syncs.models().items()}
        assert after == before
        for name in ("iris", "fraud"):
            deployment = apps.read_namespaced_deployment(name, namespace)
            assert deployment.status.available_replicas == 1, deployment.status

        # The host comes back, with a new commit; nobody asks for a sync: the operator
        # tries again by itself, sooner than its one-hour interval. Down for longer than
        # the first retry (5s), so that one fails too and the next must still come.
        repo.write("iris.yaml", model_yaml("iris", version="2"))
        second = repo.commit("iris 2")
        time.sleep(7)  # the outage goes on: the fault, not a wait for a result
        server = server.restarted()
        syncs.wait(
            "prod",
            ready_at(f"main@sha1:{second}"),
            f"prod to recover and apply {second[:12]} without being asked",
            timeout=60,
        )
        assert syncs.models()["iris"]["spec"]["model"]["version"] == "2"
        models.wait("iris", ready_on("2"))
    finally:
        server.stop()


# --------------------------------------------------------------------------- slow git server

GIT_TIMEOUT = 3  # the test operator's MODELSYNC_GIT_TIMEOUT_SECONDS


def test_fault_slow_git_server_times_out_and_requests_do_not_pile_up(
    local_cluster: LocalCluster, own_namespace: str, tmp_path: Path
) -> None:
    api = CustomObjectsApi(local_cluster.api)
    server = SlowHttpServer(delay=300).start()
    try:
        with own_operator(
            local_cluster.kubeconfig,
            tmp_path,
            "-n",
            own_namespace,
            env={"MODELSYNC_GIT_TIMEOUT_SECONDS": str(GIT_TIMEOUT)},
        ):
            create_sync(api, own_namespace, "slow", server.url("models.git"), None)
            until("the operator's first request", lambda: server.total >= 1, 60)
            hung = time.monotonic()
            # Asked again and again while the first fetch hangs: each request is noted,
            # none starts a fetch beside the one under way.
            tokens = []
            for bump in range(5):
                tokens.append(f"bump-{bump}")
                api.patch_namespaced_custom_object(
                    name="slow",
                    namespace=own_namespace,
                    body={
                        "metadata": {"annotations": {c.ANNOTATION_RECONCILE_REQUESTED: tokens[-1]}}
                    },
                    **MS,
                )

            def timed_out(ms: dict[str, Any] | None) -> bool:
                ready = dict_condition(ms, c.READY) or {}
                return (
                    ready.get("status") == "False"
                    and ready.get("reason") == c.REASON_FETCH_FAILED
                    and "timed out" in str(ready.get("message"))
                )

            # The git timeout is felt within 15 s of its end: the wait's deadline.
            deadline = hung + GIT_TIMEOUT + 15
            ms = wait_sync(api, own_namespace, "slow", timed_out, deadline - time.monotonic())
            message = str((dict_condition(ms, c.READY) or {}).get("message"))
            assert f"timed out after {GIT_TIMEOUT}s" in message, message
            assert "lastAppliedRevision" not in ms["status"]

            # The five requests made one more attempt, after the first: it fails alike.
            def handled_last(ms: dict[str, Any] | None) -> bool:
                status = (ms or {}).get("status") or {}
                return timed_out(ms) and status.get("lastHandledReconcileAt") == tokens[-1]

            wait_sync(api, own_namespace, "slow", handled_last, timeout=2 * GIT_TIMEOUT + 30)
            assert server.peak == 1, f"{server.peak} requests at once from one ModelSync"
            assert server.total <= 3, f"{server.total} requests for 5 sync requests"
    finally:
        server.stop()


# --------------------------------------------------------------------------- operator SIGKILLed

FLAKY = "flaky"  # healthy at first; a later commit makes its pods never ready
DEADLINE = 5  # its progressDeadlineSeconds


def flaky_yaml(version: str, broken: bool = False) -> str:
    text = model_yaml(FLAKY, version=version, replicas=1)
    text += f"  rollout:\n    progressDeadlineSeconds: {DEADLINE}\n"
    if broken:
        text += f"  podMetadata:\n    labels:\n      {stages.FAULT_LABEL}: {stages.NEVER_READY}\n"
    return text


class Revision:
    """The models a commit holds (name -> version), and how to tell it on the cluster."""

    def __init__(self, models: dict[str, str]) -> None:
        self.models = dict(models)
        self.sha = ""

    def changes(self, rng: random.Random, prefix: str, version: str, count: int) -> Revision:
        """The next commit: `count` models removed, `count` added, `count` changed (the
        flaky one aside)."""
        names = sorted(name for name in self.models if name != FLAKY)
        picked = rng.sample(names, 2 * count)
        models = dict(self.models)
        for name in picked[:count]:
            del models[name]
        for name in picked[count:]:
            models[name] = version
        for index in range(count):
            models[f"{prefix}{index:03}"] = "1"
        return Revision(models)

    def write(self, repo: WorkRepo, previous: Revision | None, broken: set[str]) -> str:
        for name in set(previous.models if previous else ()) - set(self.models):
            repo.remove(f"models/{name}.yaml")
        for name, version in self.models.items():
            if previous is not None and previous.models.get(name) == version:
                continue
            text = (
                flaky_yaml(version, name in broken)
                if name == FLAKY
                else model_yaml(name, version, replicas=0)
            )
            repo.write(f"models/{name}.yaml", text)
        self.sha = repo.commit(f"{len(self.models)} models")
        return self.sha

    def seen_in(self, previous: Revision) -> Callable[[list[dict[str, Any]]], bool]:
        """True once the cluster shows anything of this commit that `previous` lacks: its
        sync is applying."""
        news = {n: v for n, v in self.models.items() if previous.models.get(n) != v}

        def applying(items: list[dict[str, Any]]) -> bool:
            return any(
                news.get(md["metadata"]["name"]) == md["spec"]["model"]["version"] for md in items
            )

        return applying


def test_fault_operator_sigkilled_mid_sync_again_and_again_converges_on_git(
    local_cluster: LocalCluster, own_namespace: str, git_server: GitHttpServer, tmp_path: Path
) -> None:
    rng = random.Random(SEED)  # noqa: S311 - reproducible fault points, not secrets
    namespace = own_namespace
    api = CustomObjectsApi(local_cluster.api)
    dynamic = DynamicClient(local_cluster.api)
    mds = dynamic.resources.get(api_version=c.API_VERSION, kind=c.MODELDEPLOYMENT_KIND)
    repo = WorkRepo(git_server.root, f"{namespace}-models")
    secret = git_secret(local_cluster.api, namespace, git_server)
    kills: list[str] = []  # where each kill hit, for the failure message

    def kill_after(operator: OwnOperator, seconds: float, what: str) -> None:
        time.sleep(seconds)  # the random point of the kill, not an assertion
        assert operator.running(), f"the operator died by itself before kill {len(kills) + 1}"
        operator.kill()
        count = len(api.list_namespaced_custom_object(namespace=namespace, **MD)["items"])
        kills.append(f"{what} +{seconds:.1f}s ({count} models)")

    first = Revision({f"m{index:03}": "1" for index in range(199)} | {FLAKY: "1"})
    first.write(repo, None, set())
    second = first.changes(rng, "n", "2", 25)
    third = second.changes(rng, "p", "3", 25)
    third.models[FLAKY] = "2"  # never ready: rolled back to version 1

    with own_operator(local_cluster.kubeconfig, tmp_path, "-n", namespace) as operator:
        try:
            create_sync(
                api, namespace, "prod", git_server.url(repo.bare.name), secret, path="models"
            )
            # 1: killed while creating the first commit's models.
            target = rng.randint(10, 150)
            wait_for_set(
                mds,
                lambda items: len(items) >= target,
                namespace=namespace,
                timeout=60,
                describe=f"{target} models of the first commit",
            )
            kill_after(operator, 0, f"first commit at {target} models")

            # 2: a second commit (25 removed, 25 added, 25 changed), killed while applying it.
            second.write(repo, first, set())
            operator.start()
            wait_for_set(
                mds,
                second.seen_in(first),
                namespace=namespace,
                timeout=60,
                describe="the second commit being applied",
            )
            kill_after(operator, rng.uniform(0, 3), "second commit")

            # 3: the flaky model served healthy first; a third commit breaks it (and moves
            # 75 others), and the operator is killed applying it, or while rolling back.
            operator.start()
            Models(local_cluster, namespace).wait(FLAKY, ready_on("1"), timeout=60)
            third.write(repo, second, {FLAKY})
            api.patch_namespaced_custom_object(
                name="prod",
                namespace=namespace,
                body={"metadata": {"annotations": {c.ANNOTATION_RECONCILE_REQUESTED: third.sha}}},
                **MS,
            )
            wait_for_set(
                mds,
                third.seen_in(second),
                namespace=namespace,
                timeout=60,
                describe="the third commit being applied",
            )
            kill_after(operator, rng.uniform(0, DEADLINE + 3), "third commit")

            # After the last restart, the cluster is what the last commit says.
            operator.start()
            check_converged(local_cluster, namespace, third)
            assert operator.running()
        except BaseException:
            print(f"seed {SEED}; kills: {kills}")
            raise


def wait_for_names(
    resource: Any,
    wanted: set[str],
    *,
    namespace: str,
    label_selector: str | None,
    timeout: float,
    describe: str,
) -> list[dict[str, Any]]:
    """Wait until the objects of `resource` are exactly `wanted`, by name; else fail
    naming what is left over and what is missing."""
    try:
        return wait_for_set(
            resource,
            lambda items: {item["metadata"]["name"] for item in items} == wanted,
            namespace=namespace,
            label_selector=label_selector,
            timeout=timeout,
            describe=describe,
        )
    except AssertionError:
        listing = resource.get(namespace=namespace, label_selector=label_selector).to_dict()
        names = {item["metadata"]["name"] for item in listing.get("items") or []}
        raise AssertionError(
            f"timed out after {timeout:.0f}s waiting for {describe}: left over "
            f"{sorted(names - wanted)}, missing {sorted(wanted - names)}"
        ) from None


def check_converged(cluster: LocalCluster, namespace: str, last: Revision) -> None:
    api = CustomObjectsApi(cluster.api)
    dynamic = DynamicClient(cluster.api)
    revision = f"main@sha1:{last.sha}"

    def synced(ms: dict[str, Any] | None) -> bool:
        ready = dict_condition(ms, c.READY) or {}
        status = (ms or {}).get("status") or {}
        return status.get("lastAppliedRevision") == revision and (
            ready.get("status"),
            ready.get("reason"),
        ) == ("False", c.REASON_ROLLED_BACK)

    ms = wait_sync(
        api,
        namespace,
        "prod",
        synced,
        timeout=90,
        describe="the last commit applied, the flaky model rolled back",
    )
    wanted = set(last.models)
    assert {entry["name"] for entry in ms["status"]["inventory"]} == wanted

    # Exactly the models of the last commit, each with its spec from git; nothing of
    # earlier commits left, not even what an operator killed mid-sync applied.
    items = wait_for_names(
        dynamic.resources.get(api_version=c.API_VERSION, kind=c.MODELDEPLOYMENT_KIND),
        wanted,
        namespace=namespace,
        label_selector=None,
        timeout=60,
        describe="the models of the last commit",
    )
    versions = {md["metadata"]["name"]: md["spec"]["model"]["version"] for md in items}
    assert versions == last.models
    for kind, api_version in (("Deployment", "apps/v1"), ("Service", "v1")):
        # Owned by the models: the garbage collector removes those of deleted ones.
        wait_for_names(
            dynamic.resources.get(api_version=api_version, kind=kind),
            wanted,
            namespace=namespace,
            label_selector=f"{c.LABEL_MANAGED_BY}={c.MANAGED_BY}",
            timeout=60,
            describe=f"one {kind} per model of the last commit",
        )

    # The flaky model: rolled back once, whatever the kills interrupted.
    md = api.get_namespaced_custom_object(name=FLAKY, namespace=namespace, **MD)
    rolled_back = dict_condition(md, c.ROLLED_BACK) or {}
    assert rolled_back.get("status") == "True", md["status"]
    results = [(h["modelVersion"], h["result"]) for h in md["status"]["history"]]
    assert results.count(("2", c.HISTORY_ROLLED_BACK)) == 1, results
    assert md["status"]["modelVersion"] == "1"
    deployment = AppsV1Api(cluster.api).read_namespaced_deployment(FLAKY, namespace)
    assert deployment.spec.template.metadata.labels[c.LABEL_MODEL_VERSION] == "1"
    events = dynamic.resources.get(api_version="events.k8s.io/v1", kind="Event")
    notes = [
        e.get("note")
        for e in events.get(namespace=namespace).to_dict()["items"]
        if e.get("reason") == c.EVENT_ROLLED_BACK
        and (e.get("regarding") or {}).get("name") == FLAKY
    ]
    assert len(notes) <= 1, notes


# --------------------------------------------------------------------------- killed mid-fetch


def test_fault_operator_killed_mid_fetch_fetches_again_after_restart(
    local_cluster: LocalCluster, own_namespace: str, tmp_path: Path
) -> None:
    """A container killed while git fetches leaves git's lock files in the git cache, which
    outlives the container (an emptyDir): the next operator must still fetch."""
    namespace = own_namespace
    api = CustomObjectsApi(local_cluster.api)
    server = GitHttpServer(tmp_path / "git").start()
    try:
        repo = WorkRepo(server.root, "models")
        repo.write("iris.yaml", model_yaml("iris", replicas=0))
        first = repo.commit("iris 1")
        secret = git_secret(local_cluster.api, namespace, server)
        with own_operator(local_cluster.kubeconfig, tmp_path, "-n", namespace) as operator:
            create_sync(api, namespace, "prod", server.url(repo.bare.name), secret)
            wait_sync(api, namespace, "prod", ready_at(f"main@sha1:{first}"), timeout=60)

            repo.write("iris.yaml", model_yaml("iris", version="2", replicas=0))
            second = repo.commit("iris 2")
            server.stall_fetches.set()
            api.patch_namespaced_custom_object(
                name="prod",
                namespace=namespace,
                body={"metadata": {"annotations": {c.ANNOTATION_RECONCILE_REQUESTED: second}}},
                **MS,
            )
            locks = operator.git_cache / "repos"
            until(
                "git to wait for the pack, holding its shallow.lock",
                lambda: server.stalled_fetches >= 1 and any(locks.glob("*.git/shallow.lock")),
                timeout=60,
            )
            operator.kill()
            assert any(locks.glob("*.git/shallow.lock")), "git released its lock after all"
            server.stall_fetches.clear()

            operator.start()
            ms = wait_sync(
                api,
                namespace,
                "prod",
                ready_at(f"main@sha1:{second}"),
                timeout=60,
                describe=f"the commit the killed fetch wanted, {second[:12]}, applied",
            )
            assert operator.running()
        assert ms["status"]["inventory"] == [
            {
                "apiVersion": c.API_VERSION,
                "kind": c.MODELDEPLOYMENT_KIND,
                "name": "iris",
                "namespace": namespace,
            }
        ]
        md = api.get_namespaced_custom_object(name="iris", namespace=namespace, **MD)
        assert md["spec"]["model"]["version"] == "2"
    finally:
        server.stop()
