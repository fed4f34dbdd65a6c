"""The Geo API, served by `geo-sync primary serve`, talked to with httpx."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from geo_sync.auth import issue_token, new_secret
from geo_sync.db import write_transaction
from geo_sync.primary.credentials import CREDENTIAL_CACHE_SECONDS
from geo_sync.primary.publish import Change, publish
from geo_sync.primary.secondaries import add_secondary, set_enabled
from tests.deployment import wait_for
from tests.sites import PrimarySite


def _publish(site: PrimarySite, *changes: Change) -> None:
    with write_transaction(site.engine) as conn:
        for change in changes:
            publish(conn, change)


def _head(site: PrimarySite, client: httpx.Client) -> str:
    response = client.get("/events/head", headers=site.headers())
    assert response.status_code == 200, response.text
    return str(response.json()["cursor"])


# -- authentication ----------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["/events/head", "/status", "/catalog/artifact",
                                      "/blobs/artifact/a.bin", "/git/r.git/info/refs"])
def test_every_endpoint_refuses_a_request_without_a_token(
    primary: PrimarySite, endpoint: str
) -> None:
    with primary.client() as client:
        response = client.get(endpoint)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_an_expired_token_is_refused(primary: PrimarySite) -> None:
    stale = issue_token("s1", primary.secret, ttl=60, now=time.time() - 3600)
    with primary.client() as client:
        response = client.get("/status", headers={"Authorization": f"Bearer {stale}"})
    assert response.status_code == 401
    assert "expired" in response.json()["message"]


def test_a_token_from_a_clock_far_ahead_is_refused_naming_the_clocks(
        primary: PrimarySite) -> None:
    early = issue_token("s1", primary.secret, ttl=60, now=time.time() + 3600)
    with primary.client() as client:
        response = client.get("/status", headers={"Authorization": f"Bearer {early}"})
    assert response.status_code == 401
    assert "not yet valid" in response.json()["message"]
    assert "clock" in response.json()["hint"]


def test_a_token_signed_with_another_secondarys_secret_is_refused(primary: PrimarySite) -> None:
    with write_transaction(primary.engine) as conn:
        other_secret = add_secondary(conn, "s2")
    forged = issue_token("s1", other_secret)
    with primary.client() as client:
        response = client.get("/status", headers={"Authorization": f"Bearer {forged}"})
        own = client.get("/status", headers={
            "Authorization": f"Bearer {issue_token('s2', other_secret)}"})
    assert response.status_code == 401
    assert response.json()["message"] == "invalid credentials"
    assert own.status_code == 200


def test_a_disabled_secondary_is_refused_and_readmitted_when_enabled(
    primary: PrimarySite,
) -> None:
    with write_transaction(primary.engine) as conn:
        set_enabled(conn, "s1", False)
    with primary.client() as client:
        refused = client.get("/status", headers=primary.headers())
        with write_transaction(primary.engine) as conn:
            set_enabled(conn, "s1", True)
        admitted = client.get("/status", headers=primary.headers())
    assert refused.status_code == 401
    assert "disabled" in refused.json()["message"]
    assert admitted.status_code == 200


def test_disabling_a_secondary_that_is_in_use_takes_effect_within_seconds(
    primary: PrimarySite,
) -> None:
    with primary.client() as client:
        def status() -> int:
            return client.get("/status", headers=primary.headers()).status_code

        assert status() == 200  # its credential is now remembered for a moment
        with write_transaction(primary.engine) as conn:
            set_enabled(conn, "s1", False)
        wait_for(lambda: status() == 401, "the disabled secondary to be refused",
                 timeout=CREDENTIAL_CACHE_SECONDS + 10)
        with write_transaction(primary.engine) as conn:
            set_enabled(conn, "s1", True)
        assert status() == 200, "re-enabling must not wait for a cache"


def test_unknown_secondaries_garbage_and_long_lived_tokens_are_refused(
    primary: PrimarySite,
) -> None:
    tokens = {
        "unknown secondary": issue_token("nobody", new_secret()),
        "not a JWT": "garbage",
        "lives longer": issue_token("s1", primary.secret, ttl=86400),
    }
    with primary.client() as client:
        for why, token in tokens.items():
            response = client.get("/status", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, why


# -- events feed ---------------------------------------------------------------------


def test_the_feed_serves_published_events_in_pages_from_a_cursor(primary: PrimarySite) -> None:
    with primary.client() as client:
        cursor = _head(primary, client)
        _publish(primary, *(Change("artifact", "created", f"a/{n}.bin", size=n)
                            for n in range(5)))
        seen: list[str] = []
        while True:
            page = client.get("/events", params={"cursor": cursor, "limit": 2},
                              headers=primary.headers()).json()
            seen += [e["path"] for e in page["events"]]
            cursor = page["cursor"]
            if not page["more"]:
                break
    assert seen == [f"a/{n}.bin" for n in range(5)]


def test_a_long_poll_returns_when_an_event_commits_not_when_the_wait_ends(
    primary: PrimarySite,
) -> None:
    result: dict[str, Any] = {}
    with primary.client() as client:
        cursor = _head(primary, client)

        def poll() -> None:
            started = time.monotonic()
            response = client.get("/events", params={"cursor": cursor, "wait": 60},
                                  headers=primary.headers())
            result["elapsed"] = time.monotonic() - started
            result["body"] = response.json()

        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(0.5)  # let the poll block on the empty feed
        assert poller.is_alive()
        _publish(primary, Change("artifact", "created", "late.bin", size=1))
        poller.join(timeout=90)
    assert [e["path"] for e in result["body"]["events"]] == ["late.bin"]
    assert result["elapsed"] < 60, "the poll ran to the end of its wait"


def test_bad_feed_parameters_get_a_400_naming_the_parameter(primary: PrimarySite) -> None:
    with primary.client() as client:
        cursor = _head(primary, client)
        cases = {
            "cursor": {},
            "limit": {"cursor": cursor, "limit": "0"},
            "wait": {"cursor": cursor, "wait": "x"},
            "cursor ": {"cursor": "pg1;nonsense"},
        }
        for name, params in cases.items():
            response = client.get("/events", params=params, headers=primary.headers())
            assert response.status_code == 400, name
            assert name.strip() in response.json()["message"]


# -- catalog, ack, status -----------------------------------------------------------


def test_catalog_pages_list_every_item_of_a_type_once(primary: PrimarySite) -> None:
    _publish(primary, *(Change("job_log", "created", f"j/{n}.log", size=n) for n in range(7)),
             Change("artifact", "created", "other.bin"))
    paths: list[str] = []
    after = 0
    with primary.client() as client:
        while after is not None:
            page = client.get("/catalog/job_log", params={"after": after, "limit": 3},
                              headers=primary.headers()).json()
            paths += [item["path"] for item in page["items"]]
            after = page["next_after"]
        unknown = client.get("/catalog/nope", headers=primary.headers())
    assert sorted(paths) == sorted(f"j/{n}.log" for n in range(7))
    assert unknown.status_code == 400


def test_a_catalog_page_counts_the_type_unless_asked_not_to(primary: PrimarySite) -> None:
    _publish(primary, *(Change("job_log", "created", f"j/{n}.log", size=n) for n in range(5)),
             Change("artifact", "created", "other.bin"))
    with primary.client() as client:
        def page(**params: int) -> dict[str, Any]:
            response = client.get("/catalog/job_log", params={"limit": 2, **params},
                                  headers=primary.headers())
            assert response.status_code == 200, response.text
            return dict(response.json())

        counted, uncounted = page(), page(total=0)
        later = page(after=counted["next_after"], total=0)
        refused = client.get("/catalog/job_log", params={"total": 2},
                             headers=primary.headers())
    assert counted["total"] == 5
    assert uncounted["total"] is None and later["total"] is None
    assert uncounted["items"] == counted["items"]  # the same page, only not counted
    assert [item["path"] for item in later["items"]] == ["j/2.log", "j/3.log"]
    assert refused.status_code == 400 and "total" in refused.json()["message"]


def test_acknowledged_events_show_as_no_longer_pending_in_status(primary: PrimarySite) -> None:
    with primary.client() as client:
        cursor = _head(primary, client)
        _publish(primary, Change("artifact", "created", "x.bin", size=1))
        before = client.get("/status", headers=primary.headers()).json()
        page = client.get("/events", params={"cursor": cursor},
                          headers=primary.headers()).json()
        ack = client.post("/ack", json={"cursor": page["cursor"]}, headers=primary.headers())
        after = client.get("/status", headers=primary.headers()).json()
        bad = client.post("/ack", json={"cursor": 5}, headers=primary.headers())
    assert ack.status_code == 200
    assert before["secondaries"][0]["pending_events"] == 1
    assert after["secondaries"][0]["pending_events"] == 0
    assert after["catalog"]["artifact"] == 1
    assert bad.status_code == 400
