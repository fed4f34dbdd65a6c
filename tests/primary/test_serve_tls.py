"""`primary serve` over HTTPS (tls_cert_file, tls_key_file): it answers clients that
trust its CA, with one process or several, and refuses to start on a missing file or a
key that is not the certificate's, in one line naming the file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.sites import GEO_SYNC, PrimarySite, primary_site, set_keys
from tests.tls import make_ca, new_key


@pytest.mark.parametrize("processes", [1, 2])
def test_the_geo_api_answers_over_https_to_clients_that_trust_its_ca(
        tmp_path: Path, processes: int) -> None:
    ca = make_ca(tmp_path / "ca")
    with primary_site(tmp_path / "primary", None, tls=ca, processes=processes) as primary:
        assert primary.url.startswith("https://")
        for host in ("127.0.0.1", "localhost"):
            url = primary.api.replace("127.0.0.1", host)
            response = httpx.get(f"{url}/status", headers=primary.headers(),
                                 verify=ca.context(), timeout=60)
            assert response.status_code == 200, response.text
        other = make_ca(tmp_path / "other", "other CA")
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{primary.api}/status", verify=other.context(), timeout=60)
        # Plain HTTP to the TLS port gets no Geo API answer.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{primary.api.replace('https://', 'http://')}/status", timeout=60)


def _serve(primary: PrimarySite) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GEO_SYNC, "--config", str(primary.config), "primary", "serve",
                           "--processes", "1"],
                          capture_output=True, text=True, timeout=120, check=False)


def _error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


@pytest.mark.parametrize("fault", ["key of another certificate", "missing key file",
                                   "missing certificate file", "key file as certificate"])
def test_a_bad_certificate_or_key_stops_serve_with_one_line_naming_the_file(
        tmp_path: Path, fault: str) -> None:
    ca = make_ca(tmp_path / "ca")
    cert, key = ca.cert, ca.key
    if fault == "key of another certificate":
        key = new_key(tmp_path / "stray.key")
    elif fault == "missing key file":
        key = tmp_path / "nowhere.key"
    elif fault == "missing certificate file":
        cert = tmp_path / "nowhere.pem"
    else:
        cert = ca.key
    with primary_site(tmp_path / "primary", None, serve=False) as primary:
        set_keys(primary.config, "primary", tls_cert_file=str(cert), tls_key_file=str(key))
        result = _serve(primary)
    assert result.returncode != 0
    lines = _error_lines(result)
    assert len(lines) == 1, lines
    named = key if fault in ("key of another certificate", "missing key file") else cert
    assert str(named) in lines[0] and "Traceback" not in lines[0], lines[0]


def test_a_certificate_without_its_key_is_refused_when_the_config_loads(
        tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    with primary_site(tmp_path / "primary", None, serve=False) as primary:
        set_keys(primary.config, "primary", tls_cert_file=str(ca.cert))
        result = _serve(primary)
    assert result.returncode != 0
    lines = _error_lines(result)
    assert len(lines) == 1 and "tls_key_file" in lines[0], lines

