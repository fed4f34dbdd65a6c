"""The shared "anything beyond my cursor?" ask: an answer is never older than the
request that uses it, concurrent requests share one, and a pending event names the
items it changed (by record id, path and a rename's old path)."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from geo_sync.secondary.mirror.pending import INCOMPLETE, Pending, SingleFlight


class _Primary:
    """A stand-in for the primary's answer: its state when each ask is *sent*, and a
    gate that holds the answer until the test lets it go."""

    def __init__(self) -> None:
        self.state = "before the push"
        self.gate = asyncio.Event()
        self.sent = 0

    async def ask(self, key: str) -> str:
        self.sent += 1
        seen = self.state  # what the primary holds when the ask reaches it
        await self.gate.wait()
        return seen


def test_a_request_arriving_during_an_ask_waits_for_the_next_one() -> None:
    async def scenario() -> None:
        primary = _Primary()
        flight = SingleFlight(primary.ask)
        early = asyncio.ensure_future(flight("cursor"))
        while not primary.sent:  # the first ask has reached the primary
            await asyncio.sleep(0)
        primary.state = "after the push"  # the push completes; then a runner asks
        late = [asyncio.ensure_future(flight("cursor")) for _ in range(50)]
        await asyncio.sleep(0)
        primary.gate.set()
        assert await early == "before the push"
        assert set(await asyncio.gather(*late)) == {"after the push"}
        assert primary.sent == flight.calls == 2  # 51 requests, two asks

    asyncio.run(scenario())


def test_concurrent_requests_share_one_ask_and_other_cursors_ask_apart() -> None:
    async def scenario() -> None:
        primary = _Primary()
        flight = SingleFlight(primary.ask)
        waiting = [asyncio.ensure_future(flight(key)) for key in ["a"] * 20 + ["b"] * 20]
        await asyncio.sleep(0)
        primary.gate.set()
        await asyncio.gather(*waiting)
        assert primary.sent == 2
        assert await flight("a") == primary.state  # after they returned: a new ask
        assert primary.sent == 3

    asyncio.run(scenario())


def test_a_request_that_gives_up_does_not_cancel_the_others_ask() -> None:
    async def scenario() -> None:
        primary = _Primary()
        flight = SingleFlight(primary.ask)
        impatient = asyncio.ensure_future(flight("a"))
        patient = asyncio.ensure_future(flight("a"))
        await asyncio.sleep(0)
        impatient.cancel()
        primary.gate.set()
        assert await patient == "before the push"

    asyncio.run(scenario())


def _event(kind: str, record_id: str, path: str, **payload: str) -> dict[str, object]:
    return {"id": 1, "type": kind, "event": "updated", "record_id": record_id,
            "path": path, "payload": payload, "created_at": "2026-12-03T00:00:00+00:00"}


def test_an_item_is_named_by_record_id_path_or_old_path_of_its_type() -> None:
    pending = Pending.from_page({"more": False, "cursor": "sq1;9", "events": [
        _event("artifact", "r1", "a/new.zip", old_path="a/old.zip"),
        _event("job_log", "r2", "b/job.log")]})
    assert pending.names("artifact", "r1", "elsewhere.zip")  # renamed by record id
    assert pending.names("artifact", None, "a/new.zip")
    assert pending.names("artifact", None, "a/old.zip")
    assert pending.names("job_log", "other", "b/job.log")
    assert not pending.names("artifact", "r2", "b/job.log")  # another type's item
    assert not pending.names("artifact", "r9", "a/other.zip")
    assert not Pending.from_page({"more": False, "events": []}).names("artifact", "r", "p")


@given(st.one_of(st.none(), st.integers(), st.text(), st.lists(st.integers()),
                 st.dictionaries(st.sampled_from(["more", "events"]),
                                 st.one_of(st.booleans(), st.none(), st.lists(
                                     st.one_of(st.integers(), st.dictionaries(
                                         st.sampled_from(["type", "path", "record_id"]),
                                         st.one_of(st.text(), st.integers()))))))))
def test_an_answer_that_is_not_a_whole_page_names_every_item(body: object) -> None:
    pending = Pending.from_page(body)
    complete_page = (isinstance(body, dict) and body.get("more") is False
                     and isinstance(body.get("events"), list)
                     and all(isinstance(e, dict) and isinstance(e.get("type"), str)
                             for e in body["events"]))
    assert pending.complete == complete_page
    if not complete_page:
        assert pending == INCOMPLETE and pending.names("artifact", "r", "p")
