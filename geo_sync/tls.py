"""TLS on both sides of the Geo API: the primary's certificate and key, the secondary's
trust in them, and one-line explanations of the ways a handshake fails."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from geo_sync.errors import ConfigError

#: The setting an operator changes when the primary's certificate is not trusted.
CA_SETTING = "primary_ca_bundle"


def is_loopback_url(url: str) -> bool:
    """Whether ``url``'s host is this machine (localhost, 127.0.0.0/8, ::1)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_ca_bundle(path: Path) -> None:
    """Raise ValueError (a settings validation error) unless ``path`` holds at least one
    PEM certificate that OpenSSL loads."""
    try:
        ssl.create_default_context(cafile=str(path))
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except ssl.SSLError as exc:
        raise ValueError(f"{path} holds no PEM CA certificate OpenSSL accepts "
                         f"({exc.reason or exc})") from None


def client_verify(ca_bundle: Path | None, url: str) -> ssl.SSLContext | bool:
    """httpx's ``verify=`` for the primary at ``url``: a context trusting only the bundle
    if one is set, else True (httpx's default public CAs). Hostnames are checked either
    way. A plain-HTTP URL gets False: there is no TLS to verify, and building a context
    loads the CA bundle (~40 ms of CPU per client, in every CLI command); the client
    follows no redirects, so it can never reach an https URL with it."""
    if not url.lower().startswith("https://"):
        return False
    if ca_bundle is None:
        return True
    return ssl.create_default_context(cafile=str(ca_bundle))


def check_server_pair(cert_file: Path, key_file: Path) -> None:
    """Raise ConfigError naming the file at fault unless the certificate and key load and
    belong together (what `primary serve` checks before it binds anything)."""
    for setting, path in (("tls_cert_file", cert_file), ("tls_key_file", key_file)):
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"{setting} {path}: cannot read it ({exc.strerror})",
                              hint=f"point {setting} at a readable PEM file") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert_file), str(key_file))
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if "KEY_VALUES_MISMATCH" in reason:
            raise ConfigError(f"tls_key_file {key_file} is not the key of the certificate "
                              f"in tls_cert_file {cert_file}",
                              hint="configure the key the certificate was issued for") from None
        raise ConfigError(f"{_blame_pem(cert_file, key_file)} OpenSSL can load",
                          hint="tls_cert_file is the PEM certificate (chain), tls_key_file "
                          "its unencrypted PEM private key") from None


def _blame_pem(cert_file: Path, key_file: Path) -> str:
    """Which of the two files is not what it should be, and what it should be."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(cert_file))
    except ssl.SSLError:
        return f"tls_cert_file {cert_file} is not a PEM certificate"
    return f"tls_key_file {key_file} is not an unencrypted PEM private key"


def tls_failure(exc: BaseException) -> str | None:
    """A one-line description of a TLS handshake failure in ``exc`` (or what caused it),
    or None when ``exc`` is not about TLS."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"the primary's TLS certificate is not trusted: {seen.verify_message}"
        if isinstance(seen, ssl.SSLError):
            return f"TLS handshake with the primary failed: {seen.reason or seen}"
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return f"the primary's TLS certificate is not trusted: {text}"
    return None


def untrusted_hint(ca_bundle: Path | None) -> str:
    """What to do when the primary's certificate is not trusted."""
    now = f"now {ca_bundle}" if ca_bundle else "unset: only public CAs are trusted"
    return (f"set {CA_SETTING} to the PEM file of the CA that signed the primary's "
            f"certificate ({now}), and check that primary_url's host is one the "
            "certificate names")
