"""Exactly one active log cursor per secondary: a lease row renewed by its holder.

A second `secondary run` waits as a standby and takes over within one lease
period of the active one dying. The cursor's own compare-and-set on the stored
position means even two processes that both believe they lead cannot apply a
batch twice.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, or_, update

from geo_sync.db import utcnow, write_transaction
from geo_sync.tracking.models import Lease

CURSOR_LEASE = "log_cursor"


def acquire(engine: Engine, holder: str, ttl: float, name: str = CURSOR_LEASE) -> bool:
    """Take or renew the lease; True while ``holder`` holds it."""
    now = utcnow()
    with write_transaction(engine) as conn:
        result = conn.execute(
            update(Lease)
            .where(Lease.name == name,
                   or_(Lease.holder == holder, Lease.holder.is_(None), Lease.lease_until < now))
            .values(holder=holder, lease_until=now + timedelta(seconds=ttl))
        )
    return result.rowcount == 1


def release(engine: Engine, holder: str, name: str = CURSOR_LEASE) -> None:
    """Give the lease up at once so a standby need not wait for it to expire."""
    with write_transaction(engine) as conn:
        conn.execute(update(Lease).where(Lease.name == name, Lease.holder == holder)
                     .values(holder=None, lease_until=None))
