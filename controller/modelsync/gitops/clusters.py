"""Sync, where to: the cluster a ModelSync applies to. Its own (the operator's) unless it
names a kubeconfig (spec.kubeConfig.secretRef); then a client for that cluster, built
once per Secret version, after the platform's checks: the namespace may name one, the
Secret is of type modelsync.io/kubeconfig, its kubeconfig passes `kubeconfig.check`,
and the API server answers.
"""

from __future__ import annotations

import base64
import binascii
import threading
from dataclasses import dataclass
from typing import Any

from modelsync.api import constants as c
from modelsync.api.namespaces import namespace_matches
from modelsync.gitops import kubeconfig
from modelsync.gitops.settings import SyncSettings
from modelsync.kube import remote
from modelsync.kube.client import Kube

NAMESPACES_SETTING = "--allow-remote-clusters (chart: tenancy.allowRemoteClusters)"


class ClusterError(Exception):
    """The ModelSync's cluster cannot be used: a reason (constants) and what to do; the
    headline (the Ready condition's message, kept short) says what is wrong first."""

    def __init__(
        self, reason: str, message: str, stalled: bool = False, headline: str = ""
    ) -> None:
        super().__init__(message)
        self.reason, self.stalled, self.headline = reason, stalled, headline or message


@dataclass(frozen=True)
class _Client:
    version: tuple[str, str]  # the Secret's uid and resourceVersion
    kube: Kube


class Clusters:
    """The remote clusters' clients, one per ModelSync (never shared across tenants)."""

    def __init__(self, local: Kube, settings: SyncSettings) -> None:
        self.local, self.settings = local, settings
        self._clients: dict[tuple[str, str], _Client] = {}
        self._lock = threading.Lock()

    def target(self, ms: dict[str, Any]) -> Kube | None:
        """The Kube to apply the ModelSync's content with in another cluster, reachable;
        None for this cluster. ClusterError when it may not or cannot be used."""
        ref = (ms["spec"].get("kubeConfig") or {}).get("secretRef") or {}
        if not ref.get("name"):
            return None
        namespace, name = ms["metadata"]["namespace"], ms["metadata"]["name"]
        if not namespace_matches(namespace, self.settings.allow_remote_clusters):
            raise ClusterError(
                c.REASON_REMOTE_CLUSTER_NOT_ALLOWED,
                f"spec.kubeConfig: namespace {namespace!r} may not apply to another cluster "
                f"(platform setting {NAMESPACES_SETTING}); nothing applied — remove "
                "spec.kubeConfig, or ask the platform team to allow this namespace",
                stalled=True,
                headline=f"namespace {namespace!r} may not apply to another cluster "
                "(--allow-remote-clusters); see history",
            )
        secret = self.local.get("v1", "Secret", namespace, ref["name"])
        checked = _checked(secret, namespace, ref["name"], self.settings.remote_cluster_servers)
        assert secret is not None
        meta = secret["metadata"]
        version = (str(meta.get("uid")), str(meta.get("resourceVersion")))
        try:
            kube = self._client((namespace, name), version, checked)
            remote.probe(kube)
        except remote.CredentialsError as error:
            where = f"Secret {namespace}/{ref['name']} (spec.kubeConfig.secretRef)"
            raise ClusterError(
                c.REASON_KUBECONFIG_INVALID,
                f"{where} key {c.KUBECONFIG_KEY!r}: {error}; fix the Secret",
                headline=f"Secret {ref['name']!r}: kubeconfig refused: {error}",
            ) from None
        except Exception as error:
            why = remote.unreachable(error)
            if why is None:
                raise
            raise ClusterError(
                c.REASON_CLUSTER_UNREACHABLE,
                f"cluster {checked.server} (spec.kubeConfig, Secret {ref['name']!r}) does not "
                f"answer: {why}; nothing applied there, retrying",
                headline=f"cluster {checked.server} does not answer: {why}",
            ) from None
        return kube

    def forget(self, key: tuple[str, str]) -> None:
        """The ModelSync is gone: its client (and the credentials it holds) goes too."""
        with self._lock:
            self._clients.pop(key, None)

    def _client(
        self, key: tuple[str, str], version: tuple[str, str], checked: kubeconfig.RemoteCluster
    ) -> Kube:
        """The ModelSync's client, made anew when its Secret changed (discovery then
        reaches the server: raises when it does not answer)."""
        with self._lock:
            known = self._clients.get(key)
        if known is not None and known.version == version:
            return known.kube
        kube = remote.remote_kube(
            checked.as_kubeconfig(), self.settings.kube_qps, self.settings.kube_burst
        )
        with self._lock:
            self._clients[key] = _Client(version, kube)
        return kube


def _checked(
    secret: dict[str, Any] | None, namespace: str, name: str, servers: tuple[str, ...]
) -> kubeconfig.RemoteCluster:
    """The kubeconfig of the Secret, checked; ClusterError (KubeConfigInvalid) naming the
    Secret, the field and the fix."""
    where = f"Secret {namespace}/{name} (spec.kubeConfig.secretRef)"
    if secret is None:
        raise ClusterError(c.REASON_KUBECONFIG_INVALID, f"{where} does not exist; create it")
    if secret.get("type") != c.SECRET_TYPE_KUBECONFIG:
        raise ClusterError(
            c.REASON_KUBECONFIG_INVALID,
            f"{where} has type {secret.get('type') or 'Opaque'!r}; only Secrets of type "
            f"{c.SECRET_TYPE_KUBECONFIG!r} are read: kubectl create secret generic {name} "
            f"--type={c.SECRET_TYPE_KUBECONFIG} --from-file={c.KUBECONFIG_KEY}=<kubeconfig>",
        )
    value = (secret.get("data") or {}).get(c.KUBECONFIG_KEY)
    if not value:
        raise ClusterError(
            c.REASON_KUBECONFIG_INVALID, f"{where} has no key {c.KUBECONFIG_KEY!r}; put it there"
        )
    try:
        text = base64.b64decode(value).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ClusterError(
            c.REASON_KUBECONFIG_INVALID, f"{where} key {c.KUBECONFIG_KEY!r} is not UTF-8 text"
        ) from None
    where = f"{where} key {c.KUBECONFIG_KEY!r}"
    try:
        return kubeconfig.check(text, servers, where)
    except kubeconfig.KubeconfigError as error:
        problem = str(error).removeprefix(where).lstrip(": ")
        raise ClusterError(
            c.REASON_KUBECONFIG_INVALID,
            str(error),
            headline=f"Secret {name!r}: kubeconfig refused: {problem}",
        ) from None
