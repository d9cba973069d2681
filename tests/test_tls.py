"""
An ssl: gateway listener serves HTTPS with the configured certificate;
clients verifying against that certificate connect, others are refused.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.daemon_helpers import ACCEPT, INITIALIZE
from tests.support import Daemon


def self_signed(folder: Path) -> Tuple[Path, Path]:
    """
    A key and a self-signed certificate for localhost and 127.0.0.1.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcpgated test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        # Key identifiers: Python 3.13's strict verification wants them.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = folder / "key.pem", folder / "cert.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def _escape(path: Path) -> str:
    return str(path).replace("\\", "\\\\").replace(":", "\\:")


def https(url: str, context: ssl.SSLContext, body: Any = None,
          headers: Optional[Dict[str, str]] = None) -> Tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture
def tls_daemon(tmp_path):
    key, cert = self_signed(tmp_path)
    listen = (f"ssl:0:interface=127.0.0.1:privateKey={_escape(key)}"
              f":certKey={_escape(cert)}")
    daemon = Daemon(tmp_path, gateway_listen=listen).start()
    yield daemon, cert
    daemon.stop()


def test_ssl_listener_serves_https_verified_against_its_certificate(tls_daemon, everything):
    daemon, cert = tls_daemon
    port = daemon.ports["gateway"][0]
    trusting = ssl.create_default_context(cafile=str(cert))

    for host in ("localhost", "127.0.0.1"):
        status, body = https(f"https://{host}:{port}/nowhere", trusting,
                             {"jsonrpc": "2.0", "id": 7, "method": "ping"})
        assert status == 404
        assert json.loads(body)["error"]["message"] == "No MCP API is deployed at /nowhere"

    daemon.deploy(f"http://127.0.0.1:{everything}/mcp", "/secure")
    status, body = https(f"https://localhost:{port}/secure", trusting, INITIALIZE, ACCEPT)
    assert status == 200, body
    assert b"mcp-servers/everything" in body


def test_clients_not_trusting_the_certificate_are_refused(tls_daemon):
    daemon, _ = tls_daemon
    port = daemon.ports["gateway"][0]
    with pytest.raises(urllib.error.URLError) as caught:
        https(f"https://localhost:{port}/nowhere", ssl.create_default_context(), {})
    assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)

    # Plain HTTP on the TLS port gets no HTTP answer.
    request = urllib.request.Request(f"http://127.0.0.1:{port}/nowhere", data=b"{}",
                                     method="POST")
    with pytest.raises(Exception) as caught:
        urllib.request.urlopen(request, timeout=30).read()
    assert not isinstance(caught.value, urllib.error.HTTPError)


def test_ssl_listener_with_a_bad_certificate_is_refused_at_check(tmp_path):
    # An unreadable certificate is a configuration error, not a traceback.
    from mcpgated import config

    (tmp_path / "cert.pem").write_text("not a certificate")
    ini = tmp_path / "mcpgated.ini"
    ini.write_text(f"[gateway]\nlisten = ssl:0:privateKey={_escape(tmp_path / 'cert.pem')}\n")
    with pytest.raises(config.ConfigError) as caught:
        config.load(str(ini))
    assert str(caught.value).startswith(f"{ini}: [gateway] listen: ")
