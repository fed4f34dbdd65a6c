"""Primary database schema: the event log, the catalog and registered secondaries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from geo_sync.db import UTCDateTime

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base of the primary database."""


class Event(Base):
    """One change on the primary. ``txid`` is the writing transaction (PostgreSQL only)."""

    __tablename__ = "geo_events"
    # SQLite must never reuse an id after pruning (migration 0003).
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    txid: Mapped[int | None] = mapped_column(BigInteger, index=True)
    replicable_type: Mapped[str] = mapped_column(String(32))
    event: Mapped[str] = mapped_column(String(32))
    record_id: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class CatalogItem(Base):
    """One replicable item that exists on the primary right now."""

    __tablename__ = "geo_catalog"
    __table_args__ = (
        UniqueConstraint("replicable_type", "record_id", name="uq_geo_catalog_record"),
        UniqueConstraint("replicable_type", "path", name="uq_geo_catalog_path"),
        Index("ix_geo_catalog_type_id", "replicable_type", "id"),
        # The checksummer's work (migration 0009): items without a checksum, and the
        # oldest checksums first.
        Index("ix_geo_catalog_checksum_missing", "id",
              postgresql_where=text("checksum IS NULL"), sqlite_where=text("checksum IS NULL")),
        Index("ix_geo_catalog_checksum_at", "checksum_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    replicable_type: Mapped[str] = mapped_column(String(32))
    record_id: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(BigInteger)
    checksum: Mapped[str | None] = mapped_column(String(64))
    checksum_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AcceptedEvent(Base):
    """A (type, event) pair the primary accepts for publishing. Both geo_publish() and
    the portable path consult this table; migrations fill it from the data types'
    classes (``geo_sync.primary.data_types``, migration 0005)."""

    __tablename__ = "geo_accepted_events"

    replicable_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    event: Mapped[str] = mapped_column(String(32), primary_key=True)


class Secondary(Base):
    """A registered secondary site: its credentials and how far it has read the log."""

    __tablename__ = "geo_secondaries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    secret: Mapped[str] = mapped_column(String(128))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    acked_cursor: Mapped[str | None] = mapped_column(Text)
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    backfill_required: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: It followed this site before an unclean shutdown and has not reached it at its
    #: epoch since (migration 0008, geo_sync.primary.site_state).
    epoch_unconfirmed: Mapped[bool] = mapped_column(Boolean, default=False)


class SiteRow(Base):
    """This site's own state (one row, id 1): its epoch, maintenance mode and whether
    it was demoted (fenced) in favour of ``new_primary_url`` (migration 0006)."""

    __tablename__ = "geo_site"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger, default=1)
    maintenance: Mapped[bool] = mapped_column(Boolean, default=False)
    maintenance_reason: Mapped[str | None] = mapped_column(Text)
    maintenance_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    demoted: Mapped[bool] = mapped_column(Boolean, default=False)
    new_primary_url: Mapped[str | None] = mapped_column(Text)
    changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Set while `primary serve` runs; found set at its start: an unclean shutdown (0008).
    serving_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Since when writes wait for the secondaries to confirm the epoch (0008).
    unconfirmed_since: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FenceTarget(Base):
    """An old primary a forced promotion could not fence, and what authenticates the
    fence there (the promoted secondary's credential on it); `primary serve` retries
    until it answers (``fenced_at``), see geo_sync.primary.fencing (migration 0008)."""

    __tablename__ = "geo_fence_targets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(Text)
    epoch: Mapped[int] = mapped_column(BigInteger)
    new_primary_url: Mapped[str] = mapped_column(Text)
    caller_name: Mapped[str] = mapped_column(String(64))
    caller_secret: Mapped[str] = mapped_column(String(128))
    ca_bundle: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    fenced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
