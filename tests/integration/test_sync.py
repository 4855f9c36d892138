"""ModelSync: git to cluster, with real git (smart HTTP with basic auth, file://)
and the real operator against the local cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes
import pytest

from modelsync.api import constants as c
from tests.support.cluster import LocalCluster
from tests.support.gitserver import GitSshServer, WorkRepo
from tests.support.kube import dict_condition, wait_for
from tests.support.models import MD
from tests.support.syncs import Syncs, model_yaml


def message_of(ms: dict[str, Any]) -> str:
    return str((dict_condition(ms, c.READY) or {}).get("message", ""))


def errors_of(ms: dict[str, Any]) -> str:
    """Every error of the rejected revision: the Ready message names only the first."""
    return "\n".join(ms["status"].get("errors") or [])


def test_sync_first_sync_over_http_with_basic_auth(syncs: Syncs) -> None:
    repo = syncs.repo("models")
    repo.write("models/iris.yaml", model_yaml("iris"))
    repo.write("models/fraud.yaml", model_yaml("fraud", replicas=2))
    repo.write("README.md", "not a manifest\n")
    sha = repo.commit("two models")
    syncs.secret("git-auth", syncs.server.username, syncs.server.password)
    syncs.create("prod", syncs.http_url(repo), path="models", secret="git-auth")

    ms = syncs.wait_applied("prod", f"main@sha1:{sha}")
    status = ms["status"]
    assert status["lastFetchedRevision"] == f"main@sha1:{sha}"
    assert sorted(entry["name"] for entry in status["inventory"]) == ["fraud", "iris"]
    assert "2 created" in message_of(ms)
    assert status["history"][0]["created"] == 2
    models = syncs.models()
    assert set(models) == {"fraud", "iris"}
    iris = models["iris"]
    assert iris["metadata"]["labels"][c.LABEL_SYNC_NAME] == "prod"
    assert iris["metadata"]["annotations"][c.ANNOTATION_REVISION] == f"main@sha1:{sha}"
    # The serving operator picks them up: the model reports the git revision it came from.
    md_api = syncs.api

    def serving(md: dict[str, Any] | None) -> bool:
        return (dict_condition(md, c.READY) or {}).get("status") == "True" and (
            (md or {}).get("status", {}).get("currentRevision") == f"main@sha1:{sha}"
        )

    wait_for(
        lambda **kw: md_api.list_namespaced_custom_object(**MD, **kw),
        "iris",
        serving,
        namespace=syncs.namespace,
        timeout=60,
    )


def test_sync_add_change_delete_is_applied_and_pruned(syncs: Syncs) -> None:
    repo = syncs.repo("models")
    repo.write("iris.yaml", model_yaml("iris")).write("fraud.yaml", model_yaml("fraud"))
    repo.write("stable.yaml", model_yaml("stable"))
    first = repo.commit("three models")
    syncs.create("prod", repo.file_url)
    syncs.wait_applied("prod", f"main@sha1:{first}")
    fraud_uid = syncs.models()["fraud"]["metadata"]["uid"]

    repo.write("iris.yaml", model_yaml("iris", version="2"))
    repo.write("ranker.yaml", model_yaml("ranker"))
    repo.write("more/deep.yaml", model_yaml("deep"))
    repo.remove("fraud.yaml")
    second = repo.commit("bump iris, add ranker, drop fraud")
    token = syncs.request("prod")
    ms = syncs.wait_applied("prod", f"main@sha1:{second}", token)
    assert "2 created, 1 configured, 1 unchanged, 1 deleted" in message_of(ms)
    models = syncs.models()
    assert set(models) == {"iris", "ranker", "deep", "stable"}
    assert models["iris"]["spec"]["model"]["version"] == "2"
    assert models["iris"]["metadata"]["annotations"][c.ANNOTATION_REVISION].endswith(second)
    # A model the commit did not touch keeps the revision that last changed it.
    assert models["stable"]["metadata"]["annotations"][c.ANNOTATION_REVISION].endswith(first)

    # Nothing changed in git: nothing is written (status writes of the serving operator
    # aside, which is why generations and not resourceVersions are compared).
    generations = {n: m["metadata"]["generation"] for n, m in syncs.models().items()}
    history = ms["status"]["history"]
    token = syncs.request("prod")
    ms = syncs.wait_applied("prod", f"main@sha1:{second}", token)
    # No news: the message and history of the sync that changed things stay.
    assert "2 created, 1 configured, 1 unchanged, 1 deleted" in message_of(ms)
    assert ms["status"]["history"] == history
    assert {n: m["metadata"]["generation"] for n, m in syncs.models().items()} == generations
    assert fraud_uid not in {m["metadata"]["uid"] for m in syncs.models().values()}


def test_sync_broken_commit_is_rejected_whole_then_its_fix_applies(syncs: Syncs) -> None:
    repo = syncs.repo("models")
    repo.write("iris.yaml", model_yaml("iris"))
    good = repo.commit("good")
    syncs.create("prod", repo.file_url)
    syncs.wait_applied("prod", f"main@sha1:{good}")
    before = syncs.models()["iris"]["metadata"]["generation"]

    repo.write("iris.yaml", model_yaml("iris", version="2"))  # fine on its own ...
    repo.write("broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n")
    repo.write("negative.yaml", model_yaml("neg", replicas=-1))
    bad = repo.commit("bad")
    token = syncs.request("prod")
    ms = syncs.wait_failed("prod", c.REASON_VALIDATION_FAILED, token)
    assert message_of(ms).startswith("rejected, nothing applied (2 errors in status.errors): ")
    assert len(message_of(ms)) <= 120
    assert "broken.yaml:4: invalid YAML" in errors_of(ms)
    assert "negative.yaml" in errors_of(ms)
    assert dict_condition(ms, c.STALLED)["status"] == "True"  # type: ignore[index]
    assert ms["status"]["lastAppliedRevision"] == f"main@sha1:{good}"
    assert ms["status"]["lastAttemptedRevision"] == f"main@sha1:{bad}"
    # ... but not one object of the bad revision was written.
    assert syncs.models()["iris"]["metadata"]["generation"] == before
    assert syncs.models()["iris"]["spec"]["model"]["version"] == "1"

    repo.remove("broken.yaml")
    repo.write("negative.yaml", model_yaml("neg", replicas=1))
    fixed = repo.commit("fix")
    token = syncs.request("prod")
    ms = syncs.wait_applied("prod", f"main@sha1:{fixed}", token)
    assert set(syncs.models()) == {"iris", "neg"}
    assert dict_condition(ms, c.STALLED) is None  # present only while true


def test_sync_schema_violation_found_by_dry_run_names_file_and_object(syncs: Syncs) -> None:
    """Our own resources are checked offline (the bad-commit corpus); what only the API
    server knows, a core object's rules, comes from the dry run."""
    repo = syncs.repo("models")
    repo.write("iris.yaml", model_yaml("iris"))
    repo.write(
        "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: front}\nspec:\n  ports: [{port: 70000}]\n",
    )
    bad = repo.commit("a port out of range")
    syncs.create("prod", repo.file_url)
    ms = syncs.wait_failed("prod", c.REASON_VALIDATION_FAILED)
    assert ms["status"]["lastAttemptedRevision"] == f"main@sha1:{bad}"
    assert "svc.yaml:1: Service" in message_of(ms)
    assert "spec.ports[0].port" in errors_of(ms)
    assert syncs.models() == {}


def test_prune_refuses_an_empty_path(syncs: Syncs) -> None:
    repo = syncs.repo("models")
    repo.write("models/iris.yaml", model_yaml("iris"))
    first = repo.commit("one")
    syncs.create("prod", repo.file_url, path="models")
    syncs.wait_applied("prod", f"main@sha1:{first}")
    repo.remove("models")
    repo.write("elsewhere.txt", "moved\n")
    repo.commit("oops, moved everything")
    token = syncs.request("prod")
    ms = syncs.wait_failed("prod", c.REASON_EMPTY_REVISION, token)
    assert "set spec.allowEmpty" in message_of(ms)
    assert set(syncs.models()) == {"iris"}
    assert [entry["name"] for entry in ms["status"]["inventory"]] == ["iris"]


def test_prune_refuses_deleting_most_of_the_inventory(syncs: Syncs) -> None:
    repo = syncs.repo("models")
    for name in ("a", "b", "c", "d"):
        repo.write(f"{name}.yaml", model_yaml(name))
    first = repo.commit("four")
    syncs.create("prod", repo.file_url)
    syncs.wait_applied("prod", f"main@sha1:{first}")
    for name in ("a", "b", "c"):
        repo.remove(f"{name}.yaml")
    repo.commit("three gone")
    token = syncs.request("prod")
    ms = syncs.wait_failed("prod", c.REASON_PRUNE_REFUSED, token)
    assert "3 of 4 applied objects (75%, above spec.maxPrunePercent=50)" in message_of(ms)
    assert set(syncs.models()) == {"a", "b", "c", "d"}
    syncs.patch("prod", {"spec": {"maxPrunePercent": 80}})
    syncs.wait(
        "prod",
        lambda ms: (dict_condition(ms, c.READY) or {}).get("status") == "True",
        "the raised limit to let the prune through",
    )
    assert set(syncs.models()) == {"d"}


def test_sync_follows_a_force_push_to_an_older_commit(syncs: Syncs) -> None:
    repo = syncs.repo("models")
    repo.write("iris.yaml", model_yaml("iris"))
    first = repo.commit("v1")
    repo.write("iris.yaml", model_yaml("iris", version="2"))
    second = repo.commit("v2")
    syncs.create("prod", repo.file_url)
    syncs.wait_applied("prod", f"main@sha1:{second}")
    assert repo.reset_hard(first) == first
    token = syncs.request("prod")
    syncs.wait_applied("prod", f"main@sha1:{first}", token)
    assert syncs.models()["iris"]["spec"]["model"]["version"] == "1"


def test_git_tag_and_semver_refs(syncs: Syncs) -> None:
    repo = syncs.repo("models")
    for version in ("1.0.0", "1.2.0", "2.0.0"):
        repo.write("iris.yaml", model_yaml("iris", version=version))
        repo.commit(version)
        repo.tag(f"v{version}", annotated=version == "1.2.0")
    repo.write("iris.yaml", model_yaml("iris", version="unreleased"))
    repo.commit("work in progress on main")

    syncs.create("pinned", repo.file_url, ref={"tag": "v1.0.0"}, targetNamespace=syncs.namespace)
    ms = syncs.wait(
        "pinned",
        lambda ms: bool(
            (ms or {}).get("status", {}).get("lastAppliedRevision", "").startswith("v1.0.0@sha1:")
        ),
        "the tag to be applied",
    )
    assert ms["status"]["lastAppliedRevision"].startswith("v1.0.0@sha1:")
    # A second ModelSync may not take over the first one's object: give it its own path.
    other = syncs.repo("ranged")
    for version in ("1.0.0", "1.2.0", "2.0.0"):
        other.write("ranker.yaml", model_yaml("ranker", version=version))
        other.commit(version)
        other.tag(f"v{version}", annotated=version == "1.2.0")
    syncs.create("ranged", other.file_url, ref={"semver": "^1.0"})
    ms = syncs.wait(
        "ranged",
        lambda ms: bool(
            (ms or {}).get("status", {}).get("lastAppliedRevision", "").startswith("v1.2.0@sha1:")
        ),
        "the highest ^1.0 tag",
    )
    assert syncs.models()["ranker"]["spec"]["model"]["version"] == "1.2.0"
    assert syncs.models()["iris"]["spec"]["model"]["version"] == "1.0.0"


def test_git_wrong_credentials_fail_clearly(syncs: Syncs) -> None:
    repo = syncs.repo("models")
    repo.write("iris.yaml", model_yaml("iris"))
    repo.commit("one")
    syncs.secret("wrong", syncs.server.username, "not-the-password")
    syncs.create("prod", syncs.http_url(repo), secret="wrong")
    ms = syncs.wait_failed("prod", c.REASON_FETCH_FAILED)
    assert message_of(ms).startswith("authentication failed: check the Secret")
    assert "not-the-password" not in str(ms)
    assert syncs.models() == {}


def test_git_unreachable_host_and_missing_repository(syncs: Syncs) -> None:
    from testcluster.launcher import free_ports

    syncs.create("nohost", f"http://127.0.0.1:{free_ports(1)[0]}/models.git")
    ms = syncs.wait_failed("nohost", c.REASON_FETCH_FAILED)
    assert message_of(ms).startswith("could not reach the repository")
    syncs.create("norepo", f"file://{syncs.server.root}/does-not-exist.git")
    ms = syncs.wait_failed("norepo", c.REASON_FETCH_FAILED)
    assert message_of(ms).startswith("repository not found")
    repo = syncs.repo("models")
    repo.write("iris.yaml", model_yaml("iris"))
    repo.commit("one")
    syncs.create("nobranch", repo.file_url, ref={"branch": "release"})
    ms = syncs.wait_failed("nobranch", c.REASON_FETCH_FAILED)
    assert message_of(ms) == "branch 'release' does not exist in the repository"


def test_sync_suspend_and_resume(syncs: Syncs) -> None:
    repo = syncs.repo("models")
    repo.write("iris.yaml", model_yaml("iris"))
    first = repo.commit("one")
    syncs.create("prod", repo.file_url)
    syncs.wait_applied("prod", f"main@sha1:{first}")
    syncs.patch("prod", {"spec": {"suspend": True}})
    syncs.wait(
        "prod",
        lambda ms: (dict_condition(ms, c.READY) or {}).get("reason") == c.REASON_SUSPENDED,
        "the suspension to show",
    )
    repo.write("ranker.yaml", model_yaml("ranker"))
    repo.commit("two")
    repo.write("fraud.yaml", model_yaml("fraud"))
    newest = repo.commit("three")
    token = syncs.request("prod")
    syncs.wait(
        "prod",
        lambda ms: (
            (ms or {})
            .get("metadata", {})
            .get("annotations", {})
            .get(c.ANNOTATION_RECONCILE_REQUESTED)
            == token
        ),
        "the request to be seen",
    )
    assert set(syncs.models()) == {"iris"}
    syncs.patch("prod", {"spec": {"suspend": False}})
    syncs.wait_applied("prod", f"main@sha1:{newest}")
    assert set(syncs.models()) == {"iris", "ranker", "fraud"}


BAD_FILES: list[tuple[str, Callable[[WorkRepo], object], str]] = [
    ("invalid-yaml", lambda r: r.write("m.yaml", "a: [1,\n"), "m.yaml:2: invalid YAML"),
    (
        "not-an-object",
        lambda r: r.write("m.yaml", "- just\n- a list\n"),
        "m.yaml:1: not a Kubernetes object",
    ),
    (
        "unknown-kind",
        lambda r: r.write(
            "m.yaml",
            "apiVersion: modelsync.io/v1alpha1\nkind: ModelDeploymnt\nmetadata: {name: x}\n",
        ),
        "m.yaml:1: ModelDeploymnt x: modelsync.io/v1alpha1 has no kind ModelDeploymnt; "
        "modelsync.io serves v1alpha1",
    ),
    (
        "duplicate-object",
        lambda r: r.write("a.yaml", model_yaml("iris")).write("b.yaml", model_yaml("iris")),
        "b.yaml:1: ModelDeployment",
    ),
    (
        "other-namespace",
        lambda r: r.write(
            "m.yaml",
            model_yaml("iris").replace(
                "  name: iris\nspec", "  name: iris\n  namespace: kube-system\nspec", 1
            ),
        ),
        "namespace 'kube-system' is not this ModelSync's",
    ),
    (
        "cluster-scoped",
        lambda r: r.write("m.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: sneaky}\n"),
        "m.yaml:1: Namespace sneaky: Namespace is cluster-scoped",
    ),
    (
        "symlink-outside",
        lambda r: r.symlink("m.yaml", "/etc/hostname"),
        "m.yaml:1: symlink points outside the repository",
    ),
    (
        "very-large-file",
        lambda r: r.write("m.yaml", "# " + "x" * (2 << 20) + "\n"),
        "m.yaml:1: file is",
    ),
    (
        "alias-bomb",
        lambda r: r.write(
            "m.yaml",
            "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
            + "".join(
                f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n"
                for i in range(6)
            ),
        ),
        "more than 100000 values once aliases are expanded",
    ),
    (
        "deep-nesting",
        lambda r: r.write("m.yaml", "a: " + "[" * 200 + "]" * 200 + "\n"),
        "m.yaml:1: nested deeper than 64 levels",
    ),
    (
        "duplicate-keys",
        lambda r: r.write(
            "m.yaml",
            model_yaml("iris").replace("  replicas: 1\n", "  replicas: 1\n  replicas: 2\n"),
        ),
        "duplicate key 'replicas'",
    ),
    (
        "python-tag",
        lambda r: r.write("m.yaml", "x: !!python/object/apply:os.system [id]\n"),
        "YAML tags are not allowed",
    ),
]


@pytest.mark.parametrize(("case", "write", "words"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_sync_bad_input_is_rejected_with_file_and_line(
    syncs: Syncs, case: str, write: Callable[[WorkRepo], object], words: str
) -> None:
    repo = syncs.repo("models")
    repo.write("good.yaml", model_yaml("good"))
    write(repo)
    sha = repo.commit(case)
    syncs.create("prod", repo.file_url)
    ms = syncs.wait_failed("prod", c.REASON_VALIDATION_FAILED)
    assert ms["status"]["lastAttemptedRevision"] == f"main@sha1:{sha}"
    assert message_of(ms).startswith("rejected, nothing applied")
    assert words in errors_of(ms)
    assert syncs.models() == {}  # the good file of a bad revision is not applied either


def test_sync_dotdot_path_is_refused_by_the_api_server(syncs: Syncs) -> None:
    with pytest.raises(kubernetes.client.ApiException) as refused:
        syncs.create("prod", "https://example.com/models.git", path="models/../../etc")
    assert refused.value.status == 422
    assert "must not contain '..'" in refused.value.body


CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  threshold: "0.5"
"""


@pytest.mark.parametrize("heal", [True, False], ids=["selfHeal", "report-only"])
def test_sync_heals_or_reports_drift_of_any_inventoried_object(
    syncs: Syncs, local_cluster: LocalCluster, heal: bool
) -> None:
    repo = syncs.repo("models")
    repo.write("settings.yaml", CONFIGMAP)
    sha = repo.commit("settings")
    syncs.create("prod", repo.file_url, selfHeal=heal)
    syncs.wait_applied("prod", f"main@sha1:{sha}")
    local_cluster.run(
        "kubectl",
        "patch",
        "configmap",
        "settings",
        "-n",
        syncs.namespace,
        "--type=merge",
        "-p",
        '{"data": {"threshold": "0.9"}}',
    )
    token = syncs.request("prod")
    ms = syncs.wait_applied("prod", f"main@sha1:{sha}", token)
    live = syncs.core.read_namespaced_config_map("settings", syncs.namespace).data["threshold"]
    ready = dict_condition(ms, c.READY) or {}
    if heal:
        assert live == "0.5"
        assert "0 created, 1 configured" in ready["message"]
    else:
        assert live == "0.9"
        assert ready["reason"] == c.REASON_DRIFT_DETECTED
        assert "1 objects differ from git (selfHeal is off)" in ready["message"]
        # Which objects and fields: in the history entry (and the Event), not the condition.
        whole = ms["status"]["history"][0]["message"]
        assert f"ConfigMap {syncs.namespace}/settings (data.threshold)" in whole


def test_git_over_ssh_with_key_and_known_hosts(syncs: Syncs, ssh_server: GitSshServer) -> None:
    repo = syncs.repo("models")
    repo.write("iris.yaml", model_yaml("iris"))
    sha = repo.commit("one")
    secret = {"identity": ssh_server.private_key, "known_hosts": ssh_server.known_hosts}
    syncs.core.create_namespaced_secret(
        syncs.namespace,
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name="ssh"),
            type=c.SECRET_TYPE_GIT,
            string_data=secret,
        ),
    )
    syncs.create("prod", ssh_server.url(repo.bare.name), secret="ssh")
    syncs.wait_applied("prod", f"main@sha1:{sha}")
    assert set(syncs.models()) == {"iris"}

    # A server whose host key the Secret does not vouch for is refused.
    syncs.core.create_namespaced_secret(
        syncs.namespace,
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name="stranger"),
            type=c.SECRET_TYPE_GIT,
            string_data={"identity": ssh_server.private_key, "known_hosts": ""},
        ),
    )
    syncs.create("mitm", ssh_server.url(repo.bare.name), secret="stranger")
    ms = syncs.wait_failed("mitm", c.REASON_FETCH_FAILED)
    assert "host key" in message_of(ms)
    assert "PRIVATE KEY" not in str(ms)
