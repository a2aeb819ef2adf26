"""Certificates from haproxy_k8s.demo.certs, checked by parsing them and by real TLS handshakes."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from haproxy_k8s.demo.certs import CertBundle, make_certs, make_client_cert


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@contextmanager
def tls_server(context: ssl.SSLContext, host: str = "127.0.8.1") -> Iterator[int]:
    """A one-connection TLS server on a free port; yields the port.

    The handshake's outcome on the server side is not asserted: the client's view is.
    """
    listener = socket.create_server((host, 0))
    listener.settimeout(5.0)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5.0)
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"hello")
            except OSError:
                pass  # a client that rejected us hangs up mid-handshake

    thread = threading.Thread(target=serve, name="test-tls-server")
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        # Unblocks accept() when the test never connected.
        with suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        thread.join(10)
        listener.close()


def _handshake(port: int, ca: Path, name: str, client_cert: Path | None = None) -> bytes:
    context = ssl.create_default_context(cafile=str(ca))
    if client_cert is not None:
        context.load_cert_chain(client_cert)
    with (
        socket.create_connection(("127.0.8.1", port), timeout=5.0) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        return tls.recv(5)


def _server_context(pem_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem_file)  # the combined file, as HAProxy's `crt` takes it
    return context


def test_files_and_key_permissions(tmp_path: Path) -> None:
    bundle = make_certs(tmp_path, ["127.0.8.1"], name="lb")
    assert bundle.cert_file == tmp_path / "lb.crt"
    assert bundle.pem_file == tmp_path / "lb.pem"
    for private in (bundle.key_file, bundle.pem_file, bundle.ca_key_file):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    pem = bundle.pem_file.read_text()
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    assert "-----BEGIN PRIVATE KEY-----" in pem
    assert not list(tmp_path.glob(".*.tmp")), "temporary files left behind"


def test_server_cert_has_sans_and_is_issued_by_ca(certs: CertBundle) -> None:
    ca, cert = _load(certs.ca_file), _load(certs.cert_file)
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.8.1") in sans.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("127.0.8.19") in sans.get_values_for_type(x509.IPAddress)
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


@pytest.mark.parametrize("name", ["127.0.8.1", "localhost"])
def test_handshake_verifies_against_ca(certs: CertBundle, name: str) -> None:
    with tls_server(_server_context(certs.pem_file)) as port:
        assert _handshake(port, certs.ca_file, name) == b"hello"


def test_handshake_rejects_name_not_in_sans(certs: CertBundle) -> None:
    with (
        tls_server(_server_context(certs.pem_file)) as port,
        pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"),
    ):
        _handshake(port, certs.ca_file, "127.0.8.99")


def test_handshake_rejects_other_ca(certs: CertBundle, tmp_path: Path) -> None:
    stranger = make_certs(tmp_path, ["127.0.8.1"])
    with (
        tls_server(_server_context(stranger.pem_file)) as port,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        _handshake(port, certs.ca_file, "127.0.8.1")


def test_ca_is_reused_within_a_directory(tmp_path: Path) -> None:
    first = make_certs(tmp_path, ["127.0.8.10"], name="m1")
    ca_pem = first.ca_file.read_bytes()
    second = make_certs(tmp_path, ["127.0.8.11"], name="m2")
    assert second.ca_file.read_bytes() == ca_pem
    _load(first.cert_file).verify_directly_issued_by(_load(second.ca_file))
    _load(second.cert_file).verify_directly_issued_by(_load(second.ca_file))


def test_client_cert(certs: CertBundle, tmp_path: Path) -> None:
    pem = make_client_cert(tmp_path, certs, "system:haproxy-check")
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    cert = _load(pem)
    cert.verify_directly_issued_by(_load(certs.ca_file))
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "system:haproxy-check"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_client_cert_is_accepted_by_a_server_requiring_one(
    certs: CertBundle, tmp_path: Path
) -> None:
    context = _server_context(certs.pem_file)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=certs.ca_file)
    client = make_client_cert(tmp_path, certs, "admin")
    with tls_server(context) as port:
        assert _handshake(port, certs.ca_file, "127.0.8.1", client_cert=client) == b"hello"


@pytest.mark.parametrize("hosts", [[], [""]])
def test_rejects_missing_hosts(tmp_path: Path, hosts: list[str]) -> None:
    with pytest.raises(ValueError):
        make_certs(tmp_path, hosts)


def test_ipv6_and_bracketed_hosts_become_ip_sans(tmp_path: Path) -> None:
    bundle = make_certs(tmp_path, ["::1", "[fd00::1]", "node.example"])
    sans = _load(bundle.cert_file).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    ips = sans.value.get_values_for_type(x509.IPAddress)
    assert ips == [ipaddress.ip_address("::1"), ipaddress.ip_address("fd00::1")]
    assert sans.value.get_values_for_type(x509.DNSName) == ["node.example"]
