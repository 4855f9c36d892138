"""Certificates and keys for the local cluster: a CA, the API server's serving
certificate, an admin client certificate, and the service-account signing key."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)
# The first address of the service range is the `kubernetes` Service; pods reach
# the API server by these names, so the serving certificate must carry them.
SERVICE_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files the components are started with."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def admin_cert(self) -> Path:
        return self.directory / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.directory / "admin.key"

    @property
    def service_account_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def service_account_public_key(self) -> Path:
        return self.directory / "sa.pub"


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    path.write_bytes(data)
    path.chmod(0o600 if secret else 0o644)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    signing_key: ec.EllipticCurvePrivateKey,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signing_key, hashes.SHA256())


def create(directory: Path, service_ip: str, host_ip: str | None = None) -> Pki:
    """Write a fresh PKI into `directory` and return where each file is. `host_ip` is
    the address the API server is also reached at from the real node and its pods."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory)
    pem = serialization.Encoding.PEM

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelsync-test-ca")])
    ca = _certificate(
        ca_name,
        ca_key.public_key(),
        ca_name,
        ca_key,
        [
            (x509.BasicConstraints(ca=True, path_length=None), True),
            (
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            ),
        ],
    )
    _write(pki.ca_cert, ca.public_bytes(pem))
    _write(pki.ca_key, _key_pem(ca_key), secret=True)

    serving_key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in SERVICE_NAMES]
    alt_names += [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address(service_ip)),
    ]
    if host_ip is not None:
        alt_names.append(x509.IPAddress(ipaddress.ip_address(host_ip)))
    serving = _certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        serving_key.public_key(),
        ca_name,
        ca_key,
        [
            (x509.SubjectAlternativeName(alt_names), False),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        ],
    )
    _write(pki.serving_cert, serving.public_bytes(pem))
    _write(pki.serving_key, _key_pem(serving_key), secret=True)

    # system:masters is the group RBAC binds to cluster-admin from the bootstrap policy.
    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin = _certificate(
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                x509.NameAttribute(NameOID.COMMON_NAME, "modelsync-admin"),
            ]
        ),
        admin_key.public_key(),
        ca_name,
        ca_key,
        [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
    )
    _write(pki.admin_cert, admin.public_bytes(pem))
    _write(pki.admin_key, _key_pem(admin_key), secret=True)

    # Service-account tokens are JWTs signed with this key (RS256 is what every client expects).
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write(pki.service_account_key, _key_pem(sa_key), secret=True)
    _write(
        pki.service_account_public_key,
        sa_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo),
    )
    return pki
