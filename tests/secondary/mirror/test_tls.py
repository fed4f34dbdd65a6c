"""The mirror server over HTTPS with a certificate from a throwaway CA made here
(openssl): curl and git verify it; a client that does not trust the CA is refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

from geo_sync.secondary.runtime import Runtime
from tests.secondary.mirror.world import mirror_server, publish, replicate
from tests.sites import PrimarySite, SecondarySite


def make_ca_and_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate for 127.0.0.1 and localhost, its key)."""
    ca_key, ca, key, csr, cert = (directory / name for name in (
        "ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   "extendedKeyUsage=serverAuth\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
            "-out", str(ca), "-days", "1", "-subj", "/CN=geo-sync test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
            "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-out", str(cert), "-days", "1", "-extfile", str(ext))
    return ca, cert, key


def test_the_mirror_serves_https_that_curl_and_git_verify(
    primary: PrimarySite, secondary: SecondarySite, runtime: Runtime, tmp_path: Path
) -> None:
    ca, cert, key = make_ca_and_certificate(tmp_path)
    publish(primary, "artifact", "created", "a.zip", b"over tls")
    replicate(runtime, "artifact")
    with mirror_server(secondary, GEO_SYNC_SECONDARY__MIRROR__TLS_CERT_FILE=str(cert),
                       GEO_SYNC_SECONDARY__MIRROR__TLS_KEY_FILE=str(key)) as server:
        assert server.url.startswith("https://")
        headers, body, status = server.curl("/artifacts/a.zip", "--cacert", str(ca))
        assert (status, body, headers["x-geo-served-by"]) == (200, b"over tls", "mirror")
        untrusted = server.curl("/artifacts/a.zip", check=False)
        assert untrusted[2] == 0  # curl refused the certificate: no HTTP status at all
        refused = server.git("ls-remote", server.git_url("none.git"), check=False)
        assert "certificate" in refused.stderr.lower()


def test_a_certificate_without_its_key_is_a_config_error(
    secondary: SecondarySite, tmp_path: Path
) -> None:
    config = secondary.config.read_text()
    secondary.config.write_text(config + f'\n[secondary.mirror]\ntls_cert_file = '
                                f'"{tmp_path / "cert.pem"}"\n')
    out = secondary.cli("secondary", "serve", check=False)
    assert out.returncode != 0
    assert "tls_cert_file and tls_key_file go together" in out.stderr
    assert "Traceback" not in out.stderr
