"""A throwaway certificate authority for the tests, made with the `openssl` command (the
locks carry no X.509 library): a CA, and a server certificate it signs for localhost
and 127.0.0.1. Each call makes a new CA, so one test's trust never leaks into another's.

    ca = make_ca(tmp_path / "tls")
    ... tls_cert_file = ca.cert, tls_key_file = ca.key on the server side,
    ... primary_ca_bundle = ca.ca_cert (or httpx verify=ca.context()) on the client side.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVER_NAMES = ("DNS:localhost", "IP:127.0.0.1", "IP:::1")


@dataclass(frozen=True)
class TestCA:
    """A CA certificate, and a server certificate and key it issued."""

    __test__ = False  # not a test class, despite its name

    directory: Path
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path

    def context(self) -> ssl.SSLContext:
        """A client context that trusts this CA only (for httpx's ``verify=``)."""
        return ssl.create_default_context(cafile=str(self.ca_cert))

    def issue(self, name: str, *names: str) -> tuple[Path, Path]:
        """Another server certificate and key from this CA, for ``names`` (e.g.
        "DNS:localhost", "IP:127.0.0.1"; default: SERVER_NAMES): (cert, key)."""
        return _issue(self.directory, self.ca_cert, self.ca_key, name, names or SERVER_NAMES)


def _openssl(*args: str, cwd: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is missing: install Debian's openssl package")
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def new_key(path: Path) -> Path:
    """A fresh P-256 private key, PEM, unencrypted."""
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", str(path), cwd=path.parent)
    return path


def _issue(directory: Path, ca_cert: Path, ca_key: Path, name: str,
           names: tuple[str, ...]) -> tuple[Path, Path]:
    key = new_key(directory / f"{name}.key")
    csr = directory / f"{name}.csr"
    _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={name}", "-out", str(csr),
             cwd=directory)
    extensions = directory / f"{name}.ext"
    extensions.write_text(
        f"subjectAltName = {', '.join(names)}\n"
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n")
    cert = directory / f"{name}.pem"
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "2", "-extfile", str(extensions), "-out", str(cert),
             cwd=directory)
    return cert, key


def make_ca(directory: Path, name: str = "geo-sync test CA") -> TestCA:
    """A new CA in ``directory`` and a server certificate for localhost/127.0.0.1/::1."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = new_key(directory / "ca.key")
    ca_cert = directory / "ca.pem"
    _openssl("req", "-x509", "-new", "-key", str(ca_key), "-subj", f"/CN={name}",
             "-days", "2", "-addext", "basicConstraints = critical, CA:TRUE",
             "-addext", "keyUsage = critical, keyCertSign, cRLSign",
             "-out", str(ca_cert), cwd=directory)
    cert, key = _issue(directory, ca_cert, ca_key, "server", SERVER_NAMES)
    return TestCA(directory, ca_cert, ca_key, cert, key)
