"""The Geo API's wire protocol: what the primary serves and a secondary reads.

One home for the URL prefix, the ``X-Geo-*`` headers, the records that travel
(events, event pages, catalog replies) and how errors map to status codes, so the
server (``geo_sync.primary.api``) and the client (``geo_sync.secondary.client``)
cannot drift apart. ``PrimarySource`` is the little a data type needs of a client
to copy an item; replicators and verification depend on it, not on the client.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from geo_sync.errors import (
    AuthError,
    BackfillRequired,
    GeoSyncError,
    InvalidInput,
    MissingOnPrimary,
    NotFound,
    SiteReadOnly,
    TooLarge,
    TransientError,
)

API_PREFIX = "/api/geo/v1"

#: The largest page of events the feed serves (``GET /events?limit=``). A page is one
#: request, one read of the feed and one tracking-DB transaction on the secondary, so
#: the apply rate grows with it: 5,000 applied 21,000+ events/s where 1,000 applied
#: 14,000 (docs/benchmarks.md, "Event apply rate"), in 1-2 MB of JSON.
EVENTS_MAX_LIMIT = 5000
#: What primaries before that change allow; a secondary falls back to it when a
#: primary refuses a larger page.
EVENTS_MAX_LIMIT_BEFORE = 1000

#: Headers of a blob response: the primary's record of the item it is sending.
SIZE_HEADER = "x-geo-size"
CHECKSUM_HEADER = "x-geo-checksum-sha256"
RECORD_HEADER = "x-geo-record-id"
#: On a 404: the item is gone on the primary (as opposed to a wrong URL).
MISSING_HEADER = "x-geo-missing-on-primary"
#: On every response: the serving site's epoch (bumped by each promotion). A secondary
#: sends the highest epoch it has followed in the same header; a site that sees a
#: higher one than its own was replaced and fences itself.
EPOCH_HEADER = "x-geo-epoch"
#: On a demoted site's responses: where the primary is now.
NEW_PRIMARY_HEADER = "x-geo-new-primary"

#: Error classes the API answers with, most specific first: (class, status, code).
#: The server picks the first that matches; the client maps (status, code) back.
ERROR_CODES: tuple[tuple[type[GeoSyncError], int, str], ...] = (
    (MissingOnPrimary, 404, "missing_on_primary"),
    (NotFound, 404, "not_found"),
    (AuthError, 401, "unauthorized"),
    (BackfillRequired, 410, "backfill_required"),
    (TooLarge, 413, "too_large"),
    (SiteReadOnly, 409, "site_read_only"),
    (InvalidInput, 400, "invalid_request"),
)
INTERNAL = (500, "internal")


def error_status(exc: GeoSyncError) -> tuple[int, str]:
    """The (HTTP status, error code) the API answers ``exc`` with."""
    for cls, status, code in ERROR_CODES:
        if isinstance(exc, cls):
            return status, code
    return INTERNAL


@dataclass(frozen=True)
class FeedEvent:
    """One event as the feed serves it."""

    id: int
    replicable_type: str
    event: str
    record_id: str
    path: str
    payload: dict[str, Any]
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.replicable_type,
            "event": self.event,
            "record_id": self.record_id,
            "path": self.path,
            "payload": self.payload,
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeedEvent:
        return cls(
            id=int(data["id"]),
            replicable_type=str(data["type"]),
            event=str(data["event"]),
            record_id=str(data["record_id"]),
            path=str(data["path"]),
            payload=dict(data.get("payload") or {}),
            created_at=datetime.fromisoformat(data["created_at"]),
        )


@dataclass(frozen=True)
class EventPage:
    """Events after a cursor, the cursor to continue from, and whether more are ready."""

    events: list[FeedEvent]
    cursor: str
    more: bool

    def to_json(self) -> dict[str, Any]:
        return {"events": [e.to_json() for e in self.events], "cursor": self.cursor,
                "more": self.more}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EventPage:
        return cls([FeedEvent.from_json(e) for e in data["events"]], str(data["cursor"]),
                   bool(data["more"]))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _when(value: Any) -> datetime | None:
    """A timestamp from the wire, or None if absent or not one (the secondary only
    displays these: a bad one must not cost the item)."""
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


@dataclass(frozen=True)
class CatalogEntry:
    """One item of a catalog page: the primary's record of it. Its path is checked by
    the item's replicator, not here; a size that is not an integer counts as unknown."""

    id: int
    record_id: str
    path: str
    size: int | None
    checksum: str | None
    checksum_at: datetime | None
    updated_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "record_id": self.record_id, "path": self.path,
                "size": self.size, "checksum": self.checksum,
                "checksum_at": _iso(self.checksum_at), "updated_at": _iso(self.updated_at)}

    @classmethod
    def from_json(cls, data: Any) -> CatalogEntry:
        """Raises InvalidInput naming the field when ``data`` is not a catalog entry."""
        if not isinstance(data, dict) or not isinstance(data.get("path"), str):
            raise InvalidInput(f"catalog entry without a string path: {str(data)[:200]}")
        size = data.get("size")
        return cls(int(data.get("id") or 0), str(data.get("record_id")), data["path"],
                   size if isinstance(size, int) and not isinstance(size, bool) else None,
                   str(data["checksum"]) if data.get("checksum") else None,
                   _when(data.get("checksum_at")), _when(data.get("updated_at")))


@dataclass(frozen=True)
class CatalogPage:
    """Catalog items of one type after an id; ``next_after`` continues, None at the end."""

    type: str
    #: As sent; ``entries()`` reads them one by one.
    items: list[Any]
    next_after: int | None
    #: Items of the type in the catalog; None when the page was asked for without it.
    total: int | None

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type,
                "items": [i.to_json() if isinstance(i, CatalogEntry) else i for i in self.items],
                "next_after": self.next_after, "total": self.total}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CatalogPage:
        return cls(str(data["type"]), list(data["items"]), _opt_int(data.get("next_after")),
                   _opt_int(data.get("total")))

    def entries(self) -> Iterator[CatalogEntry | InvalidInput]:
        """Each item as an entry, or the InvalidInput saying why it is not one: a bad
        item costs itself, not the page."""
        for raw in self.items:
            try:
                yield CatalogEntry.from_json(raw)
            except (InvalidInput, TypeError, ValueError) as exc:
                yield exc if isinstance(exc, InvalidInput) else InvalidInput(
                    f"catalog entry unreadable ({exc}): {str(raw)[:200]}")


@dataclass(frozen=True)
class CatalogItemReply:
    """One item's size and checksum on the primary; ``changed`` (asked with a cursor)
    says whether an event about it lies beyond that cursor (or, for a repository, a
    push still waits in the primary's hook spool: its event will)."""

    type: str
    path: str
    size: int | None
    checksum: str | None
    checksum_at: datetime | None
    changed_after_cursor: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "path": self.path, "size": self.size,
                "checksum": self.checksum, "checksum_at": _iso(self.checksum_at),
                "changed_after_cursor": self.changed_after_cursor}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CatalogItemReply:
        changed = data.get("changed_after_cursor")
        return cls(str(data["type"]), str(data["path"]), _opt_int(data.get("size")),
                   _opt_str(data.get("checksum")), _when(data.get("checksum_at")),
                   None if changed is None else bool(changed))


#: ``POST /blob-batch/{type}`` with ``{"paths": [...]}``: at most this many paths, and
#: a body of at most BATCH_BODY_BYTES.
BATCH_MAX_PATHS = 1000
BATCH_BODY_BYTES = 1024 * 1024
#: Files up to this size travel inside a batch; a larger one is answered "too_large"
#: and fetched on its own (the server holds each inlined file in memory while sending).
BATCH_INLINE_MAX = 1024 * 1024
#: A batch entry's header line is at most this long (a path is at most 4096 characters).
BATCH_HEADER_MAX = 64 * 1024


class BatchStatus(StrEnum):
    """What a blob batch says of one path."""

    OK = "ok"  #: its bytes follow
    MISSING = "missing"  #: not on the primary
    TOO_LARGE = "too_large"  #: over BATCH_INLINE_MAX: fetch it on its own


@dataclass(frozen=True)
class BatchEntry:
    """One path's answer in a blob batch: a header line of JSON, then ``size`` bytes
    if ``status`` is "ok". "missing" (not on the primary) and "too_large" (fetch it on
    its own) carry no bytes. ``checksum`` is the catalog's, sent only when the catalog
    describes the bytes that follow (same size)."""

    path: str
    status: BatchStatus
    size: int | None = None
    checksum: str | None = None
    record_id: str | None = None

    def header_line(self) -> bytes:
        return json.dumps({"path": self.path, "status": self.status, "size": self.size,
                           "checksum": self.checksum, "record_id": self.record_id},
                          separators=(",", ":")).encode() + b"\n"

    def headers(self) -> dict[str, str]:
        """What a single blob response would have said in its headers, for the same
        integrity checks."""
        headers = {SIZE_HEADER: str(self.size)}
        if self.checksum:
            headers[CHECKSUM_HEADER] = self.checksum
        if self.record_id is not None:
            headers[RECORD_HEADER] = quote(self.record_id, safe="")
        return headers

    @classmethod
    def parse(cls, line: bytes) -> BatchEntry:
        try:
            data = json.loads(line)
            size = data["size"]
            entry = cls(str(data["path"]), BatchStatus(str(data["status"])),
                        None if size is None else int(size),
                        _opt_str(data.get("checksum")), _opt_str(data.get("record_id")))
        except (ValueError, TypeError, KeyError) as exc:
            raise TransientError(f"blob batch from the primary is malformed ({exc}): "
                                 f"{line[:200]!r}") from None
        if entry.status == BatchStatus.OK and (entry.size is None or not
                                     0 <= entry.size <= BATCH_INLINE_MAX):
            raise TransientError(f"blob batch entry for {entry.path!r} declares "
                                 f"{entry.size} bytes, outside 0..{BATCH_INLINE_MAX}")
        return entry


def read_batch(chunks: Iterable[bytes]) -> Iterator[tuple[BatchEntry, bytes]]:
    """Split a blob batch response into (entry, bytes) as they arrive; raises
    TransientError if it breaks off inside an entry or is not a batch."""
    buffer = bytearray()
    pos = 0  # what lies before it in buffer has been handed out
    source = iter(chunks)

    def fill(needed: int) -> bool:
        """Read until ``needed`` unread bytes are buffered; False at the end."""
        nonlocal buffer, pos
        if pos and len(buffer) - pos < needed:
            buffer = buffer[pos:]  # drop what was handed out before reading more
            pos = 0
        while len(buffer) - pos < needed:
            chunk = next(source, None)
            if chunk is None:
                return False
            buffer += chunk
        return True

    while True:
        newline = buffer.find(b"\n", pos)
        while newline < 0:
            if len(buffer) - pos > BATCH_HEADER_MAX:
                raise TransientError("blob batch from the primary has a header line over "
                                     f"{BATCH_HEADER_MAX} bytes")
            if not fill(len(buffer) - pos + 1):
                if len(buffer) > pos:
                    raise TransientError("blob batch from the primary ended inside a header")
                return
            newline = buffer.find(b"\n", pos)
        entry = BatchEntry.parse(bytes(buffer[pos:newline]))
        pos = newline + 1
        size = entry.size if entry.status == BatchStatus.OK and entry.size is not None else 0
        if not fill(size):
            raise TransientError(f"blob batch from the primary ended inside {entry.path!r} "
                                 f"({len(buffer) - pos} of {size} bytes)")
        data = bytes(buffer[pos:pos + size])
        pos += size
        yield entry, data


class PrimarySource(Protocol):
    """What a data type needs of the primary to copy and check an item."""

    def git_url(self, path: str) -> str: ...

    @property
    def ca_bundle(self) -> Path | None: ...

    def auth_header(self) -> str: ...

    def blob(self, type_name: str, path: str, *, start: int = 0
             ) -> AbstractContextManager[httpx.Response]: ...

    def catalog_item(self, type_name: str, path: str, *, recompute: bool = False,
                     cursor: str | None = None) -> CatalogItemReply: ...

    def blob_batch(self, type_name: str, paths: list[str]
                   ) -> AbstractContextManager[Iterator[tuple[BatchEntry, bytes]]]: ...

