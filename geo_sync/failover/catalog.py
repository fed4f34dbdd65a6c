"""The promoted site's primary database: its catalog, built from the tracking DB.

Every copy that is synced becomes a catalog item with the size and checksum the old
primary published for it (the tracking DB's record); a verified copy is not hashed
again. A synced copy not yet verified goes in without a checksum, for the new
primary's checksummer to take. Nothing else is read from the mirror.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, insert, select

from geo_sync.db import make_engine, utcnow, write_transaction
from geo_sync.errors import ConfigError
from geo_sync.migrate import PRIMARY
from geo_sync.primary import site_state
from geo_sync.primary.models import CatalogItem
from geo_sync.tracking.states import SyncState, VerificationState
from replicators.type_map import REPLICATORS

PAGE = 5000
_VERIFIED = (VerificationState.SUCCEEDED.value, VerificationState.DISABLED.value)


@dataclass
class CatalogBuilt:
    """What went into the new catalog, per type."""

    items: dict[str, int] = field(default_factory=dict)
    without_checksum: dict[str, int] = field(default_factory=dict)
    bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"items": self.items, "without_checksum": self.without_checksum,
                "bytes": self.bytes}


def prepare_database(url: str) -> Engine:
    """Migrate the new primary database; refuse one that already holds a catalog."""
    PRIMARY.upgrade_url(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        held = conn.execute(select(func.count()).select_from(CatalogItem)).scalar_one()
    if held:
        engine.dispose()
        raise ConfigError(f"the database for the new primary already holds {held} catalog "
                          "items", hint="give --database-url an empty database; nothing was "
                          "changed")
    return engine


def build_catalog(tracking: Engine, primary: Engine, epoch: int) -> CatalogBuilt:
    """Fill ``primary``'s catalog from ``tracking``'s registries and set its epoch."""
    built = CatalogBuilt()
    now = utcnow()
    for replicator in REPLICATORS.values():
        model = replicator.registry_table
        after, count, unchecked = 0, 0, 0
        while True:
            with tracking.connect() as conn:
                rows = conn.execute(select(
                    model.id, model.record_id, model.path, model.expected_size,
                    model.expected_checksum, model.verification_expected,
                    model.verification_state, model.verified_at)
                    .where(model.id > after, model.tombstone.is_(False),
                           model.state == SyncState.SYNCED.value)
                    .order_by(model.id).limit(PAGE)).all()
            if not rows:
                break
            after = rows[-1].id
            values = []
            for row in rows:
                # An event without a checksum (the primary took it later) leaves the
                # one verification compared with.
                checksum = row.expected_checksum or row.verification_expected
                verified = row.verification_state in _VERIFIED and checksum
                unchecked += 0 if verified else 1
                built.bytes += row.expected_size or 0
                values.append({"replicable_type": replicator.name,
                               "record_id": row.record_id, "path": row.path,
                               "size": row.expected_size,
                               "checksum": checksum if verified else None,
                               "checksum_at": (row.verified_at or now) if verified else None,
                               "updated_at": now})
            with write_transaction(primary) as conn:
                conn.execute(insert(CatalogItem), values)
            count += len(rows)
        built.items[replicator.name] = count
        built.without_checksum[replicator.name] = unchecked
    with write_transaction(primary) as conn:
        site_state.set_epoch(conn, epoch)
    return built
