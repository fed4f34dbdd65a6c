"""The TLS settings as a config loads them: plain HTTP only to this machine unless
allowed, a CA bundle that OpenSSL can load, a certificate only with its key. Each
refusal is one ConfigError line naming the setting."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geo_sync.errors import ConfigError
from geo_sync.settings import load_settings
from geo_sync.tls import client_verify, is_loopback_url
from tests.sites import GEO_SYNC
from tests.tls import make_ca

SECONDARY = """
role = "secondary"
[secondary]
name = "s1"
secret = "0123456789abcdef0123456789abcdef"
primary_url = "{url}"
database_url = "sqlite:///t.db"
mirror_root = "mirror"
{more}
"""


def _secondary(tmp_path: Path, url: str, more: str = "") -> Path:
    path = tmp_path / "secondary.toml"
    path.write_text(SECONDARY.format(url=url, more=more))
    return path


loopback_hosts = st.one_of(
    st.just("localhost"), st.just("[::1]"),
    st.integers(0x7F000000, 0x7FFFFFFF).map(lambda n: str(ipaddress.IPv4Address(n))))
remote_hosts = st.one_of(
    st.sampled_from(["primary", "geo.example.com", "10.0.0.5", "[2001:db8::1]",
                     "localhost.example.com", "128.0.0.1"]),
    st.integers(0x80000000, 0xDFFFFFFF).map(lambda n: str(ipaddress.IPv4Address(n))))
ports = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))


@given(host=loopback_hosts, port=ports)
def test_plain_http_to_this_machine_is_allowed(tmp_path_factory: pytest.TempPathFactory,
                                               host: str, port: str) -> None:
    url = f"http://{host}{port}"
    assert is_loopback_url(url)
    settings = load_settings(_secondary(tmp_path_factory.mktemp("c"), url))
    assert settings.require_secondary().primary_url == url


@given(host=remote_hosts, port=ports)
def test_plain_http_to_another_host_is_refused_unless_allowed(
        tmp_path_factory: pytest.TempPathFactory, host: str, port: str) -> None:
    directory = tmp_path_factory.mktemp("c")
    url = f"http://{host}{port}"
    with pytest.raises(ConfigError) as caught:
        load_settings(_secondary(directory, url))
    message = str(caught.value)
    assert "\n" not in message
    assert "allow_insecure_primary" in message and url in message
    allowed = load_settings(_secondary(directory, url, "allow_insecure_primary = true"))
    assert allowed.require_secondary().allow_insecure_primary
    assert load_settings(_secondary(directory, url.replace("http://", "https://")))


def test_a_ca_bundle_is_loaded_relative_to_the_config(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    settings = load_settings(_secondary(tmp_path, "https://geo.example.com",
                                        'primary_ca_bundle = "ca/ca.pem"'))
    assert settings.require_secondary().primary_ca_bundle == ca.ca_cert


@pytest.mark.parametrize("content", [None, b"", b"not a certificate\n", b"\xff\xfe"])
def test_a_missing_or_unusable_ca_bundle_is_one_line_naming_it(
        tmp_path: Path, content: bytes | None) -> None:
    bundle = tmp_path / "ca.pem"
    if content is not None:
        bundle.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_settings(_secondary(tmp_path, "https://geo.example.com",
                                 f'primary_ca_bundle = "{bundle}"'))
    message = str(caught.value)
    assert "\n" not in message
    assert "primary_ca_bundle" in message and str(bundle) in message


def test_check_and_the_daemons_say_it_in_one_line(tmp_path: Path) -> None:
    config = _secondary(tmp_path, "http://10.1.2.3:8650")
    check = subprocess.run([GEO_SYNC, "--config", str(config), "check"],
                           capture_output=True, text=True, timeout=120, check=False)
    assert check.returncode == 2
    line = check.stdout.splitlines()[0]
    assert line.startswith("CRITICAL config") and "allow_insecure_primary" in line
    run = subprocess.run([GEO_SYNC, "--config", str(config), "secondary", "run"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "secondary.primary_url" in lines[0], run.stderr


@pytest.mark.parametrize("given_key", ["tls_cert_file", "tls_key_file"])
def test_a_certificate_without_its_key_or_the_reverse_is_refused(
        tmp_path: Path, given_key: str) -> None:
    config = tmp_path / "primary.toml"
    config.write_text('role = "primary"\n[primary]\ndatabase_url = "sqlite:///p.db"\n'
                      f'storage_root = "storage"\n{given_key} = "x.pem"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert "tls_cert_file" in str(caught.value) and "tls_key_file" in str(caught.value)


@given(host=st.sampled_from(["127.0.0.1", "primary.example", "[::1]"]),
       scheme=st.sampled_from(["http", "HTTP", "https", "HTTPS"]),
       bundle=st.booleans())
def test_only_an_https_primary_gets_a_tls_context(host: str, scheme: str, bundle: bool) -> None:
    """A plain-HTTP primary needs no CA bundle loaded (that cost every CLI command
    ~40 ms); an https one is always verified: by the bundle when set, else public CAs."""
    ca = Path(__file__).parent / "no-such-bundle.pem"
    url = f"{scheme}://{host}:8443"
    if scheme.lower() == "http":
        assert client_verify(ca if bundle else None, url) is False
    elif not bundle:
        assert client_verify(None, url) is True
    else:
        with pytest.raises(FileNotFoundError):  # the bundle is read: https is verified
            client_verify(ca, url)
