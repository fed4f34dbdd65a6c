"""Per-item lag: how long a change committed on the primary took to become a verified
copy here, from the registry's ``change_committed_at`` and ``change_verified_at``.

Each question reads its own index, so the cost does not grow with the registry: the
window is a range scan of ``change_verified_at`` from its newest end, at most
``LAG_SAMPLE`` rows per type, the lag computed by the database; the oldest change not
yet verified is the first entry of a partial index on ``change_committed_at`` over
the rows not verified yet. Measured on 1,000,000 rows of one type on a busy shared
2-core machine, one summary: 40-65 ms (PostgreSQL 15) and 40 ms (SQLite) with a month
of verifications (3,500 in the hour's window); 95-190 ms with all million in the window
(bounded by the 10,000 sample); 4-12 ms with none verified yet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, select

from geo_sync.db import is_postgres
from geo_sync.tracking.models import Registry

#: Newest verified changes per type a summary looks at (percentiles over a sample).
LAG_SAMPLE = 10_000


@dataclass(frozen=True)
class LagSummary:
    """Commit-to-verified lag of one type's changes verified within the window."""

    window_seconds: float
    samples: int
    p50_seconds: float | None
    p99_seconds: float | None
    max_seconds: float | None
    #: The commit time of the oldest change not yet verified, and its age.
    oldest_unverified_at: str | None
    oldest_unverified_age_seconds: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def percentile(ordered: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty sequence."""
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def _lag_seconds(conn: Connection, model: Registry) -> ColumnElement[Any]:
    """Commit to verified, in seconds, computed by the database (converting two
    timestamps per row in Python would cost more than the query)."""
    verified, committed = model.change_verified_at, model.change_committed_at
    if is_postgres(conn.dialect):
        return func.extract("epoch", verified - committed)
    return (func.julianday(verified) - func.julianday(committed)) * 86400.0


def _verified_since(model: Registry, since: datetime) -> ColumnElement[bool]:
    return and_(model.change_verified_at > since, model.change_committed_at.is_not(None))


def lags_verified_since(conn: Connection, model: Registry, since: datetime,
                        limit: int = LAG_SAMPLE) -> list[tuple[int, datetime, float]]:
    """(row id, verified at, lag in seconds) of the changes first verified after
    ``since``, newest first, at most ``limit``."""
    rows = conn.execute(
        select(model.id, model.change_verified_at, _lag_seconds(conn, model))
        .where(_verified_since(model, since))
        .order_by(model.change_verified_at.desc()).limit(limit)).all()
    return [(row[0], row[1], max(0.0, float(row[2]))) for row in rows
            if row[1] is not None]


def window_lags(conn: Connection, model: Registry, since: datetime,
                limit: int = LAG_SAMPLE) -> list[float]:
    """Lags in seconds of the newest changes first verified after ``since``, sorted."""
    return sorted(max(0.0, float(lag)) for lag in conn.execute(
        select(_lag_seconds(conn, model)).where(_verified_since(model, since))
        .order_by(model.change_verified_at.desc()).limit(limit)).scalars())


def oldest_unverified(conn: Connection, model: Registry) -> datetime | None:
    """The commit time of the oldest change whose copy is not verified yet (a delete
    not yet applied counts: its row goes once it is)."""
    return conn.execute(
        select(model.change_committed_at)
        .where(model.change_verified_at.is_(None), model.change_committed_at.is_not(None))
        .order_by(model.change_committed_at).limit(1)).scalar()


def summary(conn: Connection, model: Registry, window_seconds: float, now: datetime
            ) -> LagSummary:
    """p50 / p99 / max over the window, and the oldest change not yet verified."""
    lags = window_lags(conn, model, now - timedelta(seconds=window_seconds))
    oldest = oldest_unverified(conn, model)

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return LagSummary(
        window_seconds, len(lags),
        rounded(percentile(lags, 0.5)) if lags else None,
        rounded(percentile(lags, 0.99)) if lags else None,
        rounded(lags[-1]) if lags else None,
        oldest.isoformat() if oldest else None,
        rounded(max(0.0, (now - oldest).total_seconds())) if oldest else None)
