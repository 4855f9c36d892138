"""A remote cluster's client certificate and key (spec.kubeConfig) are used from memory:
no file holding them stays behind in the operator's temporary directory (the Python
client's loader wrote each to a file of a directory nobody removed, one per Secret
version). A real TLS handshake on loopback that demands the client certificate."""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelsync.gitops.kubeconfig import RemoteCluster
from modelsync.kube import remote

ANSWERS = {
    "/version": {
        **dict.fromkeys(("buildDate", "compiler", "gitCommit", "gitTreeState", "goVersion"), ""),
        **{"major": "1", "minor": "37", "gitVersion": "v1.37.0", "platform": "linux/amd64"},
    },
    "/api": {"kind": "APIVersions", "versions": ["v1"]},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": []},
}


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def certificates(directory: Path) -> None:
    """ca.crt, and server and client certificates it signed (EC keys: quick to make)."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=ca",
            "-days", "1", cwd=directory)  # fmt: skip
    for name, extension in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "")):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj",
                f"/CN={name}", cwd=directory)  # fmt: skip
        (directory / f"{name}.ext").write_text(extension + "\n" if extension else "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "1", "-extfile",
                f"{name}.ext", cwd=directory)  # fmt: skip


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        peer = self.connection.getpeercert()
        subject = dict(item[0] for item in (peer or {}).get("subject", ()))
        self.server.clients.append(subject.get("commonName", ""))  # type: ignore[attr-defined]
        path = self.path.partition("?")[0].rstrip("/")
        body = json.dumps(ANSWERS.get(path, {})).encode()
        self.send_response(200 if path in ANSWERS else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """An HTTPS server on loopback that refuses any client without a certificate of the
    test's CA; yields its URL, the certificates' directory and the clients it saw."""
    directory = tmp_path / "pki"
    directory.mkdir()
    certificates(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "server.crt", directory / "server.key")
    context.load_verify_locations(directory / "ca.crt")
    context.verify_mode = ssl.CERT_REQUIRED
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.clients = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", directory, server.clients  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def encoded(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_security_a_remote_clusters_client_key_leaves_no_file_behind(
    api_server: tuple[str, Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, pki, clients = api_server
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # the operator's /tmp
    cluster = RemoteCluster(
        server=url,
        ca_data=encoded(pki / "ca.crt"),
        client_certificate_data=encoded(pki / "client.crt"),
        client_key_data=encoded(pki / "client.key"),
    )
    kube = remote.remote_kube(cluster.as_kubeconfig(), qps=0, burst=0)
    remote.probe(kube)
    assert set(clients) == {"client"}, clients  # the key was used, on every request
    key = (pki / "client.key").read_bytes().strip()
    holding = [
        str(path.relative_to(scratch))
        for path in scratch.rglob("*")
        if path.is_file() and key in path.read_bytes()
    ]
    assert holding == [], f"files in the temporary directory hold the client key: {holding}"
    assert [p for p in scratch.iterdir() if p.name.startswith("modelsync-remote-")] == []


def test_a_key_that_is_not_the_certificates_is_refused_naming_fields_not_content(
    api_server: tuple[str, Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, pki, _ = api_server
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    cluster = RemoteCluster(
        server=url,
        ca_data=encoded(pki / "ca.crt"),
        client_certificate_data=encoded(pki / "client.crt"),
        client_key_data=encoded(pki / "server.key"),  # another certificate's key
    )
    with pytest.raises(remote.CredentialsError, match="client-key-data") as refused:
        remote.remote_kube(cluster.as_kubeconfig(), qps=0, burst=0)
    assert "PRIVATE KEY" not in str(refused.value)
    assert encoded(pki / "server.key")[:40] not in str(refused.value)
    assert list(scratch.iterdir()) == []  # the key's file went with the refusal
