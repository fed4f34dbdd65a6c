"""What the primary holds beyond this secondary's cursor, asked once for many requests.

Before a verified copy is served, the primary must say that no event this secondary
has not applied changed the item (read-after-write: a runner that pushed a moment
ago must not get the older copy). Asking per item costs one round trip per request;
most of the time the answer is "nothing at all is pending", which one question
answers for every item: ``GET /events?cursor=<ours>&limit=N``.

The rule that keeps read-after-write exact: **a request uses only an answer to an ask
sent after the request arrived.** Requests with the same cursor share one ask
(single flight); a request that arrives while an ask is already in flight does not
join it (that ask may have been answered from before the push it follows) but waits
for the next one, sent as soon as the one in flight returns, for everyone who
arrived meanwhile. Nothing is cached across time, so N requests one after another
are still N asks; concurrent requests cost at most two asks per round trip, however
many they are.

The answer is the list of pending events (one page): an item none of them names is
current, and one they name, or any item when there are more than a page, is asked
about on its own (``Upstream.confirm``), as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class Pending:
    """The events beyond one cursor as the primary listed them (its answer to one ask)."""

    #: False: more than one page, or an answer that could not be read: ask per item.
    complete: bool
    #: ``(type, "r:" + record_id)`` and ``(type, "p:" + path)`` of every pending event,
    #: the old path of a rename too.
    touched: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    #: Why the primary could not be asked (it is taken to be down), or "".
    unreachable: str = ""

    def names(self, type_name: str, record_id: str | None, path: str) -> bool:
        """Whether an item may have changed beyond the cursor: True unless the list
        is complete and no pending event names it."""
        if not self.complete:
            return True
        return ((type_name, "p:" + path) in self.touched
                or (record_id is not None and (type_name, "r:" + record_id) in self.touched))

    @classmethod
    def from_page(cls, body: object) -> Pending:
        """The primary's events page (``{"events": [...], "more": bool}``) as Pending;
        anything else is incomplete."""
        if not isinstance(body, dict) or body.get("more") is not False:
            return INCOMPLETE
        events = body.get("events")
        if not isinstance(events, list):
            return INCOMPLETE
        touched: set[tuple[str, str]] = set()
        for event in events:
            if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                return INCOMPLETE
            kind = event["type"]
            for key, prefix in (("record_id", "r:"), ("path", "p:")):
                if isinstance(event.get(key), str):
                    touched.add((kind, prefix + event[key]))
            payload = event.get("payload")
            if isinstance(payload, dict) and isinstance(payload.get("old_path"), str):
                touched.add((kind, "p:" + payload["old_path"]))
        return cls(True, frozenset(touched))


INCOMPLETE = Pending(False)


class _Call(Generic[V]):
    """One call of the fetch: its answer, and whether it has begun (after which a
    newcomer must not share it)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.answer: asyncio.Future[V] = loop.create_future()
        self.begun = False


class SingleFlight(Generic[K, V]):
    """One call of ``fetch(key)`` shared by the callers that arrived before it began.

    A caller that arrives once a call for its key has begun waits for the next call,
    which begins when that one returns and is shared by every caller that arrived
    meanwhile: an answer is never older than the caller's arrival. ``fetch`` must
    not raise (make failure a value).
    """

    def __init__(self, fetch: Callable[[K], Awaitable[V]], max_keys: int = 64) -> None:
        self._fetch = fetch
        self._max_keys = max_keys
        #: key -> the call that has begun (or is about to), and the one queued behind it
        self._calls: dict[K, tuple[_Call[V], _Call[V] | None]] = {}
        #: How many calls were made (for tests and the benchmark's profile).
        self.calls = 0

    async def __call__(self, key: K) -> V:
        loop = asyncio.get_running_loop()
        slot = self._calls.get(key)
        if slot is None:
            if len(self._calls) >= self._max_keys:
                # Many cursors at once is not the shape this serves: ask alone.
                self.calls += 1
                return await self._fetch(key)
            call: _Call[V] = _Call(loop)
            self._calls[key] = (call, None)
            self._start(key, call)
        else:
            current, queued = slot
            if not current.begun:
                call = current  # its fetch has not run a line yet: nothing is sent
            else:
                if queued is None:
                    queued = _Call(loop)
                    self._calls[key] = (current, queued)
                call = queued
        # Shielded: a caller that gives up (its client went away) does not cancel the
        # call the others wait for.
        return await asyncio.shield(call.answer)

    def _start(self, key: K, call: _Call[V]) -> None:
        self.calls += 1

        async def run() -> V:
            call.begun = True
            return await self._fetch(key)

        task = asyncio.ensure_future(run())
        task.add_done_callback(lambda done: self._finished(key, call, done))

    def _finished(self, key: K, call: _Call[V], done: asyncio.Future[V]) -> None:
        if done.cancelled():
            call.answer.cancel()
        elif (error := done.exception()) is not None:
            call.answer.set_exception(error)
        else:
            call.answer.set_result(done.result())
        _current, queued = self._calls.pop(key)
        if queued is not None:
            self._calls[key] = (queued, None)
            self._start(key, queued)
