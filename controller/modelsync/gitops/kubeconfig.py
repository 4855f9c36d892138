"""Sync, remote clusters: is a tenant's kubeconfig (`spec.kubeConfig.secretRef`) safe
to connect with, and what of it is used.

A kubeconfig is tenant content that names programs to run (`exec`, `auth-provider`),
files to read (`tokenFile`, `client-key`, ...) and an address to connect to. Only its
current context is read; everything the check does not know is refused, and the
client is built from the checked fields alone, never from the tenant's text (the
Python client's loader would run `exec` and read files as it loads). Pure: the text
of the Secret and the platform's allow-list in, a `RemoteCluster` or an error out.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from modelsync.api.manifest import Manifest
from modelsync.api.origins import origin, origin_text
from modelsync.gitops import load as loadmod

SERVERS_SETTING = "--remote-cluster-server (chart: tenancy.remoteClusterServers)"
# A kubeconfig's text, at most (a Secret may hold 1 MiB).
MAX_BYTES = 256 << 10

# Fields used, and those refused with why and the fix; any other field is refused too,
# so that a field the client would honour never slips past this check unread.
CLUSTER_FIELDS = {"server", "certificate-authority-data", "extensions"}
USER_FIELDS = {"token", "client-certificate-data", "client-key-data", "extensions"}
CONTEXT_FIELDS = {"cluster", "user", "namespace", "extensions"}
REFUSED = {
    "exec": "runs a program inside the operator; put a token in `token` instead",
    "auth-provider": "runs a plugin inside the operator; put a token in `token` instead",
    "tokenFile": "a path on the operator's disk (its own credentials are there); "
    "put the token itself in `token`",
    "client-certificate": "a path on the operator's disk; use client-certificate-data",
    "client-key": "a path on the operator's disk; use client-key-data",
    "certificate-authority": "a path on the operator's disk; use certificate-authority-data",
    # The name checked in the certificate and sent as SNI: at a shared address (an
    # ingress, a load balancer) it routes the operator's requests to another backend,
    # which the allow-list of servers, comparing addresses, cannot judge.
    "tls-server-name": "another name for the server's certificate and SNI, which the "
    f"platform's list of API servers ({SERVERS_SETTING}) cannot judge; remove it and "
    "write the name the certificate holds in server",
    "proxy-url": "sends the operator's requests to another address, which the platform's "
    f"list of API servers ({SERVERS_SETTING}) cannot judge; remove it",
    "username": "basic auth (Kubernetes dropped it); use a token or a client certificate",
    "password": "basic auth (Kubernetes dropped it); use a token or a client certificate",
    "as": "impersonation named by the tenant; give the user itself the rights it needs",
    "as-uid": "impersonation named by the tenant; give the user itself the rights it needs",
    "as-groups": "impersonation named by the tenant; give the user itself the rights it needs",
    "as-user-extra": "impersonation named by the tenant; give the user itself the rights it needs",
}


class KubeconfigError(ValueError):
    """A kubeconfig that is refused; the message names the field and the fix."""


@dataclass(frozen=True)
class RemoteCluster:
    """What of a kubeconfig the operator connects with."""

    server: str
    ca_data: str = ""
    token: str = ""
    client_certificate_data: str = ""
    client_key_data: str = ""

    def as_kubeconfig(self) -> Manifest:
        """A kubeconfig holding these fields and nothing else (for the client's loader)."""
        cluster: Manifest = {"server": self.server}
        if self.ca_data:
            cluster["certificate-authority-data"] = self.ca_data
        user: Manifest = {
            key: value
            for key, value in (
                ("token", self.token),
                ("client-certificate-data", self.client_certificate_data),
                ("client-key-data", self.client_key_data),
            )
            if value
        }
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "remote", "cluster": cluster}],
            "users": [{"name": "remote", "user": user}],
            "contexts": [{"name": "remote", "context": {"cluster": "remote", "user": "remote"}}],
            "current-context": "remote",
        }


def check(text: str, allowed_servers: tuple[str, ...], where: str) -> RemoteCluster:
    """The current context's cluster and user of the kubeconfig `text`, checked;
    KubeconfigError (its message starts with `where`, e.g. "Secret team/prod key value")
    when anything in them is refused."""
    if len(text) > MAX_BYTES:
        raise KubeconfigError(
            f"{where}: {len(text)} bytes; a kubeconfig of one cluster and one user holds a "
            f"few KiB, the limit is {MAX_BYTES}: store only the context to use"
        )
    try:
        # The sync's loader (libyaml, node and depth limits): never pure-Python YAML on
        # a tenant's megabyte.
        config = yaml.load(text, Loader=loadmod._StrictLoader)  # noqa: S506 - a SafeLoader
    except loadmod._TooBigError as error:
        raise KubeconfigError(f"{where} line {error.line}: {error.message}") from None
    except yaml.YAMLError as error:
        # Only where: PyYAML's message quotes the line (and an alias's name), and the line
        # may be the one holding the token; status and Events are read by many.
        mark = getattr(error, "problem_mark", None)
        at = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise KubeconfigError(
            f"{where}{at}: not YAML ({type(error).__name__}; the text is not shown, it may "
            "hold a credential); store a kubeconfig"
        ) from None
    if not isinstance(config, dict):
        raise KubeconfigError(f"{where}: not a kubeconfig (a mapping with clusters, users…)")
    current = config.get("current-context")
    if not isinstance(current, str) or not current:
        raise KubeconfigError(f"{where}: no current-context; set the context to use")
    context = _named(config, "contexts", "context", current, where)
    _known_fields(context, CONTEXT_FIELDS, f"{where}: context {current!r}")
    cluster_name, user_name = context.get("cluster"), context.get("user")
    if not isinstance(cluster_name, str) or not isinstance(user_name, str):
        raise KubeconfigError(f"{where}: context {current!r} must name a cluster and a user")
    cluster = _named(config, "clusters", "cluster", cluster_name, where)
    user = _named(config, "users", "user", user_name, where)
    return RemoteCluster(
        server=_server(cluster, allowed_servers, f"{where}: cluster {cluster_name!r}"),
        ca_data=_text(cluster, "certificate-authority-data", f"{where}: cluster {cluster_name!r}"),
        **_credentials(user, f"{where}: user {user_name!r}"),
    )


def _named(
    config: Mapping[str, object], section: str, key: str, name: str, where: str
) -> Mapping[str, object]:
    """The `key` mapping of the entry of `section` named `name` (exactly one)."""
    entries = config.get(section)
    listed = entries if isinstance(entries, list) else []
    found = [e for e in listed if isinstance(e, Mapping) and e.get("name") == name]
    if len(found) != 1:
        what = "no" if not found else "more than one"
        raise KubeconfigError(f"{where}: {what} entry named {name!r} in {section}")
    body = found[0].get(key)
    if not isinstance(body, Mapping):
        raise KubeconfigError(f"{where}: {section} entry {name!r} has no {key!r} mapping")
    return body


def _known_fields(body: Mapping[str, object], known: set[str], where: str) -> None:
    for name in sorted(body):
        if name in REFUSED:
            raise KubeconfigError(f"{where}: {name} is refused: {REFUSED[name]}")
        if name not in known:
            raise KubeconfigError(
                f"{where}: unknown field {name!r}: remove it (only {', '.join(sorted(known))})"
            )


def _text(body: Mapping[str, object], key: str, where: str) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise KubeconfigError(f"{where}: {key} must be a string")
    return value


def _server(cluster: Mapping[str, object], allowed: tuple[str, ...], where: str) -> str:
    cluster = dict(cluster)
    skip = cluster.pop("insecure-skip-tls-verify", False)
    if skip is not False:
        raise KubeconfigError(
            f"{where}: insecure-skip-tls-verify is refused: the operator would send "
            "credentials to whoever answers; set certificate-authority-data instead"
        )
    _known_fields(cluster, CLUSTER_FIELDS, where)
    server = _text(cluster, "server", where)
    found = origin(server)
    if found is None or found[0] != "https":
        raise KubeconfigError(
            f"{where}: server is refused: write https://host[:port] (TLS only, no user name)"
        )
    if urllib.parse.urlsplit(server).path not in ("", "/"):
        # A path under an allowed API server reaches its proxy sub-resources: services
        # and pods behind it, with the operator's requests.
        raise KubeconfigError(
            f"{where}: server {origin_text(found)} with a path is refused: write "
            "https://host[:port], no path"
        )
    if origin_text(found) not in allowed:
        listed = ", ".join(allowed) if allowed else "none"
        raise KubeconfigError(
            f"{where}: server {origin_text(found)} is not allowed (the platform's "
            f"{SERVERS_SETTING}: {listed}); ask the platform team to add it"
        )
    return server


def _credentials(user: Mapping[str, object], where: str) -> dict[str, str]:
    _known_fields(user, USER_FIELDS, where)
    found = {
        "token": _text(user, "token", where),
        "client_certificate_data": _text(user, "client-certificate-data", where),
        "client_key_data": _text(user, "client-key-data", where),
    }
    if bool(found["client_certificate_data"]) != bool(found["client_key_data"]):
        raise KubeconfigError(
            f"{where}: client-certificate-data and client-key-data go together; set both"
        )
    if not found["token"] and not found["client_certificate_data"]:
        raise KubeconfigError(
            f"{where}: no credentials; set token, or client-certificate-data and client-key-data"
        )
    return found
