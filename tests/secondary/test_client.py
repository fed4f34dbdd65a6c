"""How the secondary names what went wrong talking to its primary: unreachable,
refusing our credentials, or no Geo API at the configured URL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from geo_sync.errors import AuthError, GeoSyncError, TransientError
from geo_sync.secondary.client import PrimaryClient
from geo_sync.secondary.site import init_secondary
from geo_sync.settings import SecondarySettings, load_settings
from tests.sites import PrimarySite, SecondarySite, free_port

WRONG_SECRET = "w" * 48


def _client(tmp_path: Path, primary_url: str, name: str, secret: str) -> PrimaryClient:
    return PrimaryClient(SecondarySettings(
        name=name, secret=secret, primary_url=primary_url,
        database_url=f"sqlite:///{tmp_path / 't.db'}", mirror_root=tmp_path / "m",
        http_timeout_seconds=10))


def test_a_primary_that_is_down_is_unreachable_said_once(tmp_path: Path) -> None:
    client = _client(tmp_path, f"http://127.0.0.1:{free_port()}", "s1", WRONG_SECRET)
    with pytest.raises(TransientError) as caught:
        client.head()
    assert str(caught.value).count("unreachable") == 1
    assert "primary_url" in caught.value.hint
    client.close()


def test_a_wrong_secret_is_a_refusal_not_unreachable(primary: PrimarySite,
                                                      tmp_path: Path) -> None:
    client = _client(tmp_path, primary.url, primary.secondary, WRONG_SECRET)
    with pytest.raises(AuthError) as caught:
        client.status()
    assert "refused our credentials" in caught.value.message
    assert "unreachable" not in str(caught.value)
    client.close()


@pytest.mark.parametrize("suffix", ["/wrong", "/api/geo/v1"])
def test_a_url_with_a_wrong_path_says_there_is_no_geo_api_there(
        primary: PrimarySite, tmp_path: Path, suffix: str) -> None:
    client = _client(tmp_path, primary.url + suffix, primary.secondary, primary.secret)
    with pytest.raises(GeoSyncError) as caught:
        client.status()
    assert "404" in caught.value.message and "no Geo API at that URL" in caught.value.message
    assert "primary_url" in caught.value.hint
    client.close()


def _status(site: SecondarySite) -> tuple[dict[str, Any], str]:
    # status exits with its verdict (no `secondary run` here: Unhealthy); both forms agree.
    as_json = site.cli("status", "--json", check=False)
    as_text = site.cli("status", check=False)
    assert as_json.returncode == as_text.returncode != 0
    return json.loads(as_json.stdout), as_text.stdout


def test_status_says_refused_for_a_bad_secret_and_unreachable_once_for_a_dead_primary(
        secondary: SecondarySite, primary: PrimarySite, tmp_path: Path) -> None:
    refused_config = init_secondary(
        tmp_path / "refused", primary_url=primary.url, name=primary.secondary,
        secret=WRONG_SECRET, database_url=None)
    refused = SecondarySite(refused_config, load_settings(refused_config).require_secondary(),
                            secondary.engine)
    report, text = _status(refused)
    assert report["primary"]["refused"] is True
    assert "refuses us" in text and "unreachable" not in text
    primary.stop()
    report, text = _status(secondary)
    assert report["primary"]["reachable"] is False
    assert "primary unreachable at" in text
    assert "unreachable: primary unreachable" not in text, text


def test_a_reachable_primary_shows_its_last_event_and_no_error(secondary: SecondarySite,
                                                              primary: PrimarySite) -> None:
    report, text = _status(secondary)
    assert report["primary"]["reachable"] is True
    last = report["primary"]["last_event_id"]
    assert f"last seen      {'none yet' if last is None else last} (" in text
    assert "unreachable" not in text and "refuses" not in text
