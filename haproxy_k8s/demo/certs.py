"""Throwaway certificates for stand-in apiservers: one CA, server and client certs.

Used by `haproxy-k8s demo` and the tests, never for a real cluster. Keys are EC P-256
because generating them is nearly free, which keeps test sessions fast.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Leaf certificates outlive any demo; the CA outlives its leaves.
LEAF_VALIDITY = dt.timedelta(days=365)
CA_VALIDITY = dt.timedelta(days=3650)
# Backdated so a host whose clock is slightly behind still accepts a fresh certificate.
CLOCK_SKEW = dt.timedelta(minutes=5)

CA_CERT_NAME = "ca.crt"
CA_KEY_NAME = "ca.key"


@dataclass(frozen=True)
class CertBundle:
    """Paths of one server certificate and the CA that signed it (all PEM)."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    pem_file: Path  # certificate then key: what HAProxy's `crt` and `ca-file` users want
    ca_key_file: Path  # kept so client certificates can be signed by the same CA


@dataclass(frozen=True)
class _Issuer:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def make_certs(directory: Path, hosts: list[str], name: str = "apiserver") -> CertBundle:
    """Write a server certificate for `hosts` (IPs and DNS names) into `directory`.

    The CA in `directory` is reused when one is there, so several servers made into one
    directory (one per stand-in node) are all trusted through the same `ca.crt`.
    """
    if not hosts:
        raise ValueError("a server certificate needs at least one host name or address")
    directory.mkdir(parents=True, exist_ok=True)
    issuer = _load_or_create_ca(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _sign(
        issuer,
        key,
        common_name=name,
        extensions=[
            (x509.SubjectAlternativeName([_general_name(host) for host in hosts]), False),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        ],
    )
    stem = _file_stem(name)
    cert_file = _write(directory / f"{stem}.crt", _cert_pem(cert))
    key_file = _write(directory / f"{stem}.key", _key_pem(key), private=True)
    pem_file = _write(directory / f"{stem}.pem", _cert_pem(cert) + _key_pem(key), private=True)
    return CertBundle(
        ca_file=directory / CA_CERT_NAME,
        cert_file=cert_file,
        key_file=key_file,
        pem_file=pem_file,
        ca_key_file=directory / CA_KEY_NAME,
    )


def make_client_cert(directory: Path, bundle: CertBundle, cn: str) -> Path:
    """Write a client certificate (CN=`cn`) signed by `bundle`'s CA; return the combined PEM.

    kube-apiserver maps the CN to the user name, which is all a health check needs when
    anonymous auth is disabled.
    """
    directory.mkdir(parents=True, exist_ok=True)
    issuer = _load_issuer(bundle.ca_file, bundle.ca_key_file)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _sign(
        issuer,
        key,
        common_name=cn,
        extensions=[(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
    )
    pem = _cert_pem(cert) + _key_pem(key)
    return _write(directory / f"client-{_file_stem(cn)}.pem", pem, private=True)


def _load_or_create_ca(directory: Path) -> _Issuer:
    cert_path, key_path = directory / CA_CERT_NAME, directory / CA_KEY_NAME
    if cert_path.exists() and key_path.exists():
        return _load_issuer(cert_path, key_path)
    issuer = _create_ca()
    _write(key_path, _key_pem(issuer.key), private=True)
    _write(cert_path, _cert_pem(issuer.cert))
    return issuer


def _create_ca() -> _Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "haproxy-k8s throwaway CA")])
    now = dt.datetime.now(dt.UTC)
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Issuer(cert, key)


def _load_issuer(cert_path: Path, key_path: Path) -> _Issuer:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path}: expected an EC private key")
    return _Issuer(cert, key)


def _sign(
    issuer: _Issuer,
    key: ec.EllipticCurvePrivateKey,
    *,
    common_name: str,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    public_key = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + LEAF_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        # Strict verifiers (Python 3.13's default flags, Go) insist on the AKI.
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer.key, hashes.SHA256())


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _general_name(host: str) -> x509.GeneralName:
    """An IP SAN for address literals (clients compare those, not DNS names), else DNS."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        if not host:
            raise ValueError("empty host name") from None
        return x509.DNSName(host)


def _file_stem(name: str) -> str:
    """A file name from a CN/server name, which may hold characters unsafe in paths."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    if not stem:
        raise ValueError(f"cannot make a file name from {name!r}")
    return stem


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, private: bool = False) -> Path:
    """Write `data` via a temporary file, so a reader never sees a half-written PEM.

    Private keys are created 0600 from the start rather than chmod-ed after writing.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # a stale leftover could carry wider permissions
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path
