"""A client for another cluster (a ModelSync's spec.kubeConfig), built from a kubeconfig
that `gitops.kubeconfig.check` has already reduced to the fields it allows.

Every request has a deadline (5 s to connect, 30 s in all) and none is retried inside
a sync: an API server that does not answer costs one worker a few seconds, then the
sync reports it and backs off.

The certificate material is held in memory: the CA as data, the client certificate
and key loaded into the client's TLS context from files of a private directory
(0700) that is removed before this returns — Python's ssl reads a key only from a
file. (The client's own kubeconfig loader wrote each to a temporary file for good.)
"""

from __future__ import annotations

import base64
import binascii
import re
import ssl
import tempfile
from pathlib import Path
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


class CredentialsError(ValueError):
    """The kubeconfig's certificate data cannot be used (not base64, not PEM, a key that
    is not the certificate's); the message names the fields, never their content."""


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
    """A Kube for the cluster of `kubeconfig` (checked already: no exec, no file paths;
    as `RemoteCluster.as_kubeconfig` writes it), with a rate limit of its own (another
    API server); reaches the server for discovery."""
    cluster = kubeconfig["clusters"][0]["cluster"]
    user = kubeconfig["users"][0]["user"]
    config = kubernetes.client.Configuration()
    config.host = cluster["server"]
    if user.get("token"):
        config.api_key = {"authorization": f"Bearer {user['token']}"}
    config.tls_server_name = cluster.get("tls-server-name") or None
    config.retries = False  # one attempt: the sync's backoff does the retrying
    config.connection_pool_maxsize = CONNECTIONS
    client = kubernetes.client.ApiClient(config)
    # The TLS context holds the CA and the client's key; the pool made from the
    # configuration (which would name files) is replaced by one that uses it.
    client.rest_client.pool_manager = urllib3.PoolManager(
        num_pools=4,
        maxsize=CONNECTIONS,
        retries=False,
        ssl_context=tls_context(cluster, user),
        cert_reqs=ssl.CERT_REQUIRED,
        **({"server_hostname": config.tls_server_name} if config.tls_server_name else {}),
    )
    bucket = throttle.TokenBucket(qps, burst) if qps else None
    client.rest_client = TimedRest(
        throttle.ThrottledRest(client.rest_client, bucket), (CONNECT_SECONDS, REQUEST_SECONDS)
    )
    return Kube(client)


def tls_context(cluster: dict[str, Any], user: dict[str, Any]) -> ssl.SSLContext:
    """Verifies the server against the kubeconfig's CA (else the system's) and presents
    its client certificate, if any; nothing of either stays on disk. CredentialsError
    when the data cannot be used."""
    ca = cluster.get("certificate-authority-data")
    try:
        if ca:
            context = ssl.create_default_context(cadata=base64.b64decode(ca).decode())
        else:
            context = ssl.create_default_context()
    except (binascii.Error, UnicodeDecodeError, ssl.SSLError) as error:
        raise CredentialsError(
            f"certificate-authority-data is not a base64 PEM certificate ({_reason(error)})"
        ) from None
    if user.get("client-certificate-data"):
        with tempfile.TemporaryDirectory(prefix="modelsync-remote-") as private:
            certificate, key = Path(private) / "certificate", Path(private) / "key"
            try:
                key.touch(mode=0o600)
                key.write_bytes(base64.b64decode(user["client-key-data"]))
                certificate.write_bytes(base64.b64decode(user["client-certificate-data"]))
                context.load_cert_chain(certificate, key)
            except (binascii.Error, ssl.SSLError) as error:
                raise CredentialsError(
                    "client-certificate-data and client-key-data are not a base64 PEM "
                    f"certificate and its key ({_reason(error)})"
                ) from None
    return context


def _reason(error: Exception) -> str:
    """What went wrong, in the library's words (they quote no data)."""
    return getattr(error, "reason", None) or type(error).__name__


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
