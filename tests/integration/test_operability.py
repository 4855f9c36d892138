"""Operability on a real cluster: the metrics on-call people read, the probes, two
replicas with one leader and a failover, webhook floods, and secrets that never leak."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import datetime
import json
import re
import secrets
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.dynamic import DynamicClient
from prometheus_client.parser import text_string_to_metric_families

from modelsync.api import constants as c
from modelsync.runtime import operator
from testcluster.launcher import free_ports
from tests.integration.test_webhook import github_push, post, post_to, signature
from tests.support.cluster import LocalCluster
from tests.support.gitserver import GitHttpServer, GitSshServer
from tests.support.kube import dict_condition, until, wait_for
from tests.support.models import MD, Models, manifest, ready_on
from tests.support.operatorproc import spawn_operator
from tests.support.paths import REPO
from tests.support.syncs import MS, Syncs, model_yaml

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)


def scrape(port: int) -> Samples:
    status, text = get(port, "/metrics")
    assert status == 200, text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, metric: str, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


# ------------------------------------------------------------------ metrics and probes


def test_metrics_say_what_the_operator_did(
    syncs: Syncs, models: Models, running_operator: operator.Operator
) -> None:
    port = running_operator.settings.http_port
    repo = syncs.repo("metered")
    repo.write("iris.yaml", model_yaml("iris", version="7"))
    sha = repo.commit("one model")
    syncs.secret("git", syncs.server.username, syncs.server.password)
    syncs.create("metered", syncs.http_url(repo), secret="git")
    syncs.wait_applied("metered", f"main@sha1:{sha}")
    models.wait("iris", ready_on("7"), describe="iris to serve version 7")
    assert post(running_operator, "nosuchforge/default/none", b"{}", {})[0] == 404

    samples = scrape(port)
    ns = syncs.namespace
    # A sync that applied the revision: its models were Ready already, or came up after.
    assert value(
        samples, "modelsync_syncs_total", namespace=ns, name="metered", result="Succeeded"
    ) or value(
        samples, "modelsync_syncs_total", namespace=ns, name="metered", result="ModelsNotReady"
    )
    assert value(samples, "modelsync_sync_duration_seconds_count", namespace=ns, name="metered")
    assert value(samples, "modelsync_git_requests_total", type="ls-remote", result="success")
    assert value(samples, "modelsync_git_requests_total", type="fetch", result="success")
    assert value(samples, "modelsync_git_request_duration_seconds_count", type="fetch")
    assert value(samples, "modelsync_objects_applied_total", action="created")
    assert value(samples, "modelsync_model_ready", namespace=ns, model="iris") == 1
    info = {
        "namespace": ns,
        "model": "iris",
        "version": "7",
        "runtime": "mlserver",
    }
    assert value(samples, "modelsync_model_info", **info) == 1
    # No label names a git revision (security: /metrics is not authenticated, and a sha is
    # what another tenant would ask the cache for).
    assert not [labels for (_, labels) in samples if any(sha in v for _, v in labels)]
    assert value(
        samples, "modelsync_webhook_requests_total", provider="unknown", result="unknown-provider"
    )
    assert value(samples, "modelsync_api_requests_total", verb="patch")
    assert value(samples, "modelsync_leader") == 1
    assert value(samples, "modelsync_queue_depth") is not None

    # A new version replaces the info series; a deleted model leaves none behind.
    models.patch("iris", {"spec": {"model": {"version": "8", "uri": "s3://models/iris/8"}}})
    models.wait("iris", ready_on("8"), describe="iris to serve version 8")
    samples = scrape(port)
    assert value(samples, "modelsync_model_info", **info) is None
    versions = [
        dict(labels)["version"]
        for (name, labels) in samples
        if name == "modelsync_model_info" and dict(labels).get("namespace") == ns
    ]
    assert versions == ["8"]
    syncs.patch("metered", {"spec": {"suspend": True}})
    models.api.delete_namespaced_custom_object(name="iris", namespace=ns, **MD)
    _wait_gone(port, ns)


def _wait_gone(port: int, namespace: str) -> None:
    until(
        "the deleted model's series to go",
        lambda: (
            value(scrape(port), "modelsync_model_ready", namespace=namespace, model="iris") is None
        ),
        30,
    )


def test_probes_of_a_leading_operator(running_operator: operator.Operator) -> None:
    port = running_operator.settings.http_port
    assert get(port, "/healthz") == (200, "ok")
    assert get(port, "/readyz") == (200, "ok: leading")


def test_an_event_the_watch_missed_is_picked_up_by_the_periodic_list(
    syncs: Syncs, running_operator: operator.Operator
) -> None:
    """The bad-commit corpus once saw a ModelSync stay ModelsNotReady: its model's events
    never reached the operator. Here the operator forgets a served model as if its events
    had been lost; a sync then finds it "not created yet", and only the periodic list
    (every 20 s in these tests) can bring it back, with no further event."""
    repo = syncs.repo("models")
    revision = repo.write("iris.yaml", model_yaml("iris")).commit("iris")
    syncs.create("prod", repo.file_url)
    syncs.wait_applied("prod", f"main@sha1:{revision}", timeout=90)
    before = _missed(running_operator.settings.http_port)

    def forget() -> None:
        key = (syncs.namespace, "iris")
        running_operator.cache.delete(c.MODELDEPLOYMENT_KIND, *key)
        running_operator.delivered.pop((c.MODELDEPLOYMENT_KIND, *key), None)
        running_operator.ready_seen.pop(key, None)
        running_operator.md_triggers.pop(key, None)

    assert running_operator.loop is not None
    running_operator.loop.call_soon_threadsafe(forget)
    token = syncs.request("prod")
    syncs.wait_applied("prod", f"main@sha1:{revision}", token=token, timeout=90)
    port = running_operator.settings.http_port
    until("the list to count the missed model", lambda: _missed(port) > before, 60)


def _missed(port: int) -> float:
    found = value(
        scrape(port),
        "modelsync_watch_missed_total",
        kind=c.MODELDEPLOYMENT_KIND,
        cause="undelivered",
    )
    return found or 0.0


# ------------------------------------------------------------------ high availability


def _replica(
    cluster: LocalCluster, namespace: str, port: int, log: Path, *args: str
) -> subprocess.Popen[bytes]:
    return spawn_operator(
        cluster.kubeconfig,
        "-n",
        namespace,
        "--http-port",
        str(port),
        "--leader-elect",
        "--lease-namespace",
        namespace,
        "--log-level",
        "INFO",
        *args,
        log=log.open("ab"),
    )


def _one_leader(ports: list[int]) -> tuple[int, int]:
    """(leader, standby) once one leads and the other stands by, both ready."""
    expected = ["ok: leading", "ok: standby, another replica leads"]

    def settled() -> bool:
        answers = [get(port, "/readyz") for port in ports]
        return all(code == 200 for code, _ in answers) and sorted(r for _, r in answers) == expected

    until("one leader and one standby, both ready", settled, 60, interval=0.2)
    roles = {port: get(port, "/readyz")[1] for port in ports}
    leader = next(port for port, role in roles.items() if role == "ok: leading")
    return leader, next(port for port in ports if port != leader)


def _leading(port: int) -> float | None:
    try:
        return value(scrape(port), "modelsync_leader")
    except AssertionError:
        return None


def test_ha_two_replicas_one_leader_and_failover_within_30s(
    local_cluster: LocalCluster, crds: list[str], own_namespace: str, tmp_path: Path
) -> None:
    ports = free_ports(2)
    replicas = {
        port: _replica(local_cluster, own_namespace, port, tmp_path / f"{port}.log")
        for port in ports
    }
    try:
        # Both answer "standby" until one has taken the Lease and synced its caches.
        leader, standby = _one_leader(ports)
        assert _leading(leader) == 1
        assert _leading(standby) == 0
        code, answer = post_to(standby, "github/default/none", b"{}")
        assert (code, "standby" in answer.get("error", "")) == (503, True)

        models = Models(local_cluster, own_namespace)
        models.create(manifest("first"))
        models.wait(
            "first", ready_on("1"), describe="the leader to serve the first model", timeout=60
        )
        # The standby acts on nothing: not one write while the other leads.
        assert total(scrape(standby), "modelsync_api_writes_total") == 0
        assert total(scrape(leader), "modelsync_api_writes_total") > 0

        replicas[leader].send_signal(signal.SIGKILL)
        replicas[leader].wait(10)
        models.create(manifest("second"))
        models.wait("second", ready_on("1"), describe="the standby to take over", timeout=30)
        assert _leading(standby) == 1
        assert get(standby, "/readyz") == (200, "ok: leading")
        lease = kubernetes.client.CoordinationV1Api(local_cluster.api).read_namespaced_lease(
            "modelsync-leader", own_namespace
        )
        assert lease.spec.holder_identity.endswith(f"_{replicas[standby].pid}")
        assert lease.spec.lease_transitions >= 1
    finally:
        for process in replicas.values():
            if process.poll() is None:
                process.terminate()
                process.wait(30)


def test_ha_a_leader_stopped_cleanly_releases_its_lease_and_the_standby_leads_at_once(
    local_cluster: LocalCluster, crds: list[str], own_namespace: str, tmp_path: Path
) -> None:
    """A rolling update or `helm uninstall` stops the leader with SIGTERM: it gives the
    Lease up, so the standby leads at its next try. The Lease here lasts an hour: a
    standby that had to wait it out would never lead within the test."""
    ports = free_ports(2)
    replicas = {
        port: _replica(
            local_cluster, own_namespace, port, tmp_path / f"{port}.log", "--lease-seconds", "3600"
        )
        for port in ports
    }
    leases = kubernetes.client.CoordinationV1Api(local_cluster.api)
    try:
        leader, standby = _one_leader(ports)
        replicas[leader].send_signal(signal.SIGTERM)
        assert replicas[leader].wait(30) == 0, (tmp_path / f"{leader}.log").read_text()[-2000:]
        until(
            "the standby to lead",
            lambda: get(standby, "/readyz") == (200, "ok: leading"),
            30,
            interval=0.2,
            explain=lambda: (tmp_path / f"{standby}.log").read_text()[-2000:],
        )
        lease = leases.read_namespaced_lease("modelsync-leader", own_namespace)
        assert lease.spec.holder_identity.endswith(f"_{replicas[standby].pid}")
        assert lease.spec.lease_transitions >= 1
        assert "released the Lease" in (tmp_path / f"{leader}.log").read_text()
    finally:
        for process in replicas.values():
            if process.poll() is None:
                process.terminate()
                process.wait(30)


def test_ha_a_standby_stops_at_once_on_sigterm(
    local_cluster: LocalCluster, own_namespace: str, tmp_path: Path
) -> None:
    """A replica waiting to lead exits cleanly on SIGTERM. In a pod it is PID 1, which
    ignores a signal it has no handler for: the kubelet then waited out the grace period
    (30 s) and killed it, on every rollout and `helm uninstall` of the chart."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    kubernetes.client.CoordinationV1Api(local_cluster.api).create_namespaced_lease(
        own_namespace,
        {
            "metadata": {"name": "modelsync-leader"},
            "spec": {
                "holderIdentity": "another-replica_1",
                "leaseDurationSeconds": 3600,
                "acquireTime": now,
                "renewTime": now,
            },
        },
    )
    port = free_ports(1)[0]
    replica = _replica(local_cluster, own_namespace, port, tmp_path / "standby.log")
    try:

        def standing_by() -> bool:
            assert replica.poll() is None, (tmp_path / "standby.log").read_text()[-2000:]
            return get(port, "/readyz") == (200, "ok: standby, another replica leads")

        until("the replica to stand by", standing_by, 60, interval=0.2)
        replica.send_signal(signal.SIGTERM)
        assert replica.wait(30) == 0, (tmp_path / "standby.log").read_text()[-2000:]
    finally:
        if replica.poll() is None:
            replica.kill()
            replica.wait(10)


# ------------------------------------------------------------------ webhook flood


def test_webhook_flood_fault_200_requests_do_not_put_syncs_behind(
    syncs: Syncs, running_operator: operator.Operator
) -> None:
    token = "flood-" + secrets.token_hex(8)
    syncs.core.create_namespaced_secret(
        syncs.namespace,
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name="hook"),
            data={"token": base64.b64encode(token.encode()).decode()},
        ),
    )
    repo = syncs.repo("flooded")
    repo.write("iris.yaml", model_yaml("iris"))
    first = repo.commit("one")
    url = syncs.http_url(repo)
    syncs.secret("git", syncs.server.username, syncs.server.password)
    syncs.create("flooded", url, secret="git", webhookSecretRef={"name": "hook"})
    syncs.wait_applied("flooded", f"main@sha1:{first}")

    body = github_push(url)
    headers = {
        "X-GitHub-Event": "push",
        "X-Hub-Signature-256": "sha256=" + signature(body, token),
    }
    port = running_operator.settings.http_port

    def deliver(_: int) -> int:
        # A delivery answered in 5 s at the most (the client's deadline), the whole
        # flood in 20 (the pool's).
        return post_to(port, f"github/{syncs.namespace}/flooded", body, headers, timeout=5)[0]

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(deliver, range(200), timeout=20))
    assert answers == [202] * 200

    # Right after the flood, a real change goes through at once: the queue holds each
    # ModelSync once, however many deliveries asked for it.
    repo.write("iris.yaml", model_yaml("iris", version="2"))
    second = repo.commit("two")
    assert post_to(port, f"github/{syncs.namespace}/flooded", body, headers)[0] == 202
    syncs.wait_applied("flooded", f"main@sha1:{second}", timeout=10)
    assert value(scrape(port), "modelsync_queue_depth") is not None


# ------------------------------------------------------------------ secrets


def test_secret_values_never_appear_in_logs_events_status_or_metrics(
    local_cluster: LocalCluster,
    own_namespace: str,
    git_server: GitHttpServer,
    ssh_server: GitSshServer,
    tmp_path: Path,
) -> None:
    syncs = Syncs(local_cluster, own_namespace, git_server)
    webhook_token = "hook-" + secrets.token_hex(12)
    wrong_password = "wrong-" + secrets.token_hex(12)
    applied_secret = "applied-" + secrets.token_hex(12)
    key_line = ssh_server.private_key.strip().splitlines()[1]  # a line of the key itself
    known = [git_server.password, webhook_token, wrong_password, applied_secret, key_line]

    repo = syncs.repo("secretive")
    repo.write("iris.yaml", model_yaml("iris"))
    repo.write(
        "credentials.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: model-store\n"
        f"stringData:\n  api-key: {applied_secret}\n",
    )
    sha = repo.commit("a model and the Secret it reads")
    syncs.secret("git", git_server.username, git_server.password)
    syncs.secret("wrong", git_server.username, wrong_password)
    syncs.core.create_namespaced_secret(
        own_namespace,
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name="ssh"),
            type=c.SECRET_TYPE_GIT,
            string_data={"identity": ssh_server.private_key, "known_hosts": ssh_server.known_hosts},
        ),
    )
    syncs.core.create_namespaced_secret(
        own_namespace,
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name="hook"),
            string_data={"token": webhook_token},
        ),
    )
    port = free_ports(1)[0]
    log = tmp_path / "operator.log"
    process = spawn_operator(
        local_cluster.kubeconfig,
        "-n",
        own_namespace,
        "--http-port",
        str(port),
        "--log-level",
        "DEBUG",
        "--log-format",
        "json",
        log=log.open("ab"),
    )
    try:
        url = syncs.http_url(repo)
        syncs.create("https", url, secret="git", webhookSecretRef={"name": "hook"})
        syncs.create("denied", url, secret="wrong")
        syncs.create(
            "ssh", ssh_server.url(repo.bare.name), secret="ssh", targetNamespace=own_namespace
        )
        syncs.wait_applied("https", f"main@sha1:{sha}")
        syncs.wait_failed("denied", c.REASON_FETCH_FAILED)
        body = github_push(url)
        signed = {
            "X-GitHub-Event": "push",
            "X-Hub-Signature-256": "sha256=" + signature(body, webhook_token),
        }
        forged = {
            "X-GitHub-Event": "push",
            "X-Hub-Signature-256": "sha256=" + signature(body, "guess"),
        }
        assert post_to(port, f"github/{syncs.namespace}/https", body, signed)[0] == 202
        assert post_to(port, f"github/{syncs.namespace}/https", body, forged)[0] == 401
        wait_for(
            lambda **kw: kubernetes.client.CoreV1Api(local_cluster.api).list_namespaced_secret(
                own_namespace, **kw
            ),
            "model-store",
            lambda found: found is not None,
            describe="the Secret from git to be applied",
        )
        syncs.wait(
            "ssh", lambda ms: dict_condition(ms, c.READY) is not None, "the ssh sync to finish"
        )
        metrics_text = get(port, "/metrics")[1]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)

    custom = kubernetes.client.CustomObjectsApi(local_cluster.api)
    events = DynamicClient(local_cluster.api).resources.get(
        api_version="events.k8s.io/v1", kind="Event"
    )
    places = {
        "the operator's log": log.read_text(),
        "Events": json.dumps(events.get(namespace=own_namespace).to_dict()),
        "ModelSync status": json.dumps(
            custom.list_namespaced_custom_object(
                group=c.GROUP, version=c.VERSION, plural=c.MODELSYNC_PLURAL, namespace=own_namespace
            )
        ),
        "ModelDeployment status": json.dumps(
            custom.list_namespaced_custom_object(namespace=own_namespace, **MD)
        ),
        "metrics": metrics_text,
    }
    assert "DEBUG" in places["the operator's log"]  # the most talkative level was on
    assert "Synced" in places["Events"] or "SyncFailed" in places["Events"]
    for where, text in places.items():
        for secret in known:
            for form in (secret, base64.b64encode(secret.encode()).decode()):
                assert form not in text, f"a secret value appears in {where}"


# ------------------------------------------------------------------ events


def test_events_only_for_changes_never_for_a_noop_resync(
    syncs: Syncs, models: Models, local_cluster: LocalCluster, running_operator: operator.Operator
) -> None:
    events = DynamicClient(local_cluster.api).resources.get(
        api_version="events.k8s.io/v1", kind="Event"
    )

    def reasons() -> list[str]:
        items = events.get(namespace=syncs.namespace).to_dict().get("items") or []
        return sorted(item["reason"] for item in items)

    repo = syncs.repo("quiet")
    repo.write("iris.yaml", model_yaml("iris"))
    first = repo.commit("one")
    syncs.secret("git", syncs.server.username, syncs.server.password)
    syncs.create("quiet", syncs.http_url(repo), secret="git")
    syncs.wait_applied("quiet", f"main@sha1:{first}")
    models.wait("iris", ready_on("1"), describe="iris to serve")
    until("the first sync's Synced event", lambda: c.EVENT_SYNCED in reasons(), 10)
    seen = reasons()

    ns = syncs.namespace
    apps = kubernetes.client.AppsV1Api(local_cluster.api)
    core = kubernetes.client.CoreV1Api(local_cluster.api)

    def written() -> dict[str, Any]:
        """What a write of ours would change: the model (spec or status, ours alone
        write it), its Deployment's spec and metadata, its Service."""
        md = models.api.get_namespaced_custom_object(name="iris", namespace=ns, **MD)
        deployment = apps.read_namespaced_deployment("iris", ns).metadata
        return {
            "ModelDeployment": md["metadata"]["resourceVersion"],
            "Deployment": (deployment.generation, deployment.labels, deployment.annotations),
            "Service": core.read_namespaced_service("iris", ns).metadata.resource_version,
        }

    def history() -> list[Any]:
        ms = syncs.api.get_namespaced_custom_object(name="quiet", namespace=ns, **MS)
        return list(ms["status"]["history"])

    before, kept = written(), history()
    for _ in range(3):  # syncs of the same commit, and a full resync of every model
        token = syncs.request("quiet")
        syncs.wait_applied("quiet", f"main@sha1:{first}", token)
    assert running_operator.loop is not None
    asyncio.run_coroutine_threadsafe(running_operator.resync_now(), running_operator.loop).result(
        60
    )
    assert reasons() == seen
    # The requests are acknowledged (status); nothing else is written, no history kept.
    assert written() == before
    assert history() == kept

    repo.write("iris.yaml", model_yaml("iris", version="2"))
    second = repo.commit("two")
    syncs.wait_applied("quiet", f"main@sha1:{second}", syncs.request("quiet"))
    until(
        "an event of the sync that changed something",
        lambda: reasons().count(c.EVENT_SYNCED) >= 2,
        10,
    )


def test_dashboard_queries_only_metrics_a_running_operator_exports(
    running_operator: operator.Operator,
) -> None:
    """Every metric name in the Grafana dashboard's queries (a histogram's _bucket, _sum
    and _count mapped to its family) is one this operator's /metrics really exports."""
    status, text = get(running_operator.settings.http_port, "/metrics")
    assert status == 200, text
    exported: set[str] = set()
    for family in text_string_to_metric_families(text):
        exported.add(family.name)
        if family.type == "counter":
            exported.add(f"{family.name}_total")
        if family.type == "histogram":
            exported |= {f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count")}
    dashboard = json.loads(
        (REPO / "helm" / "modelsync" / "dashboards" / "modelsync.json").read_text()
    )
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        for name in re.findall(r"\b(modelsync_[a-z_]+)", target["expr"])
    }
    assert queried, "the dashboard queries no modelsync metric"
    assert queried <= exported, f"not exported: {sorted(queried - exported)}"
