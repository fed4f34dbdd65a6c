"""The wire protocol: every record survives its trip through JSON unchanged, and every
error the server maps to a status comes back out of the client as the same class."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geo_sync.errors import (
    AuthError,
    BackfillRequired,
    GeoSyncError,
    InvalidInput,
    MissingOnPrimary,
    SiteReadOnly,
    TransientError,
)
from geo_sync.secondary.client import check
from geo_sync.wire import (
    ERROR_CODES,
    MISSING_HEADER,
    CatalogEntry,
    CatalogItemReply,
    CatalogPage,
    EventPage,
    FeedEvent,
    error_status,
)

times = st.datetimes(timezones=st.just(UTC))
text = st.text(max_size=40)
sizes = st.none() | st.integers(0, 2**62)
checksums = st.none() | st.text("0123456789abcdef", min_size=64, max_size=64)
events = st.builds(FeedEvent, id=st.integers(1, 2**62), replicable_type=text, event=text,
                   record_id=text, path=text,
                   payload=st.dictionaries(text, st.integers() | text, max_size=3),
                   created_at=times)
entries = st.builds(CatalogEntry, id=st.integers(1, 2**62), record_id=text, path=text,
                    size=sizes, checksum=checksums, checksum_at=st.none() | times,
                    updated_at=st.none() | times)


def _through_json(record: object) -> object:
    return json.loads(json.dumps(record.to_json()))  # type: ignore[attr-defined]


@given(st.builds(EventPage, events=st.lists(events, max_size=5), cursor=text,
                 more=st.booleans()))
def test_an_event_page_round_trips(page: EventPage) -> None:
    assert EventPage.from_json(_through_json(page)) == page  # type: ignore[arg-type]


@given(entries)
def test_a_catalog_entry_round_trips(entry: CatalogEntry) -> None:
    assert CatalogEntry.from_json(_through_json(entry)) == entry


@given(st.lists(entries, max_size=5), st.none() | st.integers(0, 2**62),
       st.none() | st.integers(0, 2**40))
def test_a_catalog_page_round_trips_entry_by_entry(
        items: list[CatalogEntry], next_after: int | None, total: int | None) -> None:
    page = CatalogPage.from_json(_through_json(  # type: ignore[arg-type]
        CatalogPage("widget", list(items), next_after, total)))
    assert (page.type, page.next_after, page.total) == ("widget", next_after, total)
    assert list(page.entries()) == items


@given(st.builds(CatalogItemReply, type=text, path=text, size=sizes, checksum=checksums,
                 checksum_at=st.none() | times, changed_after_cursor=st.none() | st.booleans()))
def test_a_catalog_item_reply_round_trips(reply: CatalogItemReply) -> None:
    assert CatalogItemReply.from_json(_through_json(reply)) == reply  # type: ignore[arg-type]


@given(st.one_of(st.none(), st.integers(), text, st.lists(st.integers(), max_size=2),
                 st.fixed_dictionaries({"path": st.integers() | st.none()})))
def test_a_malformed_catalog_entry_costs_itself_not_the_page(bad: object) -> None:
    good = CatalogEntry(1, "r", "a.bin", 1, None, None, datetime.now(UTC)).to_json()
    page = CatalogPage("widget", [bad, good], None, 2)
    first, second = page.entries()
    assert isinstance(first, GeoSyncError) and "catalog entry" in first.message
    assert second == CatalogEntry.from_json(good)


@pytest.mark.parametrize(("cls", "status", "code"), ERROR_CODES)
def test_an_error_goes_out_as_its_status_and_comes_back_as_its_class_or_the_root(
        cls: type[GeoSyncError], status: int, code: str) -> None:
    assert error_status(cls("boom")) == (status, code)
    headers = {MISSING_HEADER: "true"} if code == "missing_on_primary" else {}
    response = httpx.Response(status, json={"error": code, "message": "boom", "hint": ""},
                              headers=headers,
                              request=httpx.Request("GET", "http://primary/x"))
    with pytest.raises(GeoSyncError) as caught:
        check(response)
    # The client acts on auth, backfill, missing items, a read-only (demoted) site and a
    # refused request (a smaller page of events); the rest it reports as is.
    acted_on = cls in (AuthError, BackfillRequired, MissingOnPrimary, SiteReadOnly,
                       InvalidInput)
    assert type(caught.value) is (cls if acted_on else GeoSyncError)
    assert "boom" in caught.value.message


def test_an_unknown_error_is_internal_and_retried() -> None:
    assert error_status(GeoSyncError("boom")) == (500, "internal")
    response = httpx.Response(500, json={"error": "internal", "message": "boom"},
                              request=httpx.Request("GET", "http://primary/x"))
    with pytest.raises(TransientError):
        check(response)
