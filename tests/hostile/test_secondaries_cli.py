"""`geo-sync primary remove-secondary / disable-secondary / enable-secondary`."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from geo_sync.primary.credentials import CREDENTIAL_CACHE_SECONDS
from geo_sync.primary.models import Secondary
from tests.deployment import wait_for
from tests.sites import PrimarySite


def _status(site: PrimarySite) -> int:
    with site.client() as client:
        return client.get("/status", headers=site.headers()).status_code


def _names(site: PrimarySite) -> list[str]:
    with site.engine.connect() as conn:
        return list(conn.execute(select(Secondary.name)).scalars())


def test_a_removed_secondary_is_forgotten_and_refused_as_invalid_credentials(
    primary: PrimarySite,
) -> None:
    assert _status(primary) == 200
    primary.cli("primary", "add-secondary", "s2")
    result = primary.cli("primary", "remove-secondary", "s1")
    assert "removed s1" in result.stdout
    assert _names(primary) == ["s2"]
    wait_for(lambda: _status(primary) == 401, "the removed secondary to be refused",
             timeout=CREDENTIAL_CACHE_SECONDS + 10)
    with primary.client() as client:
        answer = client.get("/status", headers=primary.headers()).json()
    assert answer["message"] == "invalid credentials"


def test_disable_and_enable_take_effect_through_the_cli(primary: PrimarySite) -> None:
    primary.cli("primary", "disable-secondary", "s1")
    wait_for(lambda: _status(primary) == 401, "the disabled secondary to be refused",
             timeout=CREDENTIAL_CACHE_SECONDS + 10)
    primary.cli("primary", "enable-secondary", "s1")
    assert _status(primary) == 200


def test_naming_an_unknown_secondary_is_one_line_with_a_hint(primary: PrimarySite) -> None:
    for command in ("remove-secondary", "disable-secondary", "enable-secondary"):
        result = primary.cli("primary", command, "ghost", check=False)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert "no secondary named 'ghost'" in result.stderr
    assert _names(primary) == ["s1"]


def test_the_hint_for_a_taken_name_names_a_command_that_exists(primary: PrimarySite) -> None:
    taken = primary.cli("primary", "add-secondary", "s1", check=False)
    assert "remove-secondary" in taken.stderr
    assert primary.cli("primary", "remove-secondary", "--help").returncode == 0


@pytest.mark.parametrize("name", ["caf\u00e9", "\u0661\u0662", "a b", "x" * 65, "", "a/b",
                                  "a\nb"])
def test_a_secondary_name_outside_ascii_letters_digits_dash_underscore_is_refused(
    primary: PrimarySite, name: str
) -> None:
    result = primary.cli("primary", "add-secondary", name, check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert _names(primary) == ["s1"]
