"""TLS at the edge: nginx's HTTPS server settings (pure) and development certificates.

The certificate and key reach nginx like secrets (secrets.py): files in the tmpfs
/run/secrets of the nginx container, written after it starts and before nginx does; never
in the image, a label or anything printed. nginx listens for HTTPS on 8443 inside its
container (published on `nginx.tls.port`, 443 by default); plain HTTP answers 301 to the
same URL on HTTPS, unless `redirect: false`. TLS 1.2 and 1.3 only, Mozilla's
"intermediate" ciphers, optional HSTS.

`fcgikit up --tls self-signed` (or `self_signed: true`) makes a development CA and a
certificate signed by it for localhost, this machine's name, 127.0.0.1, ::1 and the edge
hosts' addresses; clients trust the CA file (`curl --cacert ca.pem`).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from collections.abc import Iterable
from pathlib import Path

from .errors import FcgikitError
from .secrets import SECRETS_DIR
from .spec import TlsSettings

CERT_SECRET = "tls.crt"
KEY_SECRET = "tls.key"
TLS_MOUNTS = ((CERT_SECRET, ""), (KEY_SECRET, ""))
CERT_PATH = f"{SECRETS_DIR}/{CERT_SECRET}"
KEY_PATH = f"{SECRETS_DIR}/{KEY_SECRET}"

PROTOCOLS = "TLSv1.2 TLSv1.3"
# Mozilla's "intermediate" configuration for TLS 1.2 (TLS 1.3 suites are not configurable here).
CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
           "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")


def tls_directives(tls: TlsSettings) -> list[str]:
    """What the HTTPS server block holds besides its listen line and locations."""
    lines = [
        f"ssl_certificate {CERT_PATH};",
        f"ssl_certificate_key {KEY_PATH};",
        f"ssl_protocols {PROTOCOLS};",
        f"ssl_ciphers {CIPHERS};",
        "ssl_prefer_server_ciphers off;",
        "ssl_session_timeout 1d;",
        "ssl_session_cache shared:fcgikit_tls:10m;",
        "ssl_session_tickets off;",
    ]
    if tls.hsts:
        lines.append(f'add_header Strict-Transport-Security "max-age={tls.hsts}" always;')
    return lines


def redirect_target(tls: TlsSettings) -> str:
    """Where plain HTTP is sent: the same host and URI on the HTTPS port."""
    port = "" if tls.port == 443 else f":{tls.port}"
    return f"https://$host{port}$request_uri"


# --- development certificates -----------------------------------------------------------------


def default_directory(project: str) -> Path:
    base = os.environ.get("FCGIKIT_TLS_DIR") or Path(
        os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "fcgikit" / "tls"
    return Path(base) / project


def default_names(addresses: Iterable[str] = ()) -> list[str]:
    names = ["localhost", socket.gethostname(), "127.0.0.1", "::1", *addresses]
    return list(dict.fromkeys(name for name in names if name))


def ensure_self_signed(directory: Path, names: Iterable[str], project: str) -> tuple[Path, Path, Path]:
    """(cert, key, ca) in `directory`: kept while they cover `names` for 7 more days, else made
    again (the CA too, once it expires)."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as exc:  # pragma: no cover - a dependency of fabric/paramiko anyway
        raise FcgikitError(f"--tls self-signed needs the cryptography package: {exc}") from None

    names = list(dict.fromkeys(names))
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    ca_path, ca_key_path = directory / "ca.pem", directory / "ca-key.pem"
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    now = datetime.datetime.now(datetime.UTC)
    soon = now + datetime.timedelta(days=7)

    def load_cert(path: Path):
        try:
            return x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError):
            return None

    def write(path: Path, data: bytes, private: bool = False) -> None:
        path.write_bytes(data)
        os.chmod(path, 0o600 if private else 0o644)

    def pem_key(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca = load_cert(ca_path)
    try:
        loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
    except (OSError, ValueError):
        loaded = None
    # The CA key is the one this function made for ca.pem (EC P-256): another key (another type,
    # or not ca.pem's) would sign certificates that fail, so the CA is made anew with its key.
    ca_key = loaded if isinstance(loaded, ec.EllipticCurvePrivateKey) else None
    if ca is None or ca_key is None or ca_key.public_key() != ca.public_key() or ca.not_valid_after_utc < soon:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"fcgikit development CA ({project})")])
        ca = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=825))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False, data_encipherment=False,
                                           key_agreement=False, encipher_only=False, decipher_only=False),
                             critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
        write(ca_key_path, pem_key(ca_key), private=True)
        write(ca_path, ca.public_bytes(serialization.Encoding.PEM))
        cert_path.unlink(missing_ok=True)

    cert = load_cert(cert_path)
    if cert is not None and key_path.exists() and cert.not_valid_after_utc > soon and cert.issuer == ca.subject:
        covered = set(_names_of(cert, x509))
        if set(names) <= covered:
            return cert_path, key_path, ca_path

    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    write(key_path, pem_key(key), private=True)
    write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path, ca_path


def _names_of(cert, x509) -> list[str]:
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(name.value) for name in alt]


def read_cert_and_key(tls: TlsSettings, project: str, addresses: Iterable[str] = ()) -> dict[str, bytes]:
    """The two values nginx gets (as the secrets tls.crt and tls.key)."""
    if tls.self_signed:
        cert, key, _ = ensure_self_signed(default_directory(project), default_names(addresses), project)
    elif tls.files is not None:
        cert, key = tls.files
    else:
        raise FcgikitError('services/nginx/tls: set "cert" and "key", or "self_signed: true" '
                           "(or give `--tls self-signed`)")
    values = {}
    for secret, path, what in ((CERT_SECRET, cert, "cert"), (KEY_SECRET, key, "key")):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise FcgikitError(f"services/nginx/tls/{what}: cannot read {path}: {exc.strerror or exc}; "
                               "nothing changed") from None
        marker = b"-----BEGIN CERTIFICATE-----" if what == "cert" else b"PRIVATE KEY-----"
        if marker not in data:
            raise FcgikitError(f"services/nginx/tls/{what}: {path} is not a PEM "
                               f"{'certificate' if what == 'cert' else 'private key'}; nothing changed")
        values[secret] = data
    return values
