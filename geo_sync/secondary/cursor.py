"""The log cursor: follows the primary's event feed into the registries.

Each batch of events is applied and the new position stored in one tracking-DB
transaction, with a compare-and-set on the old position: a crash anywhere
loses nothing (the batch is read again) and applies nothing twice. Work is
announced after commit by waking the scheduler; if that is lost, the scheduler
finds pending rows on its own.

While a backlog drains, the next page is fetched while the current one is
applied (the primary reads it meanwhile), and the scheduler is woken at most
every ``WAKE_INTERVAL`` rather than after every page.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy import select, update

from geo_sync.db import utcnow, write_transaction
from geo_sync.errors import BackfillRequired, InvalidInput
from geo_sync.logging import get_logger
from geo_sync.metrics import EVENTS_APPLIED
from geo_sync.secondary import selective
from geo_sync.secondary.backfill import backfill
from geo_sync.secondary.runtime import Runtime
from geo_sync.selection import Selection
from geo_sync.tracking import epoch_row, event_rows, selection_row
from geo_sync.tracking.models import CursorRow
from geo_sync.wire import EVENTS_MAX_LIMIT, EventPage
from replicators.type_map import REPLICATORS

log = get_logger("cursor")
#: The primary's largest page: fewer round trips and transactions per event (the client
#: asks an older primary for its smaller pages).
PAGE_LIMIT = EVENTS_MAX_LIMIT
#: While pages keep coming, wake the scheduler at most this often (seconds): each pass
#: costs it some queries, and it runs on its own interval anyway.
WAKE_INTERVAL = 0.5
#: The primary's rules for a payload (geo_sync.primary.publish): BIGINT, whole sha256.
MAX_SIZE = 2**63 - 1
_SHA256 = re.compile(r"[0-9a-f]{64}")
ACK_INTERVAL = 1.0


def _payload(payload: dict[str, object]) -> tuple[int | None, str | None]:
    """An event's size and checksum, by the rules the primary publishes with: these
    become our record of the item, which every copy is checked against."""
    size, checksum = payload.get("size"), payload.get("checksum")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool)
                             or not 0 <= size <= MAX_SIZE):
        raise InvalidInput(f"payload size must be an integer from 0 to {MAX_SIZE}")
    if checksum is not None and not (isinstance(checksum, str)
                                     and _SHA256.fullmatch(checksum)):
        raise InvalidInput("payload checksum must be 64 lowercase hex digits (sha256)")
    return size, checksum


class CursorMoved(Exception):
    """Raised when another process advanced the cursor under us; the batch is dropped."""


class LogCursor:
    """``run_once`` reads one page of events and applies it."""

    def __init__(self, runtime: Runtime, on_applied: Callable[[], None] = lambda: None) -> None:
        self.runtime = runtime
        self.on_applied = on_applied
        self._last_ack = 0.0
        self._acked: str | None = None
        self._last_wake = 0.0
        #: The page after ``cursor`` being fetched while the one before it is applied.
        self._prefetch: tuple[str, Future[EventPage]] | None = None
        self._fetcher = ThreadPoolExecutor(1, thread_name_prefix="geo-sync-prefetch")

    def close(self) -> None:
        """Drop a fetch in flight (its page is read again by whoever runs next)."""
        self._prefetch = None
        self._fetcher.shutdown(wait=False, cancel_futures=True)

    def position(self) -> tuple[str | None, bool]:
        with self.runtime.engine.connect() as conn:
            row = conn.execute(select(CursorRow.cursor, CursorRow.backfill_required)
                               .where(CursorRow.id == 1)).one()
        return row.cursor, bool(row.backfill_required)

    def run_once(self, wait: int | None = None) -> int:
        """Apply the next page of events (backfilling first if needed); return how many."""
        cursor, needs_backfill = self.position()
        if needs_backfill or cursor is None:
            backfill(self.runtime, self.runtime.client)
            self.on_applied()
            return 0
        wait = self.runtime.settings.poll_wait_seconds if wait is None else wait
        try:
            page = self._next_page(cursor, wait)
        except BackfillRequired as exc:
            log.warning("backfill_required", reason=exc.message)
            self._record(backfill_required=True, last_error=f"{exc.message}; backfilling")
            return 0
        if page.more:
            # Applying takes about as long as the primary takes to read a page: overlap
            # them. Keyed by position, so a page for a cursor we do not reach is dropped.
            self._prefetch = (page.cursor, self._fetcher.submit(
                self.runtime.client.events, page.cursor, limit=PAGE_LIMIT, wait=0))
        applied = self.apply(cursor, page)
        self._follow_epoch()
        now = time.monotonic()
        if applied and (not page.more or now - self._last_wake >= WAKE_INTERVAL):
            self._last_wake = now
            self.on_applied()
        # While draining a backlog, ack at most once a second; once caught up, ack at
        # once so the primary's view (pruning, lag in status) is current while we idle.
        self._acknowledge(page.cursor, throttle=page.more)
        return applied

    def _follow_epoch(self) -> None:
        """Record a higher epoch the primary answered with: from now on a site below
        it is refused (split brain), by this process and every one started later."""
        client = self.runtime.client
        if client.seen_epoch is None or client.seen_epoch <= client.epoch_floor:
            return
        with write_transaction(self.runtime.engine) as conn:
            epoch_row.raise_to(conn, client.seen_epoch, self.runtime.settings.primary_url)
            client.epoch_floor = epoch_row.read(conn).epoch
        log.info("primary_epoch_followed", epoch=client.epoch_floor)

    def _next_page(self, cursor: str, wait: int) -> EventPage:
        """The page after ``cursor``: the prefetched one if it is for this position (its
        errors are raised here, as a direct fetch's would be), else fetched now."""
        prefetched, self._prefetch = self._prefetch, None
        if prefetched is not None:
            position, future = prefetched
            if position == cursor:
                return future.result()
            future.cancel()
        return self.runtime.client.events(cursor, limit=PAGE_LIMIT, wait=wait)

    def apply(self, old: str, page: EventPage) -> int:
        """Apply ``page`` and move the cursor from ``old`` to ``page.cursor`` atomically."""
        skipped = []
        # The net effect per item, in event order: its last state and how many events.
        net: dict[str, dict[str, event_rows.NetChange]] = {}
        with write_transaction(self.runtime.engine) as conn:
            applied = selection_row.applied_text(conn)
            selection = Selection.from_json(applied)
            for event in page.events:
                replicator = REPLICATORS.get(event.replicable_type)
                try:
                    if replicator is None:
                        raise InvalidInput(f"unknown type {event.replicable_type!r}")
                    path = replicator.validate_path(event.path)
                    replicator.validate_event(event.event)
                    if not 0 < len(event.record_id) <= 255:
                        raise InvalidInput("record_id must be 1 to 255 characters")
                    size, checksum = _payload(event.payload)
                except InvalidInput as exc:
                    # A hostile or newer-than-us event must not wedge the feed.
                    skipped.append(f"event {event.id}: {exc.message}")
                    log.error("event_refused", event_id=event.id, error=exc.message)
                    continue
                items = net.setdefault(replicator.name, {})
                earlier = items.get(event.record_id)
                items[event.record_id] = event_rows.NetChange(
                    event.record_id, path, tombstone=event.event == "deleted",
                    size=size, checksum=checksum,
                    events=earlier.events + 1 if earlier else 1,
                    committed_at=event.created_at,
                )
            for name, items in net.items():
                model = REPLICATORS[name].registry_table
                # Only selected items are recorded: a filter before the insert, nothing more.
                chosen = selective.to_record(conn, model, name, selection, list(items.values()))
                event_rows.note_changes(conn, model, chosen)
            values: dict[str, object] = {"cursor": page.cursor, "updated_at": utcnow(),
                                         "events_applied": CursorRow.events_applied
                                         + len(page.events)}
            if page.events:
                values["last_event_id"] = page.events[-1].id
                values["last_event_at"] = page.events[-1].created_at
            if skipped:
                values["last_error"] = "; ".join(skipped)[-2000:]
            # The selection too: a `reselect` meanwhile means this page was filtered by
            # the old one, so it is dropped and read again.
            moved = conn.execute(update(CursorRow).where(
                CursorRow.id == 1, CursorRow.cursor == old,
                CursorRow.selection.is_not_distinct_from(applied)).values(values))
            if moved.rowcount != 1:
                raise CursorMoved("another log cursor advanced the position or the selection "
                                  "changed; dropping batch")
        if page.events:
            EVENTS_APPLIED.inc(len(page.events))
            log.info("events_applied", count=len(page.events), last_event_id=page.events[-1].id)
        return len(page.events)

    def _acknowledge(self, cursor: str, *, throttle: bool) -> None:
        now = time.monotonic()
        if cursor == self._acked or (throttle and now - self._last_ack < ACK_INTERVAL):
            return
        try:
            self.runtime.client.ack(cursor)
            self._acked, self._last_ack = cursor, now
        except Exception as exc:  # acks only allow pruning; the next one catches up
            log.warning("ack_failed", error=str(exc))

    def _record(self, **values: object) -> None:
        with write_transaction(self.runtime.engine) as conn:
            conn.execute(update(CursorRow).where(CursorRow.id == 1)
                         .values(updated_at=utcnow(), **values))

    def record_error(self, message: str | None) -> None:
        """Show ``message`` in status (None clears it once the problem is gone)."""
        self._record(last_error=message[:2000] if message else None)
