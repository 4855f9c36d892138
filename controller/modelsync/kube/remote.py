"""A client for another cluster (a ModelSync's spec.kubeConfig), built from a kubeconfig
that `gitops.kubeconfig.check` has already reduced to the fields it allows.

Every request has a deadline (5 s to connect, 30 s in all) and none is retried inside
a sync: an API server that does not answer costs one worker a few seconds, then the
sync reports it and backs off.
"""

from __future__ import annotations

import re
import tempfile
from typing import Any

import kubernetes
import urllib3

from modelsync.kube import throttle
from modelsync.kube.client import CONNECTIONS, Kube

CONNECT_SECONDS = 5.0
REQUEST_SECONDS = 30.0
# urllib3 names the connection object (its address in memory) in its errors: without it
# the same failure reads the same each time, and a retry writes no new status.
_OBJECT = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>:?\s*")


class TimedRest:
    """Wraps a client's REST layer: a request that names no timeout gets ours."""

    def __init__(self, inner: Any, timeout: tuple[float, float]) -> None:
        self.inner, self.timeout = inner, timeout

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = self.timeout
        return self.inner.request(method, url, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def remote_kube(kubeconfig: dict[str, Any], qps: float, burst: int) -> Kube:
    """A Kube for the cluster of `kubeconfig` (checked already: no exec, no file paths),
    with a rate limit of its own (another API server); reaches the server for discovery."""
    config = kubernetes.client.Configuration()
    # Certificate data go to files of a private directory (0700), not the shared temp dir.
    kubernetes.config.load_kube_config_from_dict(
        kubeconfig,
        client_configuration=config,
        persist_config=False,
        temp_file_path=tempfile.mkdtemp(prefix="modelsync-remote-"),
    )
    config.retries = False  # one attempt: the sync's backoff does the retrying
    config.connection_pool_maxsize = CONNECTIONS
    client = kubernetes.client.ApiClient(config)
    bucket = throttle.TokenBucket(qps, burst) if qps else None
    client.rest_client = TimedRest(
        throttle.ThrottledRest(client.rest_client, bucket), (CONNECT_SECONDS, REQUEST_SECONDS)
    )
    return Kube(client)


def probe(kube: Kube) -> None:
    """Ask the API server its version: raises if it does not answer."""
    kubernetes.client.VersionApi(kube.client).get_code(
        _request_timeout=(CONNECT_SECONDS, CONNECT_SECONDS * 2)
    )


def unreachable(error: BaseException) -> str | None:
    """Why a request did not reach the server, in a line; None if it did."""
    if isinstance(error, kubernetes.client.ApiException) and not error.status:
        # The client's own wrapping of a failed TLS handshake (status 0): no answer.
        return " ".join(str(error.reason or "no answer").split()).replace("Error ", "Error: ", 1)
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        error = error.reason
    if isinstance(error, urllib3.exceptions.HTTPError | OSError):
        last = error.args[-1] if error.args else ""
        text = last if isinstance(last, str) else str(error)
        return _OBJECT.sub("", f"{type(error).__name__}: {text}")
    return None
