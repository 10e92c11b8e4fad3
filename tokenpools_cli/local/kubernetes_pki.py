"""Certificates for the local control plane: one CA, the apiserver's serving cert, an admin client.

Generated with `cryptography` on first start into the cluster's data directory, so
the control plane serves TLS and authenticates clients by certificate like a real
cluster does (RBAC included), with no `openssl` or `kubeadm` on the machine.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_FOR = datetime.timedelta(days=365)
# The first address of the service range; the apiserver's `kubernetes` Service gets it.
SERVICE_IP = "10.0.0.1"


@dataclass(frozen=True)
class Pki:
    """Paths of the files one local cluster's components read."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
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
            critical=True,
        )
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        names: list[x509.GeneralName] = [
            x509.DNSName(n)
            for n in (
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            )
        ]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", SERVICE_IP)]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _new_ca(common_name: str) -> tuple[x509.Name, ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA: its name, key and certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    return name, key, _issue(name, key, name, key, ca=True)


def ensure_pki(directory: Path) -> Pki:
    """Create the cluster's certificates and keys once; later starts reuse them."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(
        *(
            directory / n
            for n in (
                "ca.crt",
                "ca.key",
                "apiserver.crt",
                "apiserver.key",
                "admin.crt",
                "admin.key",
                "sa.key",
                "sa.pub",
            )
        )
    )
    if pki.sa_pub.exists():
        return pki
    ca_name, ca_key, ca = _new_ca("tokenpools-local-ca")
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue(_name("kube-apiserver"), server_key, ca_name, ca_key, server=True)
    # system:masters: the local admin (and the components run with its kubeconfig).
    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin = _issue(_name("tokenpools-admin", "system:masters"), admin_key, ca_name, ca_key)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = serialization.Encoding.PEM
    _write_key(pki.ca_key, ca_key)
    pki.ca_cert.write_bytes(ca.public_bytes(pem))
    _write_key(pki.server_key, server_key)
    pki.server_cert.write_bytes(server.public_bytes(pem))
    _write_key(pki.admin_key, admin_key)
    pki.admin_cert.write_bytes(admin.public_bytes(pem))
    _write_key(pki.sa_key, sa_key)
    pki.sa_pub.write_bytes(
        sa_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return pki


@dataclass(frozen=True)
class ServingPki:
    """A CA and a serving certificate it signed (for localhost and 127.0.0.1): what a local
    HTTPS endpoint the API server calls (an admission webhook) needs, the CA going into the
    webhook configuration's `caBundle`."""

    ca_cert: Path
    cert: Path
    key: Path


def ensure_serving_pki(directory: Path, common_name: str) -> ServingPki:
    """Create a CA and a serving certificate once; later starts reuse them.

    The certificate names what every local server certificate here names (`_issue`):
    localhost, 127.0.0.1 and the in-cluster API server names.
    """
    directory.mkdir(parents=True, exist_ok=True)
    pki = ServingPki(directory / "ca.crt", directory / "tls.crt", directory / "tls.key")
    if pki.key.exists() and pki.cert.exists() and pki.ca_cert.exists():
        return pki
    ca_name, ca_key, ca = _new_ca(f"{common_name}-ca")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(_name(common_name), key, ca_name, ca_key, server=True)
    pem = serialization.Encoding.PEM
    pki.ca_cert.write_bytes(ca.public_bytes(pem))
    pki.cert.write_bytes(cert.public_bytes(pem))
    _write_key(pki.key, key)
    return pki
