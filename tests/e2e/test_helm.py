"""The Helm chart: lint, rendered output, values schema, and install, upgrade and
uninstall on the local cluster with the chart's RBAC checked by the API server."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiextensionsV1Api, CoreV1Api

from modelsync.api import constants as c
from tests.integration.conftest import OWN_OPERATOR_PREFIX
from tests.integration.test_rollback import broken_model_yaml, rolled_back
from tests.support.cluster import LocalCluster
from tests.support.gitserver import GitHttpServer, WorkRepo
from tests.support.kube import make_tenant, until, wait_for
from tests.support.models import Models, ready_on
from tests.support.operatorproc import spawn_operator
from tests.support.paths import REPO
from tests.support.syncs import Syncs, model_yaml

CHART = REPO / "helm" / "modelsync"
EXPECTED = Path(__file__).parent / "expected"
NAMESPACED = ["--set", "watchNamespaces={team-a,team-b}"]


def helm(cluster: LocalCluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return cluster.run("helm", *args, check=check)


def install_chart(cluster: LocalCluster, namespace: str, *values: str) -> None:
    """`helm install modelsync` into `namespace` with `--set` `values`, taking over the
    CRDs the test session installed."""
    sets = [arg for value in values for arg in ("--set", value)]
    helm(
        cluster,
        "install",
        "modelsync",
        str(CHART),
        "--namespace",
        namespace,
        "--force-conflicts",
        *sets,
    )


def chart_kubeconfig(cluster: LocalCluster, namespace: str, directory: Path) -> Path:
    """A kubeconfig that acts as the chart's own ServiceAccount (a token of its own):
    kwok runs no containers, so tests run the operator with it, bound by the chart's RBAC."""
    token = (
        CoreV1Api(cluster.api)
        .create_namespaced_service_account_token(
            "modelsync", namespace, {"spec": {"expirationSeconds": 3600}}
        )
        .status.token
    )
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"] = [{"name": "chart", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "chart"
    kubeconfig = directory / "chart-sa.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    return kubeconfig


@pytest.mark.parametrize("crd", sorted(p.name for p in (REPO / "crds").glob("*.yaml")))
def test_helm_chart_ships_the_crds_unchanged(crd: str) -> None:
    assert (CHART / "crds" / crd).read_text() == (REPO / "crds" / crd).read_text(), (
        f"helm/modelsync/crds/{crd} differs from crds/{crd}: run python tools/gen_crds.py"
    )


def test_helm_lint_is_clean(local_cluster: LocalCluster) -> None:
    result = helm(local_cluster, "lint", str(CHART), "--strict")
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(("name", "extra"), [("default", []), ("namespaced", NAMESPACED)])
def test_helm_template_matches_expected_output(
    local_cluster: LocalCluster, name: str, extra: list[str]
) -> None:
    rendered = helm(
        local_cluster,
        "template",
        "modelsync",
        str(CHART),
        "--namespace",
        "modelsync-system",
        *extra,
    ).stdout
    expected = EXPECTED / f"{name}.yaml"
    if os.environ.get("MODELSYNC_UPDATE_GOLDEN"):
        expected.write_text(rendered)
    assert rendered == expected.read_text()


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (["--set", "replicaCount=9"], "replicaCount"),
        (["--set", "operator.logFormat=xml"], "logFormat"),
        (["--set", "watchNamespaces={Not_A_Namespace}"], "watchNamespaces"),
        (["--set", "unknown=1"], "unknown"),
        (["--set", "imagePullPolicy=Sometimes"], "imagePullPolicy"),
        (["--set", "shards={Not A Shard}"], "shards"),
        (["--set", "shards={alpha,alpha}"], "shards"),
        (["--set", "runtimes.seldon.image=mirror.local/seldon:1"], "seldon"),
        (["--set", "storageInitializer.image=two words"], "storageInitializer"),
    ],
)
def test_helm_invalid_values_are_refused(
    local_cluster: LocalCluster, values: list[str], words: str
) -> None:
    result = helm(local_cluster, "template", "m", str(CHART), *values, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert words in result.stderr


def test_helm_runtime_images_become_operator_flags(local_cluster: LocalCluster) -> None:
    rendered = helm(
        local_cluster,
        "template",
        "m",
        str(CHART),
        "--set",
        "runtimes.mlserver.image=mirror.local/mlserver:1.7.1",
        "--set",
        "storageInitializer.image=mirror.local/storage-initializer:1",
        "--set",
        "imagePullPolicy=IfNotPresent",
    ).stdout
    deployment = next(
        doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] == "Deployment"
    )
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--runtime-image=mlserver=mirror.local/mlserver:1.7.1" in args
    assert "--storage-initializer-image=mirror.local/storage-initializer:1" in args
    assert "--image-pull-policy=IfNotPresent" in args
    # Runtimes left empty keep the operator's defaults: no flag for them.
    assert [arg for arg in args if arg.startswith("--runtime-image")] == [
        "--runtime-image=mlserver=mirror.local/mlserver:1.7.1"
    ]


def can_i(
    cluster: LocalCluster,
    service_account: str,
    verb: str,
    resource: str,
    namespace: str,
    expected: bool = True,
) -> bool:
    """`kubectl auth can-i` as the ServiceAccount; waits up to 10 s for the answer to be
    `expected`, since the API server's RBAC cache follows new (Cluster)Roles a moment late."""

    def answer() -> bool:
        result = cluster.run(
            "kubectl",
            "auth",
            "can-i",
            verb,
            resource,
            "-n",
            namespace,
            f"--as=system:serviceaccount:{service_account}",
            check=False,
        )
        return result.stdout.strip() == "yes"

    try:
        until(f"can-i {verb} {resource} to be {expected}", lambda: answer() is expected, 10, 0.5)
    except AssertionError:
        return not expected
    return expected


def test_helm_install_upgrade_uninstall(local_cluster: LocalCluster, namespace: str) -> None:
    core = CoreV1Api(local_cluster.api)
    teams = [f"{namespace}-a", f"{namespace}-b"]
    for team in teams:
        core.create_namespace({"metadata": {"name": team}})
    try:
        _install_upgrade_uninstall(local_cluster, namespace, teams)
    finally:
        helm(local_cluster, "uninstall", "modelsync", "--namespace", namespace, check=False)
        for team in teams:
            core.delete_namespace(team)


def _install_upgrade_uninstall(cluster: LocalCluster, namespace: str, teams: list[str]) -> None:
    # The CRDs are there already (the other tests installed them): take them over.
    helm(
        cluster,
        "install",
        "modelsync",
        str(CHART),
        "--namespace",
        namespace,
        "--force-conflicts",
        "--set",
        f"watchNamespaces={{{','.join(teams)}}}",
    )
    crds = ApiextensionsV1Api(cluster.api)
    for name in ("modeldeployments.modelsync.io", "modelsyncs.modelsync.io"):
        crd = crds.read_custom_resource_definition(name)
        assert any(c.type == "Established" and c.status == "True" for c in crd.status.conditions)
    account = f"{namespace}:modelsync"
    # Namespaced mode: what the operator needs in the watched namespaces, nothing elsewhere.
    assert can_i(cluster, account, "patch", "modeldeployments.modelsync.io/status", teams[0])
    assert can_i(cluster, account, "create", "deployments.apps", teams[1])
    assert can_i(cluster, account, "impersonate", "serviceaccounts", teams[0])
    assert can_i(cluster, account, "update", "leases.coordination.k8s.io", namespace)
    assert not can_i(cluster, account, "create", "deployments.apps", "default", expected=False)
    assert not can_i(cluster, account, "list", "secrets", teams[0], expected=False)

    again = helm(cluster, "install", "modelsync", str(CHART), "--namespace", namespace, check=False)
    assert again.returncode != 0
    assert "cannot reuse a name that is still in use" in again.stderr

    helm(
        cluster,
        "upgrade",
        "modelsync",
        str(CHART),
        "--namespace",
        namespace,
        "--force-conflicts",
        "--set",
        f"watchNamespaces={{{','.join(teams)}}}",
        "--set",
        "operator.workers=8",
    )
    deployment = json.loads(
        cluster.run(
            "kubectl", "get", "deployment", "modelsync", "-n", namespace, "-o", "json"
        ).stdout
    )
    assert "--workers=8" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    # Cluster-wide mode after an upgrade: a ClusterRole instead of Roles, which reads
    # everywhere; writes only where tenancy.namespaces enables (none here).
    helm(
        cluster,
        "upgrade",
        "modelsync",
        str(CHART),
        "--namespace",
        namespace,
        "--force-conflicts",
        "--reset-values",
    )
    assert can_i(cluster, account, "list", "deployments.apps", "default")
    assert not can_i(cluster, account, "create", "deployments.apps", "default", expected=False)

    helm(cluster, "uninstall", "modelsync", "--namespace", namespace, "--wait")
    names = {crd.metadata.name for crd in crds.list_custom_resource_definition().items}
    assert {"modeldeployments.modelsync.io", "modelsyncs.modelsync.io"} <= names
    assert not can_i(cluster, account, "create", "deployments.apps", teams[0], expected=False)


def test_helm_rendered_deployment_is_locked_down(local_cluster: LocalCluster) -> None:
    rendered = helm(local_cluster, "template", "m", str(CHART)).stdout
    deployment = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # More than one replica is safe: they elect a leader.
    assert deployment["spec"]["replicas"] == 2
    assert "--leader-elect" in container["args"]


def test_helm_chart_rbac_is_enough_to_sync_roll_out_and_roll_back(
    local_cluster: LocalCluster, namespace: str, tmp_path: Path, tenant_role: dict[str, object]
) -> None:
    """kwok runs no containers, so the operator runs here, with a token of the chart's
    own ServiceAccount: whatever it needs beyond the chart's RBAC fails loudly."""
    core = CoreV1Api(local_cluster.api)
    # Left alone by the in-process test operator (which acts with the admin's rights):
    # only the chart's RBAC acts here.
    team = f"{OWN_OPERATOR_PREFIX}{secrets.token_hex(4)}"
    core.create_namespace({"metadata": {"name": team}})
    make_tenant(local_cluster.api, team)  # git content is applied as the team's account
    operator = None
    try:
        install_chart(local_cluster, namespace, f"watchNamespaces={{{team}}}")
        kubeconfig = chart_kubeconfig(local_cluster, namespace, tmp_path)
        log = (tmp_path / "operator.log").open("wb")
        # Acting as one of the chart's pods (kwok runs no containers): it takes the
        # Lease and labels that pod, which the webhook Service then selects.
        until(
            "the chart's two operator pods",
            lambda: len(core.list_namespaced_pod(namespace).items) >= 2,
            60,
            interval=0.2,
        )
        pod = _metadata(core.list_namespaced_pod(namespace).items[0])["name"]
        operator = spawn_operator(
            kubeconfig,
            "-n",
            team,
            "--http-port",
            "0",
            "--git-cache-dir",
            str(tmp_path / "cache"),
            "--allow-file-urls",  # the repository below is a file:// one
            "--leader-elect",
            "--lease-namespace",
            namespace,
            log=log,
            env={"POD_NAME": pod},
        )
        wait_for(
            lambda **kw: core.list_namespaced_pod(namespace, **kw),
            pod,
            lambda found: (_metadata(found).get("labels") or {}).get(c.LABEL_LEADER) == "true",
            describe="the leader to label its pod",
        )
        webhooks = core.read_namespaced_service("modelsync-webhooks", namespace)
        assert webhooks.spec.selector[c.LABEL_LEADER] == "true"
        # The repository is reached through file://; Syncs wants a server for http URLs.
        unused = GitHttpServer(tmp_path)
        unused.server_close()
        syncs = Syncs(local_cluster, team, unused)
        (tmp_path / "git").mkdir()
        repo = WorkRepo(tmp_path / "git", "models")
        healthy = model_yaml("iris", version="1", replicas=2) + (
            "  rollout:\n    progressDeadlineSeconds: 5\n"
        )
        first = repo.write("iris.yaml", healthy).commit("iris 1")
        syncs.create("prod", repo.file_url)
        syncs.wait_applied("prod", f"main@sha1:{first}")
        models = Models(local_cluster, team)
        models.wait("iris", ready_on("1"))
        repo.write("iris.yaml", healthy.replace('version: "1"', 'version: "2"')).commit("2")
        syncs.request("prod")
        models.wait("iris", ready_on("2"))
        repo.write("iris.yaml", broken_model_yaml("iris", "3")).commit("3, broken")
        syncs.request("prod")
        md = models.wait("iris", rolled_back, timeout=40)
        assert md["status"]["modelVersion"] == "2"
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(10)
        errors = (
            (tmp_path / "operator.log").read_text() if (tmp_path / "operator.log").exists() else ""
        )
        helm(local_cluster, "uninstall", "modelsync", "--namespace", namespace, check=False)
        core.delete_namespace(team)
    assert "forbidden" not in errors.lower(), errors[-2000:]


def _metadata(pod: Any) -> dict[str, Any]:
    """A pod's metadata as a dict, whether the client parsed the pod or left it a dict."""
    if isinstance(pod, dict):
        return dict(pod.get("metadata") or {})
    return {"name": pod.metadata.name, "labels": pod.metadata.labels}


# ------------------------------------------------------------------ tenants


def _can_i_list(cluster: LocalCluster, account: str, namespace: str) -> str:
    """`kubectl auth can-i --list` as `account` in `namespace`, rows sorted."""
    listing = cluster.run(
        "kubectl",
        "auth",
        "can-i",
        "--list",
        "-n",
        namespace,
        f"--as=system:serviceaccount:{account}",
    ).stdout.splitlines()
    header, rows = listing[0], sorted(" ".join(line.split()) for line in listing[1:])
    return "\n".join([" ".join(header.split()), *rows]) + "\n"


@pytest.mark.parametrize("mode", ["cluster-wide", "namespaced"])
def test_tenant_chart_rbac_reads_secrets_and_impersonates_only_where_enabled(
    local_cluster: LocalCluster,
    namespace: str,
    tmp_path: Path,
    tenant_role: dict[str, object],
    mode: str,
) -> None:
    """What the operator's account may do in an enabled namespace and in another, in
    both chart modes, against expected files; and in cluster-wide mode, a ModelSync in a
    namespace the platform did not enable is NamespaceNotEnabled."""
    core = CoreV1Api(local_cluster.api)
    # Namespaces the in-process test operator leaves alone: only this test's acts here.
    own = f"{OWN_OPERATOR_PREFIX}{secrets.token_hex(4)}"
    enabled, other = f"{own}-on", f"{own}-off"
    for team in (enabled, other):
        core.create_namespace({"metadata": {"name": team}})
        make_tenant(local_cluster.api, team)
    grant = "tenancy.namespaces" if mode == "cluster-wide" else "watchNamespaces"
    operator = None
    log = tmp_path / "operator.log"
    try:
        install_chart(local_cluster, namespace, f"{grant}={{{enabled}}}", "replicaCount=0")
        account = f"{namespace}:modelsync"
        for team, which in ((enabled, "enabled"), (other, "other")):
            # RBAC changes reach the authorizer within moments; wait for the binding.
            if which == "enabled":
                assert can_i(local_cluster, account, "impersonate", "serviceaccounts", team)
            actual = _can_i_list(local_cluster, account, team)
            expected = EXPECTED / f"can-i-{mode}-{which}.txt"
            if os.environ.get("MODELSYNC_UPDATE_GOLDEN"):
                expected.write_text(actual)
            assert actual == expected.read_text(), f"{mode}, {which} namespace"
        if mode != "cluster-wide":
            return
        kubeconfig = chart_kubeconfig(local_cluster, namespace, tmp_path)
        operator = spawn_operator(
            kubeconfig,
            "-n",
            enabled,
            "-n",
            other,
            "--http-port",
            "0",
            "--git-cache-dir",
            str(tmp_path / "cache"),
            "--allow-file-urls",  # the repository below is a file:// one
            log=log.open("wb"),
            die_with_parent=True,
        )
        unused = GitHttpServer(tmp_path)
        unused.server_close()
        (tmp_path / "git").mkdir()
        repo = WorkRepo(tmp_path / "git", "models")
        sha = repo.write("iris.yaml", model_yaml("iris")).commit("iris")
        on, off = Syncs(local_cluster, enabled, unused), Syncs(local_cluster, other, unused)
        on.create("prod", repo.file_url)
        off.create("prod", repo.file_url)
        on.wait_applied("prod", f"main@sha1:{sha}")
        # Where the platform did not enable tenants the operator only reads: it can write
        # no status there, and says so in its log, with the fix, once.
        until(
            "the operator to log the namespace it may not write in",
            lambda: f"namespace {other!r} not enabled for modelsync" in log.read_text(),
            30,
            interval=0.2,
        )
        said = f"namespace {other!r} not enabled for modelsync ({c.NAMESPACE_NOT_ENABLED_FIX})"
        assert log.read_text().count(f"{said}: the operator only reads there") == 1
        assert "status" not in off.get("prod")
        assert set(on.models()) == {"iris"}
        assert off.models() == {}
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(10)
        helm(local_cluster, "uninstall", "modelsync", "--namespace", namespace, check=False)
        for team in (enabled, other):
            core.delete_namespace(team)


def test_tenant_chart_network_policy_admits_only_the_named_sources(
    local_cluster: LocalCluster,
) -> None:
    """Checked from `helm template`: the test cluster has no CNI that enforces policies."""

    def policy(*values: str) -> dict[str, Any]:
        rendered = helm(
            local_cluster,
            "template",
            "m",
            str(CHART),
            "--set",
            "networkPolicy.enabled=true",
            *values,
        ).stdout
        found: dict[str, Any] = next(
            d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "NetworkPolicy"
        )
        return found

    closed = policy()
    assert closed["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert closed["spec"]["ingress"] == []
    opened = policy(
        "--set-json",
        'networkPolicy.scrapeFrom=[{"namespaceSelector":{"matchLabels":'
        '{"kubernetes.io/metadata.name":"monitoring"}}}]',
        "--set-json",
        'networkPolicy.webhooksFrom=[{"ipBlock":{"cidr":"198.18.7.0/24"}}]',
    )
    assert opened["spec"]["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                    }
                },
                {"ipBlock": {"cidr": "198.18.7.0/24"}},
            ],
            "ports": [{"port": "http"}],
        }
    ]


def test_helm_security_analysis_endpoints_become_run_flags(local_cluster: LocalCluster) -> None:
    endpoints = "operator.analysisEndpoints={http://prometheus.monitoring:9090,https://m.example}"
    rendered = helm(local_cluster, "template", "m", str(CHART), "--set", endpoints).stdout
    assert '- "--analysis-endpoint=http://prometheus.monitoring:9090"' in rendered
    assert '- "--analysis-endpoint=https://m.example"' in rendered
    for wrong in ("prometheus:9090", "http://p:9090/api", "http://u@p:9090"):
        result = helm(
            local_cluster,
            "template",
            "m",
            str(CHART),
            "--set",
            f"operator.analysisEndpoints={{{wrong}}}",
            check=False,
        )
        assert result.returncode != 0, wrong
        assert "analysisEndpoints" in result.stderr


def test_helm_shards_each_get_a_deployment_and_a_lease_of_their_own(
    local_cluster: LocalCluster,
) -> None:
    rendered = helm(
        local_cluster, "template", "modelsync", str(CHART), "--set", "shards={alpha,beta}"
    ).stdout
    deployments = {
        doc["metadata"]["name"]: doc
        for doc in yaml.safe_load_all(rendered)
        if doc and doc["kind"] == "Deployment"
    }
    assert set(deployments) == {"modelsync", "modelsync-shard-alpha", "modelsync-shard-beta"}
    for name, shard in (("modelsync-shard-alpha", "alpha"), ("modelsync-shard-beta", "beta")):
        spec = deployments[name]["spec"]
        assert spec["selector"]["matchLabels"]["modelsync.io/shard"] == shard
        assert spec["template"]["metadata"]["labels"]["modelsync.io/shard"] == shard
        assert f"--shard={shard}" in spec["template"]["spec"]["containers"][0]["args"]
    unsharded = deployments["modelsync"]["spec"]
    assert "modelsync.io/shard" not in unsharded["selector"]["matchLabels"]
    assert not any(
        a.startswith("--shard") for a in unsharded["template"]["spec"]["containers"][0]["args"]
    )


# Granted to every authenticated user by the cluster itself (system:basic-user), not by
# the chart: asking what one may do.
SELF_REVIEWS = (
    "selfsubjectaccessreviews.authorization.k8s.io",
    "selfsubjectreviews.authentication.k8s.io",
    "selfsubjectrulesreviews.authorization.k8s.io",
)
READ_VERBS = {"get", "list", "watch"}


def _verbs_by_resource(listing: str) -> dict[str, set[str]]:
    """`can-i --list` rows of resources (not URLs) as resource -> verbs."""
    rows: dict[str, set[str]] = {}
    for line in listing.splitlines()[1:]:
        resource, verbs = line.split(" ", 1)[0], line.rsplit("[", 1)[-1].rstrip("]")
        if not resource.startswith("["):
            rows.setdefault(resource, set()).update(verbs.split())
    return rows


def test_security_chart_cluster_wide_operator_only_reads_where_not_enabled(
    local_cluster: LocalCluster, namespace: str, tenant_role: dict[str, object]
) -> None:
    """In cluster-wide mode the operator reads everywhere and writes only in the
    namespaces the platform enabled (tenancy.namespaces): elsewhere `can-i --list` shows
    get, list and watch, and nothing that creates, changes or deletes."""
    core = CoreV1Api(local_cluster.api)
    own = f"{OWN_OPERATOR_PREFIX}{secrets.token_hex(4)}"
    enabled, other = f"{own}-on", f"{own}-off"
    for team in (enabled, other):
        core.create_namespace({"metadata": {"name": team}})
    try:
        install_chart(
            local_cluster, namespace, f"tenancy.namespaces={{{enabled}}}", "replicaCount=0"
        )
        account = f"{namespace}:modelsync"
        assert can_i(local_cluster, account, "create", "deployments.apps", enabled)
        granted = _verbs_by_resource(_can_i_list(local_cluster, account, other))
        writes = {
            resource: sorted(verbs - READ_VERBS)
            for resource, verbs in granted.items()
            if resource not in SELF_REVIEWS and verbs - READ_VERBS
        }
        assert writes == {}, f"write verbs in a namespace not enabled: {writes}"
        # It still reads what it watches there.
        for resource in ("modelsyncs.modelsync.io", "modeldeployments.modelsync.io", "pods"):
            assert granted.get(resource, set()) >= READ_VERBS, resource
        # In the enabled namespace, ModelSyncs are patched at most: never made or deleted.
        mine = _verbs_by_resource(_can_i_list(local_cluster, account, enabled))
        assert mine["modelsyncs.modelsync.io"] == READ_VERBS | {"patch"}
        assert {"create", "delete"} <= mine["deployments.apps"]
    finally:
        helm(local_cluster, "uninstall", "modelsync", "--namespace", namespace, check=False)
        for team in (enabled, other):
            core.delete_namespace(team)


def _network_policy(cluster: LocalCluster, *values: str) -> dict[str, Any]:
    rendered = helm(cluster, "template", "m", str(CHART), *values).stdout
    found: dict[str, Any] = next(
        d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "NetworkPolicy"
    )
    return found


def test_security_chart_network_policy_keeps_the_operator_off_link_local_by_default(
    local_cluster: LocalCluster,
) -> None:
    """Checked from `helm template`: the test cluster's CNI enforces no policy. By default
    the operator may reach everything but the link-local range (cloud metadata); strict
    egress admits DNS, the API server and the peers the platform lists, and refuses to
    render without the API server (the operator could not run)."""
    default = _network_policy(local_cluster)
    assert default["spec"]["policyTypes"] == ["Ingress", "Egress"]
    rules = default["spec"]["egress"]
    blocks = [peer["ipBlock"] for rule in rules for peer in rule["to"]]
    assert {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]} in blocks
    assert all("ports" not in rule for rule in rules)  # every port, but for that range
    v6 = next(block for block in blocks if block["cidr"] == "::/0")
    assert "fe80::/10" in v6["except"]
    strict = _network_policy(
        local_cluster,
        "--set",
        "networkPolicy.egress.strict=true",
        "--set-json",
        'networkPolicy.egress.apiServer=[{"ipBlock":{"cidr":"198.18.0.1/32"}}]',
        "--set-json",
        'networkPolicy.egress.to=[{"to":[{"ipBlock":{"cidr":"198.18.9.0/24"}}],'
        '"ports":[{"port":443}]}]',
    )
    allowed = strict["spec"]["egress"]
    dns = allowed[0]
    assert {"port": 53, "protocol": "UDP"} in dns["ports"]
    assert {"port": 53, "protocol": "TCP"} in dns["ports"]
    assert allowed[1] == {"to": [{"ipBlock": {"cidr": "198.18.0.1/32"}}]}
    assert allowed[2] == {"to": [{"ipBlock": {"cidr": "198.18.9.0/24"}}], "ports": [{"port": 443}]}
    assert not [
        peer for rule in allowed for peer in rule["to"] if "0.0.0.0/0" in str(peer)
    ]  # nothing else
    refused = helm(
        local_cluster,
        "template",
        "m",
        str(CHART),
        "--set",
        "networkPolicy.egress.strict=true",
        check=False,
    )
    assert refused.returncode != 0
    assert "networkPolicy.egress.apiServer" in refused.stderr


def test_helm_security_renderer_memory_fits_in_the_container(local_cluster: LocalCluster) -> None:
    """A renderer's address space (renderMemoryBytes) must fit in the container's memory
    limit less the operator's own headroom: a pair that does not is refused when the
    chart renders (JSON Schema cannot compare quantities), and what is left bounds the
    renders at once (--render-memory-total-bytes)."""
    refused = helm(
        local_cluster,
        *("template", "m", str(CHART), "--set", "resources.limits.memory=1Gi"),
        check=False,
    )
    assert refused.returncode != 0
    assert "operator.renderMemoryBytes (1073741824) does not fit" in refused.stderr
    assert "resources.limits.memory (1Gi, 1073741824 bytes)" in refused.stderr
    assert "lower renderMemoryBytes or raise the limit" in refused.stderr

    def flags(*values: str) -> list[str]:
        rendered = helm(local_cluster, "template", "m", str(CHART), *values).stdout
        deployment = next(
            d for d in yaml.safe_load_all(rendered) if d and d.get("kind") == "Deployment"
        )
        args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        return [a for a in args if a.startswith("--render-memory")]

    assert flags() == [
        "--render-memory-bytes=1073741824",
        f"--render-memory-total-bytes={(2 << 30) - (768 << 20)}",
    ]
    assert flags("--set", "resources.limits.memory=4608Mi") == [
        "--render-memory-bytes=1073741824",
        f"--render-memory-total-bytes={(4608 - 768) << 20}",
    ]
    assert flags("--set", "resources.limits=null") == ["--render-memory-bytes=1073741824"]
