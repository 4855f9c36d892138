"""Helpers for ModelSync tests: a test namespace's ModelSyncs and their git repositories."""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable
from typing import Any

import kubernetes
from kubernetes.client import CoreV1Api, CustomObjectsApi

from modelsync.api import constants as c
from tests.support.cluster import LocalCluster
from tests.support.gitserver import GitHttpServer, WorkRepo
from tests.support.kube import dict_condition, wait_for
from tests.support.models import MD

MS = {"group": c.GROUP, "version": c.VERSION, "plural": c.MODELSYNC_PLURAL}


def model_yaml(name: str, version: str = "1", replicas: int = 1) -> str:
    return f"""\
apiVersion: modelsync.io/v1alpha1
kind: ModelDeployment
metadata:
  name: {name}
spec:
  model:
    name: {name}
    version: "{version}"
    uri: s3://models/{name}/{version}
  runtime:
    name: mlserver
  replicas: {replicas}
"""


class Syncs:
    """ModelSyncs (and their repositories) of one test namespace."""

    def __init__(self, cluster: LocalCluster, namespace: str, server: GitHttpServer) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.server = server
        self.api = CustomObjectsApi(cluster.api)
        self.core = CoreV1Api(cluster.api)

    def repo(self, name: str) -> WorkRepo:
        return WorkRepo(self.server.root, f"{self.namespace}-{name}")

    def http_url(self, repo: WorkRepo) -> str:
        return self.server.url(repo.bare.name)

    def secret(self, name: str, username: str, password: str) -> None:
        data = {"username": username, "password": password}
        self.core.create_namespaced_secret(
            self.namespace,
            kubernetes.client.V1Secret(
                metadata=kubernetes.client.V1ObjectMeta(name=name),
                type=c.SECRET_TYPE_GIT,
                data={k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
            ),
        )

    def create(
        self,
        name: str,
        url: str,
        ref: dict[str, str] | None = None,
        secret: str | None = None,
        labels: dict[str, str] | None = None,
        **spec: Any,
    ) -> None:
        repo: dict[str, Any] = {"url": url}
        if ref is not None:
            repo["ref"] = ref
        if secret is not None:
            repo["secretRef"] = {"name": secret}
        body = {
            "apiVersion": c.API_VERSION,
            "kind": c.MODELSYNC_KIND,
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"repo": repo, "interval": "1h", **spec},
        }
        self.api.create_namespaced_custom_object(namespace=self.namespace, body=body, **MS)

    def patch(self, name: str, patch: dict[str, Any]) -> None:
        self.api.patch_namespaced_custom_object(
            name=name, namespace=self.namespace, body=patch, **MS
        )

    def request(self, name: str) -> str:
        """Ask for a sync now, as the CLI does; returns the token to wait for."""
        token = datetime.datetime.now(datetime.UTC).isoformat()
        self.patch(name, {"metadata": {"annotations": {c.ANNOTATION_RECONCILE_REQUESTED: token}}})
        return token

    def wait(
        self,
        name: str,
        check: Callable[[dict[str, Any] | None], bool],
        describe: str,
        timeout: float = 60,
    ) -> dict[str, Any]:
        found: dict[str, Any] = wait_for(
            lambda **kw: self.api.list_namespaced_custom_object(**MS, **kw),
            name,
            check,
            namespace=self.namespace,
            timeout=timeout,
            describe=describe,
        )
        return found

    def wait_applied(
        self, name: str, revision: str, token: str | None = None, timeout: float = 60
    ) -> dict[str, Any]:
        def applied(ms: dict[str, Any] | None) -> bool:
            status = (ms or {}).get("status") or {}
            ready = dict_condition(ms, c.READY) or {}
            return (
                status.get("lastAppliedRevision") == revision
                and ready.get("status") == "True"
                and (token is None or status.get("lastHandledReconcileAt") == token)
            )

        return self.wait(name, applied, f"{name} to apply {revision}", timeout=timeout)

    def wait_failed(self, name: str, reason: str, token: str | None = None) -> dict[str, Any]:
        def failed(ms: dict[str, Any] | None) -> bool:
            ready = dict_condition(ms, c.READY) or {}
            status = (ms or {}).get("status") or {}
            return (
                ready.get("status") == "False"
                and ready.get("reason") == reason
                and (token is None or status.get("lastHandledReconcileAt") == token)
            )

        return self.wait(name, failed, f"{name} to fail with {reason}")

    def get(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.api.get_namespaced_custom_object(
            name=name, namespace=self.namespace, **MS
        )
        return found

    def models(self) -> dict[str, dict[str, Any]]:
        items = self.api.list_namespaced_custom_object(namespace=self.namespace, **MD)["items"]
        return {md["metadata"]["name"]: md for md in items}
