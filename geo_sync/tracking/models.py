"""Tracking database schema: the cursor, leases, and one registry table per data type."""

from __future__ import annotations

import re
from datetime import datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from geo_sync.db import UTCDateTime
from geo_sync.tracking.states import SyncState, VerificationState


class TrackingBase(DeclarativeBase):
    """Declarative base of the tracking database."""


class CursorRow(TrackingBase):
    """Where this secondary is in the primary's event log (a single row, id 1)."""

    __tablename__ = "geo_cursor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cursor: Mapped[str | None] = mapped_column(Text)
    last_event_id: Mapped[int | None] = mapped_column(BigInteger)
    last_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    events_applied: Mapped[int] = mapped_column(BigInteger, default=0)
    backfill_required: Mapped[bool] = mapped_column(Boolean, default=True)
    backfill_progress: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The selection the registries follow, as geo_sync.selection writes it (t0005).
    selection: Mapped[str | None] = mapped_column(Text)


class Lease(TrackingBase):
    """A named lease: which process is the active log cursor, until when."""

    __tablename__ = "geo_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WorkerRow(TrackingBase):
    """A worker process's heartbeat: alive while ``beat_at`` is recent, consuming while
    ``items_done`` grows. Removed when the process stops cleanly."""

    __tablename__ = "geo_workers"

    worker_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    hostname: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    items_done: Mapped[int] = mapped_column(BigInteger, default=0)
    last_item_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ReaderRow(TrackingBase):
    """A reader of the mirror server: a name and the sha256 of its token (t0006)."""

    __tablename__ = "geo_readers"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RegistryCount(TrackingBase):
    """A change to the number of rows of a registry in one (sync, verification) state
    pair, written by triggers (see ``geo_sync.tracking.row_counts``; t0004)."""

    __tablename__ = "geo_registry_counts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    registry_table: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    verification_state: Mapped[str] = mapped_column(String(16))
    rows: Mapped[int] = mapped_column(BigInteger)


def _partial(name: str, *columns: str, where: str) -> Index:
    """An index of the rows matching ``where`` only (both backends): a handful of rows
    among millions (failed, missing, in flight), found without a scan. A query only
    uses it if its WHERE clause implies ``where`` with the constants written out (see
    ``states.constant``)."""
    return Index(name, *columns, postgresql_where=text(where), sqlite_where=text(where))


#: Rows whose latest change is (not) verified yet: a partial index over each.
UNVERIFIED = "change_verified_at IS NULL"
VERIFIED = "change_verified_at IS NOT NULL"


class RegistryMixin:
    """The columns every registry has: sync state, lease, retries, verification."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    record_id: Mapped[str] = mapped_column(String(255), unique=True)
    path: Mapped[str] = mapped_column(Text)
    # Where the mirror's copy is now; differs from path while a rename is pending.
    mirror_path: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=SyncState.PENDING)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    tombstone: Mapped[bool] = mapped_column(Boolean, default=False)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    missing_on_primary: Mapped[bool] = mapped_column(Boolean, default=False)
    expected_size: Mapped[int | None] = mapped_column(BigInteger)
    expected_checksum: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Verification (used by verification/): the mirror's checksum against the primary's.
    verification_state: Mapped[str] = mapped_column(String(16),
                                                    default=VerificationState.PENDING)
    verification_checksum: Mapped[str | None] = mapped_column(String(64))
    verification_expected: Mapped[str | None] = mapped_column(String(64))
    verification_error: Mapped[str | None] = mapped_column(Text)
    verification_retry_count: Mapped[int] = mapped_column(Integer, default=0)
    verification_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    mismatch_count: Mapped[int] = mapped_column(Integer, default=0)
    # The copy's stat fingerprint when last verified, for the cheap sweep (t0002).
    verified_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # "primary" or "storage" when the last failure was the site's, not the item's (t0002).
    blocked_on: Mapped[str | None] = mapped_column(String(16))
    # Per-item lag (t0005): when the primary committed the change this row reflects
    # (its event's time, or the catalog's for a backfill), and when the copy of that
    # change was first synced and first verified. A new change clears the last two.
    change_committed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    change_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    change_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Index, ...]:
        name = cls.__tablename__  # type: ignore[attr-defined]
        return (
            Index(f"ix_{name}_state_id", "state", "id"),
            Index(f"ix_{name}_state_retry", "state", "retry_at"),
            Index(f"ix_{name}_state_lease", "state", "lease_until"),
            Index(f"ix_{name}_verification", "verification_state", "verification_retry_at"),
            # t0006: the mirror server finds a row by the path in the URL.
            Index(f"ix_{name}_path", "path"),
            # t0004: what the scheduler and status look for without reading every row.
            *registry_indexes(name),
            # Both partial, so that each query has exactly one index that fits it
            # (SQLite would otherwise answer "IS NULL" from the first, sorting).
            _partial(f"ix_{name}_change_verified", "change_verified_at", where=VERIFIED),
            _partial(f"ix_{name}_change_unverified", "change_committed_at",
                     where=UNVERIFIED),
        )


def registry_indexes(name: str) -> list[Index]:
    """The partial indexes of registry ``name`` added by t0004, one per question a
    scheduler pass or status asks (none holds a row an event creates: they cost the
    cursor nothing)."""
    return [
        _partial(f"ix_{name}_missing", "id", where="missing_on_primary"),
        _partial(f"ix_{name}_mismatched", "id", where="mismatch_count > 0"),
        # Rows handed to workers (in flight, or lost with a broker restart).
        _partial(f"ix_{name}_enqueued", "state", "enqueued_at",
                 where="enqueued_at IS NOT NULL"),
        # The continuous re-verification walks these, oldest first.
        _partial(f"ix_{name}_verified_at", "verified_at",
                 where="verification_state IN ('succeeded', 'disabled')"),
        # Never any in practice (verifying sets verified_at), but the walk must not
        # read the table to find that out.
        _partial(f"ix_{name}_unverified", "id", where="verified_at IS NULL AND "
                 "verification_state IN ('succeeded', 'disabled')"),
        _partial(f"ix_{name}_verify_due", "id",
                 where="state = 'synced' AND verification_state = 'pending'"),
        # Rows waiting for the primary or the storage to answer again (every pass asks).
        _partial(f"ix_{name}_blocked", "blocked_on", where="blocked_on IS NOT NULL"),
        # Status shows the latest errors of rows not synced.
        _partial(f"ix_{name}_errors", "updated_at",
                 where="last_error IS NOT NULL AND state <> 'synced'"),
    ]


Registry = type[RegistryMixin]

_TYPE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_REGISTRIES: dict[str, Registry] = {}


def registry_model(type_name: str) -> Registry:
    """The registry table of data type ``type_name``, ``geo_<type_name>_registry``: one
    row per item with the columns of RegistryMixin. A data type declares it with
    ``registry_table = registry_model(name)``; asking again gives the same class."""
    if not _TYPE_NAME.fullmatch(type_name):
        raise ValueError(f"a data type name is lower-case letters, digits and _: {type_name!r}")
    if type_name not in _REGISTRIES:
        class_name = "".join(part.title() for part in type_name.split("_")) + "Registry"
        _REGISTRIES[type_name] = cast(Registry, type(
            class_name, (RegistryMixin, TrackingBase),
            {"__tablename__": f"geo_{type_name}_registry", "__module__": __name__}))
    return _REGISTRIES[type_name]


class EpochRow(TrackingBase):
    """The highest primary epoch this secondary followed (one row, id 1; t0007), and
    when this site was promoted, if it was."""

    __tablename__ = "geo_epoch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    primary_url: Mapped[str | None] = mapped_column(Text)
    seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    promoted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
