"""Waking long-polling feed readers the moment an event commits.

A background thread watches the database and bumps a generation counter:
on PostgreSQL it LISTENs on the channel that ``geo_publish()`` NOTIFYs at commit;
on SQLite it polls ``max(id)`` every 50 ms (embedded mode has no push channel).
Readers note the generation, read the feed, and if it was empty wait until the
generation moves. A missed notification (the listener reconnecting after a
database restart) costs at most the readers' one-second safety re-read.
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import suppress

import psycopg
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

from geo_sync.db import is_postgres
from geo_sync.logging import get_logger
from geo_sync.primary.models import Event
from geo_sync.primary.publish import NOTIFY_CHANNEL

log = get_logger("notify")
SQLITE_POLL_SECONDS = 0.05


class ChangeSignal:
    """A generation counter that async waiters can block on."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._generation = 0
        self._changed = asyncio.Event()
        #: Set when the server stops: waiters return at once, now and from then on.
        self.closed = False

    def close(self) -> None:
        """Wake every waiter and make later waits return at once (the server is
        stopping: a long poll answers with what it has instead of holding the stop)."""
        self.closed = True
        self._bump()

    @property
    def generation(self) -> int:
        return self._generation

    def bump_threadsafe(self) -> None:
        """Called from the watcher thread; once the server's loop has closed there is no
        one left to wake (the watcher may outlive it by one wait)."""
        with suppress(RuntimeError):  # "Event loop is closed", between a check and the call
            if not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._bump)

    def _bump(self) -> None:
        self._generation += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for_change(self, since: int, timeout: float) -> None:
        """Return when the generation differs from ``since``, or after ``timeout``."""
        if self._generation != since or self.closed:
            return
        with suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)


class Watcher(threading.Thread):
    """The thread that feeds a ChangeSignal from the database."""

    def __init__(self, engine: Engine, signal: ChangeSignal) -> None:
        super().__init__(name="geo-sync-event-watcher", daemon=True)
        self._engine = engine
        self._signal = signal
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        backoff = 0.1
        while not self._stop_event.is_set():
            try:
                if is_postgres(self._engine):
                    self._listen()
                else:
                    self._poll()
                backoff = 0.1
            except Exception as exc:  # the database went away: keep readers polling, retry
                if self._stop_event.is_set():
                    return  # the server is stopping: its database may go first
                log.warning("event_watcher_disconnected", error=str(exc), retry_in=backoff)
                self._signal.bump_threadsafe()
                self._stop_event.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _listen(self) -> None:
        url = make_url(str(self._engine.url.render_as_string(hide_password=False)))
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self._signal.bump_threadsafe()  # anything committed while we were away
            while not self._stop_event.is_set():
                for _ in conn.notifies(timeout=0.5):
                    self._signal.bump_threadsafe()

    def _poll(self) -> None:
        last = None
        while not self._stop_event.is_set():
            with self._engine.connect() as conn:
                current = conn.execute(select(func.max(Event.id))).scalar()
            if current != last:
                last = current
                self._signal.bump_threadsafe()
            self._stop_event.wait(SQLITE_POLL_SECONDS)
