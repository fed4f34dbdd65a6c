"""The epoch a secondary follows (``geo_epoch``, t0007): fencing's memory on this side.

A site answering below ``epoch`` is an old primary that another was promoted over;
the client refuses it (``SplitBrain``). Raised only ever, by the cursor when the
primary answers with a higher one, and by `repoint`/`promote`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select, update

from geo_sync.db import utcnow
from geo_sync.tracking.models import EpochRow


@dataclass(frozen=True)
class Followed:
    epoch: int
    primary_url: str | None
    promoted_at: datetime | None


def read(conn: Connection) -> Followed:
    row = conn.execute(select(EpochRow.epoch, EpochRow.primary_url, EpochRow.promoted_at)
                       .where(EpochRow.id == 1)).first()
    if row is None:
        return Followed(0, None, None)
    return Followed(int(row.epoch), row.primary_url, row.promoted_at)


def raise_to(conn: Connection, epoch: int, primary_url: str) -> bool:
    """Record ``epoch`` if it is higher than the one followed; True if it was."""
    return bool(conn.execute(update(EpochRow).where(EpochRow.id == 1, EpochRow.epoch < epoch)
                             .values(epoch=epoch, primary_url=primary_url,
                                     seen_at=utcnow())).rowcount)


def mark_promoted(conn: Connection, epoch: int, url: str) -> None:
    conn.execute(update(EpochRow).where(EpochRow.id == 1).values(
        epoch=epoch, primary_url=url, seen_at=utcnow(), promoted_at=utcnow()))
