"""The event feed: every committed event exactly once, never skipping, never waiting.

The problem. Event ids come from a sequence when a row is inserted, but a row
becomes visible when its transaction commits. Transactions commit in any order,
so a reader that asks for ``id > last`` can see id 7 before id 6 commits, move
its cursor past 6, and never see it. GitLab Geo papers over this with a grace
period (wait 10 minutes, give up after 60) and so delivers late events late and
very late events never.

PostgreSQL: the cursor is a snapshot (the PgQ approach). Every event row stores
the id of the transaction that wrote it (``txid``, from ``pg_current_xact_id()``).
A reader's position is a snapshot ``lo`` -- ``xmin:xmax:xip`` -- meaning "I have
seen exactly the events whose transactions are visible in ``lo``". To read on, it
takes the current snapshot ``hi`` and returns the events visible in ``hi`` but not
in ``lo``. Visibility in a snapshot is a property of committed transactions only,
so an event appears in the first batch whose ``hi`` sees its transaction commit:
late commits are picked up by the next read instead of being passed over, an
uncommitted or rolled-back event is never returned, and no event can be in two
batches because ``lo`` of one batch is ``hi`` of the previous. Nothing waits for
anything, and writers are never serialized. The filter needs no server-side
functions: ``visible(x, s) = x < s.xmin or (x < s.xmax and x not in s.xip)``, and
``txid >= lo.xmin`` bounds the index scan. When a batch holds more than ``limit``
events, the cursor pins ``hi`` and remembers the last id returned, so pages of
one batch are a deterministic walk over a fixed set.

SQLite (embedded mode) allows a single writer: the write lock is held from the
first write to commit, so ids are assigned in commit order and ``id > last`` is
already exact.

Cursors are opaque strings for clients: ``pg1;<lo>;<hi or empty>;<after id>`` and
``sq1;<last id>``.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    not_,
    or_,
    select,
    text,
)
from sqlalchemy.engine import Dialect

from geo_sync.db import is_postgres
from geo_sync.errors import InvalidCursor
from geo_sync.primary.models import Event
from geo_sync.wire import EventPage, FeedEvent

# ASCII digits only (\d would take any script's digits), at most a BIGINT's worth each.
_NUMBER = r"[0-9]{1,19}"
_SNAPSHOT = re.compile(rf"({_NUMBER}):({_NUMBER}):((?:{_NUMBER}(?:,{_NUMBER})*)?)")
_ID = re.compile(_NUMBER)
MAX_ID = 2**63 - 1
#: A snapshot lists the transactions in progress when it was taken; this bounds the
#: work a cursor can ask of us, far above any real server's max_connections.
MAX_CURSOR_CHARS = 64 * 1024


class Feed(ABC):
    """Reading the event log by cursor; one implementation per database backend."""

    @abstractmethod
    def start(self) -> str:
        """The cursor before every event ever written."""

    @abstractmethod
    def head(self, conn: Connection) -> str:
        """The cursor after every event committed so far."""

    @abstractmethod
    def read(self, conn: Connection, cursor: str, limit: int) -> EventPage:
        """Up to ``limit`` events after ``cursor``, in delivery order."""

    def read_json(self, conn: Connection, cursor: str, limit: int) -> JsonPage:
        """``read``, as the response body the Geo API sends (see ``JsonPage``)."""
        page = self.read(conn, cursor, limit)
        return JsonPage([json.dumps(e.to_json(), ensure_ascii=False, separators=(",", ":"))
                         for e in page.events], page.cursor, page.more)

    @abstractmethod
    def last_id(self, conn: Connection) -> int | None:
        """The id of the newest event ever written (pruned or not); None before the first."""

    @abstractmethod
    def delivered(self, cursor: str) -> ColumnElement[bool]:
        """SQL condition on geo_events: true for events a reader at ``cursor`` has seen."""

    def validate(self, cursor: str) -> str:
        """Return ``cursor`` if this feed can read from it; raise InvalidCursor otherwise."""
        if len(cursor) > MAX_CURSOR_CHARS:
            raise InvalidCursor(f"cursor is longer than {MAX_CURSOR_CHARS} characters")
        self.delivered(cursor)
        return cursor

    @abstractmethod
    def beyond(self, cursor: str, other: str) -> bool:
        """Whether ``cursor`` claims events past ``other`` (both valid cursors)."""


@dataclass(frozen=True)
class JsonPage:
    """A page of events as JSON text, one document per event: what ``GET /events``
    sends, without building an object per event on the way (on PostgreSQL the
    database writes each event's JSON; Python only joins them)."""

    events: list[str]
    cursor: str
    more: bool

    def body(self) -> bytes:
        """``EventPage.to_json()``'s document, as bytes."""
        cursor = json.dumps(self.cursor)
        more = "true" if self.more else "false"
        return (f'{{"events":[{",".join(self.events)}],"cursor":{cursor},"more":{more}}}'
                .encode())


def _rows_to_events(rows: Any) -> list[FeedEvent]:
    return [
        FeedEvent(
            id=row.id,
            replicable_type=row.replicable_type,
            event=row.event,
            record_id=row.record_id,
            path=row.path,
            payload=row.payload or {},
            created_at=row.created_at,
        )
        for row in rows
    ]


_EVENT_COLUMNS = (
    Event.id,
    Event.replicable_type,
    Event.event,
    Event.record_id,
    Event.path,
    Event.payload,
    Event.created_at,
)

def _event_json(row: Any) -> ColumnElement[str]:
    """``FeedEvent.to_json()`` of ``row`` (columns named as geo_events'), written by
    PostgreSQL: a missing or JSON-null payload is ``{}``; the time is UTC with
    microseconds (``datetime.fromisoformat`` reads both spellings)."""
    return cast(func.json_build_object(
        literal_column("'id'"), row.id,
        literal_column("'type'"), row.replicable_type,
        literal_column("'event'"), row.event,
        literal_column("'record_id'"), row.record_id,
        literal_column("'path'"), row.path,
        literal_column("'payload'"), case(
            (or_(row.payload.is_(None), func.json_typeof(row.payload) == "null"),
             literal_column("'{}'::json")), else_=row.payload),
        literal_column("'created_at'"), func.to_char(
            func.timezone("UTC", row.created_at),
            literal_column("""'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'"""))), Text)


@dataclass(frozen=True)
class Snapshot:
    """A PostgreSQL ``pg_snapshot``: which transactions had committed when it was taken."""

    xmin: int
    xmax: int
    xip: tuple[int, ...]

    @classmethod
    def parse(cls, raw: str) -> Snapshot:
        match = _SNAPSHOT.fullmatch(raw)
        if not match:
            raise InvalidCursor(f"malformed snapshot in cursor: {raw[:80]!r}")
        xmin, xmax = int(match[1]), int(match[2])
        xip = tuple(int(x) for x in match[3].split(",")) if match[3] else ()
        if not xmin <= xmax <= MAX_ID or any(not xmin <= x < xmax for x in xip):
            raise InvalidCursor(f"inconsistent snapshot in cursor: {raw[:80]!r}")
        return cls(xmin, xmax, xip)

    def __str__(self) -> str:
        return f"{self.xmin}:{self.xmax}:{','.join(map(str, self.xip))}"

    def visible(self, txid: ColumnElement[int] | Any) -> ColumnElement[bool]:
        """SQL: was the transaction ``txid`` committed as of this snapshot?"""
        in_progress = txid.in_(self.xip) if self.xip else None
        recent = txid < self.xmax if in_progress is None else and_(txid < self.xmax,
                                                                    not_(in_progress))
        return or_(txid < self.xmin, recent)


class PostgresFeed(Feed):
    """Snapshot cursors over ``txid`` (see the module docstring)."""

    _PREFIX = "pg1"

    def start(self) -> str:
        return self._format(Snapshot(1, 1, ()), None, 0)

    def head(self, conn: Connection) -> str:
        return self._format(self._current(conn), None, 0)

    def read(self, conn: Connection, cursor: str, limit: int) -> EventPage:
        lo, hi, after = self._bounds(conn, cursor)
        # One more than ``limit``, to tell whether more are ready.
        rows = conn.execute(select(*_EVENT_COLUMNS).where(*self._between(lo, hi, after))
                            .order_by(Event.id).limit(limit + 1)).all()
        events = _rows_to_events(rows[:limit])
        if len(rows) > limit:
            return EventPage(events, self._format(lo, hi, events[-1].id), more=True)
        return EventPage(events, self._format(hi, None, 0), more=False)

    def read_json(self, conn: Connection, cursor: str, limit: int) -> JsonPage:
        lo, hi, after = self._bounds(conn, cursor)
        # The JSON of the page's rows only: over the table, PostgreSQL would build it
        # for every row of the batch before its top-N sort (540 ms for 20,000).
        page = (select(*_EVENT_COLUMNS).where(*self._between(lo, hi, after))
                .order_by(Event.id).limit(limit + 1).subquery())
        rows = conn.execute(select(page.c.id, _event_json(page.c)).order_by(page.c.id)).all()
        events = [row[1] for row in rows[:limit]]
        if len(rows) > limit:
            return JsonPage(events, self._format(lo, hi, rows[limit - 1][0]), more=True)
        return JsonPage(events, self._format(hi, None, 0), more=False)

    def _bounds(self, conn: Connection, cursor: str) -> tuple[Snapshot, Snapshot, int]:
        lo, hi, after = self._parse(cursor)
        if hi is None:
            hi, after = self._current(conn), 0
        return lo, hi, after

    @staticmethod
    def _between(lo: Snapshot, hi: Snapshot, after: int) -> list[ColumnElement[bool]]:
        """The events visible in ``hi`` but not in ``lo``, after id ``after``."""
        txid = Event.txid
        return [txid >= lo.xmin, txid < hi.xmax, hi.visible(txid), not_(lo.visible(txid)),
                Event.id > after]

    def delivered(self, cursor: str) -> ColumnElement[bool]:
        lo, _, _ = self._parse(cursor)
        return lo.visible(Event.txid)

    def beyond(self, cursor: str, other: str) -> bool:
        # Transaction ids only grow: a snapshot naming an xmax the other has not
        # reached was never taken before it.
        lo, hi, _ = self._parse(cursor)
        limit = self._parse(other)[0].xmax
        return lo.xmax > limit or (hi is not None and hi.xmax > limit)

    def last_id(self, conn: Connection) -> int | None:
        # The sequence remembers the last id handed out; pruning does not rewind it.
        value = conn.execute(text(
            "SELECT pg_sequence_last_value(pg_get_serial_sequence('geo_events', 'id'))")
        ).scalar()
        return int(value) if value is not None else None

    @staticmethod
    def _current(conn: Connection) -> Snapshot:
        return Snapshot.parse(conn.execute(text("SELECT pg_current_snapshot()::text")).scalar_one())

    def _format(self, lo: Snapshot, hi: Snapshot | None, after: int) -> str:
        return f"{self._PREFIX};{lo};{hi if hi is not None else ''};{after}"

    def _parse(self, cursor: str) -> tuple[Snapshot, Snapshot | None, int]:
        parts = cursor.split(";")
        if (len(parts) != 4 or parts[0] != self._PREFIX or not _ID.fullmatch(parts[3])
                or int(parts[3]) > MAX_ID):
            raise InvalidCursor(f"not a PostgreSQL feed cursor: {cursor[:80]!r}")
        lo = Snapshot.parse(parts[1])
        hi = Snapshot.parse(parts[2]) if parts[2] else None
        return lo, hi, int(parts[3])


class SqliteFeed(Feed):
    """Plain id cursors: SQLite's single writer commits ids in order."""

    _PREFIX = "sq1"

    def start(self) -> str:
        return f"{self._PREFIX};0"

    def head(self, conn: Connection) -> str:
        return f"{self._PREFIX};{self.last_id(conn) or 0}"

    def last_id(self, conn: Connection) -> int | None:
        # AUTOINCREMENT keeps the high-water mark in sqlite_sequence, past pruning.
        seq = conn.execute(text(
            "SELECT seq FROM sqlite_sequence WHERE name = 'geo_events'")).scalar()
        newest = conn.execute(select(func.max(Event.id))).scalar()
        known = [int(v) for v in (seq, newest) if v]
        return max(known) if known else None

    #: Built once: read on every events request (most of them find nothing).
    _PAGE = (select(*_EVENT_COLUMNS).where(Event.id > bindparam("after"))
             .order_by(Event.id).limit(bindparam("rows")))

    def read(self, conn: Connection, cursor: str, limit: int) -> EventPage:
        after = self._parse(cursor)
        rows = conn.execute(self._PAGE, {"after": after, "rows": limit + 1}).all()
        events = _rows_to_events(rows[:limit])
        last = events[-1].id if events else after
        return EventPage(events, f"{self._PREFIX};{last}", more=len(rows) > limit)

    def delivered(self, cursor: str) -> ColumnElement[bool]:
        return Event.id <= self._parse(cursor)

    def beyond(self, cursor: str, other: str) -> bool:
        return self._parse(cursor) > self._parse(other)

    def _parse(self, cursor: str) -> int:
        prefix, _, last = cursor.partition(";")
        if prefix != self._PREFIX or not _ID.fullmatch(last) or int(last) > MAX_ID:
            raise InvalidCursor(f"not an embedded (SQLite) feed cursor: {cursor[:80]!r}")
        return int(last)


def feed_for(dialect: Dialect) -> Feed:
    """The feed implementation for a database dialect."""
    return PostgresFeed() if is_postgres(dialect) else SqliteFeed()
