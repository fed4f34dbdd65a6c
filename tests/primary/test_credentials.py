"""The Geo API's memory of checked tokens (``Credentials.checked``): a token that
passed is answered from memory, never past its credential's cache time or its own
expiry, and a token that failed is never remembered. On a real (SQLite) primary DB."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from geo_sync.auth import issue_token, new_secret
from geo_sync.db import write_transaction
from geo_sync.errors import AuthError
from geo_sync.primary.credentials import CREDENTIAL_CACHE_SECONDS, Credentials
from geo_sync.primary.secondaries import set_enabled
from tests.sites import PrimarySite, primary_site


@pytest.fixture
def site(tmp_path: Path) -> Iterator[PrimarySite]:
    with primary_site(tmp_path / "primary", None, serve=False) as primary:
        yield primary


def test_a_checked_token_is_remembered_and_a_refused_one_never(site: PrimarySite) -> None:
    credentials = Credentials(site.settings, site.engine)
    token = site.token()
    assert credentials.checked(token) is None  # never seen: the full check
    assert credentials.authenticate(token) == "s1"
    assert credentials.checked(token) == "s1"
    assert credentials.checked(token + "x") is None  # another text is another token
    forged = issue_token("s1", new_secret())
    with pytest.raises(AuthError):
        credentials.authenticate(forged)
    assert credentials.checked(forged) is None


def test_a_disabled_secondarys_token_is_forgotten_with_its_credential(
    site: PrimarySite
) -> None:
    credentials = Credentials(site.settings, site.engine)
    token = site.token()
    credentials.authenticate(token)
    with write_transaction(site.engine) as conn:
        set_enabled(conn, "s1", False)
    time.sleep(CREDENTIAL_CACHE_SECONDS + 0.1)  # the bound the API documents
    assert credentials.checked(token) is None
    with pytest.raises(AuthError, match="disabled"):
        credentials.authenticate(token)
    assert credentials.checked(token) is None


def test_a_token_is_not_remembered_past_its_expiry(site: PrimarySite) -> None:
    credentials = Credentials(site.settings, site.engine)
    token = issue_token("s1", site.secret, ttl=1)
    credentials.authenticate(token)
    time.sleep(1.1)
    assert credentials.checked(token) is None
