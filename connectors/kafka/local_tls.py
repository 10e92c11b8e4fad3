"""A throwaway certificate authority for a local SASL_SSL broker, made with the `openssl` CLI.

A local broker started with `--security sasl_ssl` needs a CA, a broker certificate
for 127.0.0.1/localhost (so clients can check the hostname) and, for mutual TLS, a
client certificate. Kafka reads PEM key stores directly (`ssl.keystore.type=PEM`),
so no Java keystore and no Python crypto library is needed: `openssl` is on every
machine that can run the broker's JDK tooling.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

VALID_DAYS = 30
SUBJECT_ALT_NAMES = "IP:127.0.0.1,DNS:localhost"


class TlsError(RuntimeError):
    """The certificates could not be made."""


@dataclass(frozen=True)
class TlsMaterial:
    """Where the generated files are: the CA, the broker's key store and a client's pair."""

    folder: Path

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def broker_keystore(self) -> Path:
        """The broker's private key followed by its certificate chain (Kafka's PEM key store)."""
        return self.folder / "broker-keystore.pem"

    @property
    def client_cert_file(self) -> Path:
        return self.folder / "client.pem"

    @property
    def client_key_file(self) -> Path:
        return self.folder / "client.key"


def ensure_tls_material(folder: Path) -> TlsMaterial:
    """Make the CA, broker and client certificates once; later calls reuse them."""
    material = TlsMaterial(folder)
    if material.broker_keystore.exists() and material.client_key_file.exists():
        return material
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TlsError("openssl is needed to make the local broker's TLS certificates")
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    ca_key = folder / "ca.key"
    _run(
        openssl,
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        str(VALID_DAYS),
        "-subj",
        "/CN=tokenpools local CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        str(ca_key),
        "-out",
        str(material.ca_file),
    )
    broker_key, broker_cert = folder / "broker.key", folder / "broker.pem"
    _signed(openssl, folder, ca_key, material.ca_file, "localhost", broker_key, broker_cert)
    _signed(
        openssl,
        folder,
        ca_key,
        material.ca_file,
        "tokenpools-client",
        material.client_key_file,
        material.client_cert_file,
    )
    material.broker_keystore.write_text(
        broker_key.read_text() + broker_cert.read_text() + material.ca_file.read_text()
    )
    return material


def _signed(
    openssl: str, folder: Path, ca_key: Path, ca_cert: Path, name: str, key: Path, cert: Path
) -> None:
    """A key and a certificate for `name` (and 127.0.0.1/localhost), signed by the CA."""
    request = folder / f"{name}.csr"
    extensions = folder / f"{name}.ext"
    extensions.write_text(
        f"subjectAltName={SUBJECT_ALT_NAMES}\n"
        "basicConstraints=CA:FALSE\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
    )
    _run(openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
         "-keyout", str(key), "-out", str(request))  # fmt: skip
    _run(openssl, "x509", "-req", "-in", str(request), "-CA", str(ca_cert),
         "-CAkey", str(ca_key), "-CAcreateserial", "-days", str(VALID_DAYS),
         "-extfile", str(extensions), "-out", str(cert))  # fmt: skip
    request.unlink()
    extensions.unlink()


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise TlsError(f"{argv[0]} {argv[1]} failed: {result.stderr.strip()}")
