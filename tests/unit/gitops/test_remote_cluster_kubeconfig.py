"""A tenant's kubeconfig for a remote cluster (spec.kubeConfig): what is refused, and that
the client is built from the checked fields alone."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml

from modelsync.gitops.kubeconfig import KubeconfigError, RemoteCluster, check

ALLOWED = ("https://198.18.4.1:6443",)
WHERE = "Secret team/prod key value"


def kubeconfig(
    cluster: dict[str, Any] | None = None, user: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "prod",
                "cluster": {
                    "server": "https://198.18.4.1:6443",
                    "certificate-authority-data": "Q0E=",
                    **(cluster or {}),
                },
            }
        ],
        "users": [{"name": "bot", "user": user if user is not None else {"token": "t0ken"}}],
        "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "bot"}}],
        "current-context": "prod",
    }


def checked(config: dict[str, Any], allowed: tuple[str, ...] = ALLOWED) -> RemoteCluster:
    return check(yaml.safe_dump(config), allowed, WHERE)


def refusal(config: dict[str, Any], allowed: tuple[str, ...] = ALLOWED) -> str:
    with pytest.raises(KubeconfigError) as raised:
        checked(config, allowed)
    message = str(raised.value)
    assert message.startswith(WHERE), message
    return message


def test_remote_cluster_kubeconfig_with_token_is_used_field_by_field() -> None:
    found = checked(kubeconfig())
    assert found == RemoteCluster(server="https://198.18.4.1:6443", ca_data="Q0E=", token="t0ken")
    rebuilt = found.as_kubeconfig()
    assert rebuilt["users"] == [{"name": "remote", "user": {"token": "t0ken"}}]
    # What the loader gets round-trips through the same check.
    assert check(yaml.safe_dump(rebuilt), ALLOWED, WHERE) == found


def test_remote_cluster_kubeconfig_with_client_certificate_data() -> None:
    user = {"client-certificate-data": "Q0VSVA==", "client-key-data": "S0VZ"}
    found = checked(kubeconfig(user=user))
    assert (found.client_certificate_data, found.client_key_data, found.token) == (
        "Q0VSVA==",
        "S0VZ",
        "",
    )


@pytest.mark.parametrize(
    ("user", "words"),
    [
        ({"exec": {"command": "/bin/sh", "apiVersion": "x"}}, "exec is refused: runs a program"),
        ({"auth-provider": {"name": "gcp"}}, "auth-provider is refused: runs a plugin"),
        ({"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}, "tokenFile"),
        ({"client-certificate": "/etc/a.crt", "client-key-data": "S0VZ"}, "client-certificate"),
        ({"client-certificate-data": "Q0VSVA==", "client-key": "/etc/a.key"}, "client-key"),
        ({"token": "t", "as": "system:admin"}, "as is refused: impersonation"),
        ({"token": "t", "as-groups": ["system:masters"]}, "as-groups is refused"),
        ({"username": "u", "password": "p"}, "basic auth"),
        ({"token": "t", "hidden": "x"}, "unknown field 'hidden'"),
        ({}, "no credentials"),
        ({"client-certificate-data": "Q0VSVA=="}, "go together"),
    ],
)
def test_remote_cluster_kubeconfig_user_refused(user: dict[str, Any], words: str) -> None:
    message = refusal(kubeconfig(user=user))
    assert "user 'bot'" in message
    assert words in message


@pytest.mark.parametrize(
    ("cluster", "words"),
    [
        ({"insecure-skip-tls-verify": True}, "insecure-skip-tls-verify is refused"),
        ({"certificate-authority": "/etc/ca.crt"}, "use certificate-authority-data"),
        ({"proxy-url": "http://198.18.4.9:3128"}, "proxy-url is refused"),
        ({"server": "http://198.18.4.1:6443"}, "TLS only"),
        ({"server": "https://198.18.4.2:6443"}, "is not allowed"),
        ({"server": "https://user@198.18.4.1:6443"}, "write https://host[:port]"),
        ({"disable-compression": True, "surprise": 1}, "unknown field"),
    ],
)
def test_remote_cluster_kubeconfig_cluster_refused(cluster: dict[str, Any], words: str) -> None:
    message = refusal(kubeconfig(cluster=cluster))
    assert "cluster 'prod'" in message
    assert words in message


def test_remote_cluster_kubeconfig_skip_tls_false_is_harmless() -> None:
    assert checked(kubeconfig(cluster={"insecure-skip-tls-verify": False})).server


def test_remote_cluster_server_not_listed_names_the_setting() -> None:
    message = refusal(kubeconfig(), allowed=())
    assert "--remote-cluster-server" in message
    assert "none" in message


def test_remote_cluster_kubeconfig_only_current_context_is_read() -> None:
    config = kubeconfig()
    # A refused user the current context does not use is not read at all.
    config["users"].append({"name": "other", "user": {"exec": {"command": "x"}}})
    assert checked(config).token == "t0ken"
    config["current-context"] = "missing"
    assert "no entry named 'missing' in contexts" in refusal(config)


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda c: c.pop("current-context"), "no current-context"),
        (lambda c: c["clusters"].append(copy.deepcopy(c["clusters"][0])), "more than one"),
        (lambda c: c["contexts"][0]["context"].pop("user"), "must name a cluster and a user"),
        (lambda c: c["contexts"][0]["context"].update(exec="x"), "exec is refused"),
    ],
)
def test_remote_cluster_kubeconfig_shape_refused(mutate: Any, words: str) -> None:
    config = kubeconfig()
    mutate(config)
    assert words in refusal(config)


def test_remote_cluster_kubeconfig_not_yaml_names_the_line() -> None:
    with pytest.raises(KubeconfigError, match=r"line 2 column 4: not YAML"):
        check("a: b\n  c: [\n", ALLOWED, WHERE)
    with pytest.raises(KubeconfigError, match="not a kubeconfig"):
        check("- a\n", ALLOWED, WHERE)


def test_remote_cluster_unreachable_reads_the_same_each_time() -> None:
    """No memory address in the message: a retry that fails the same way writes nothing."""
    import urllib3
    from urllib3.connection import HTTPSConnection

    from modelsync.kube.remote import unreachable

    timeout = urllib3.exceptions.ConnectTimeoutError(
        HTTPSConnection("198.18.0.251"), "Connection to 198.18.0.251 timed out."
    )
    wrapped = urllib3.exceptions.MaxRetryError(None, "/version", timeout)  # type: ignore[arg-type]
    assert unreachable(wrapped) == "ConnectTimeoutError: Connection to 198.18.0.251 timed out."
    assert unreachable(ConnectionRefusedError(111, "Connection refused")) == (
        "ConnectionRefusedError: Connection refused"
    )
    assert unreachable(ValueError("content")) is None


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--controllers", "gitops,serve", "name one or both of gitops, serving"),
        ("--controllers", ",", "name one or both of gitops, serving"),
        ("--remote-cluster-server", "http://198.18.4.1:6443", "https:// only"),
        ("--remote-cluster-server", "https://198.18.4.1:6443/k8s", "is not an API server"),
    ],
)
def test_remote_cluster_run_flags_refused(
    flag: str, value: str, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from modelsync.cli import main as cli

    assert cli.main(["run", flag, value]) == 2
    err = capsys.readouterr().err
    assert flag in err
    assert words in err


def test_remote_cluster_run_flags_read() -> None:
    from modelsync.runtime import settings

    assert settings.parse_controllers(" serving ") == ("serving",)
    assert settings.parse_controllers("serving,gitops,serving") == ("serving", "gitops")
    assert settings.parse_remote_cluster_servers(("https://Prod.example.com",)) == (
        "https://prod.example.com:443",
    )


TOKEN = "s3cr3t-t0ken-of-the-remote-cluster"


@pytest.mark.parametrize(
    "broken",
    [
        f"users:\n- name: bot\n  user:\n    token: {TOKEN}: [\n",  # a scanner error
        f"users:\n- name: bot\n  user:\n    token: *{TOKEN}\n",  # an undefined alias
        f"users:\n- name: bot\n  user:\n    token: '{TOKEN}\n",  # an unclosed quote
        f"users:\n- name: bot\n  user:\n    token: {TOKEN}\n\tbad: tab\n",  # a tab
    ],
    ids=["mapping", "alias", "quote", "tab"],
)
def test_security_a_malformed_kubeconfig_names_line_and_column_never_its_token(
    broken: str,
) -> None:
    """What the status and the Events of the ModelSync say (ClusterError's message and
    headline) holds the line and the column, and nothing of the Secret's text."""
    import base64

    from modelsync.api import constants as c
    from modelsync.gitops.clusters import ClusterError, _checked

    secret = {
        "type": c.SECRET_TYPE_KUBECONFIG,
        "data": {c.KUBECONFIG_KEY: base64.b64encode(broken.encode()).decode()},
    }
    with pytest.raises(ClusterError) as raised:
        _checked(secret, "team", "prod", ALLOWED)
    told = f"{raised.value} {raised.value.headline}"
    assert "not YAML" in told
    assert re.search(r"line \d+ column \d+", told), told
    assert "t0ken" not in told
    assert "s3cr3t" not in told


@pytest.mark.parametrize(
    ("cluster", "words"),
    [
        # Another name for the certificate and SNI: at a shared address (an ingress, a
        # load balancer) that name routes the operator's requests to another backend.
        ({"tls-server-name": "kubernetes.default.svc"}, "tls-server-name is refused"),
        # A path under the allowed server: its proxy sub-resources reach other services.
        (
            {"server": "https://198.18.4.1:6443/api/v1/namespaces/x/services/y:80/proxy"},
            "no path",
        ),
        ({"server": "https://198.18.4.1:6443/k8s/"}, "no path"),
    ],
)
def test_security_remote_server_is_its_allowed_origin_alone(
    cluster: dict[str, Any], words: str
) -> None:
    assert words in refusal(kubeconfig(cluster=cluster))


def test_security_remote_cluster_kubeconfig_is_read_with_bounds() -> None:
    """A Secret may hold 1 MiB: a kubeconfig over 256 KiB is refused before it is parsed,
    and one under it is parsed by the sync's loader (node limit, libyaml), never by
    pure-Python YAML (150 MiB and seconds for 1 MiB of `[0,0,...]`)."""
    padded = kubeconfig(user={"token": "t" * (300 << 10)})
    message = refusal(padded)
    assert "the limit is 262144" in message, message
    dense = yaml.safe_dump(kubeconfig()) + "x: [" + "0," * (120_000) + "0]\n"
    assert len(dense) < 256 << 10
    with pytest.raises(KubeconfigError) as raised:
        check(dense, ALLOWED, WHERE)
    assert "more than 100000 values" in str(raised.value), raised.value
