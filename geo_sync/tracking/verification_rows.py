"""The verification side of the registries: claims and outcomes as conditional UPDATEs.

A verification claim is held until ``verification_retry_at`` (its lease); a row
is only verified while it is synced, and an outcome only counts if the row's
generation did not move meanwhile (a new event means a new copy).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update

from geo_sync.db import is_postgres, utcnow
from geo_sync.tracking import states, sync_rows
from geo_sync.tracking.backoff import retry_delay
from geo_sync.tracking.models import Registry
from geo_sync.tracking.states import SyncState, Verdict, VerificationState

DISABLED_FIRST_RETRY = 2.0


@dataclass(frozen=True)
class ToVerify:
    """A synced row a verifier holds, and the generation it was synced at."""

    id: int
    record_id: str
    path: str
    generation: int
    mismatch_count: int
    expected_size: int | None


def _verification(conn: Connection, model: Registry, name: str, where: Any,
                  **values: Any) -> list[int]:
    return states.apply_verification(conn, model, name, where, **values)


def _due(model: Registry, now: datetime) -> Any:
    # Constants, so that PostgreSQL walks ix_<registry>_verify_due in id order.
    return and_(model.state == states.constant(SyncState.SYNCED),
                model.verification_state == states.constant(VerificationState.PENDING),
                or_(model.verification_retry_at.is_(None), model.verification_retry_at <= now))


def take_for_verify(conn: Connection, model: Registry, limit: int, requeue_after: float,
                    now: datetime | None = None) -> list[int]:
    """Rows due for verification, at most ``limit`` in flight; not handed out again
    for ``requeue_after`` seconds (a lost message is re-sent after that). In id order,
    in one statement (the room left, the rows and their marking)."""
    now = now or utcnow()
    in_flight = select(func.count()).where(
        model.verification_state == states.constant(VerificationState.STARTED)
    ).scalar_subquery()
    due = (select(model.id).where(_due(model, now)).order_by(model.id)
           .limit(sync_rows.room_under(conn, limit, in_flight)))
    return sorted(conn.execute(
        update(model).where(sync_rows.among(conn, model, due), _due(model, now))
        .values(verification_retry_at=now + timedelta(seconds=requeue_after))
        .returning(model.id)).scalars().all())


def claim(conn: Connection, model: Registry, ids: Sequence[int], lease_seconds: float
          ) -> list[ToVerify]:
    """Take the rows among ``ids`` that are synced and pending verification."""
    if not ids:
        return []
    now = utcnow()
    target: Any = and_(model.id.in_(list(ids)), model.state == SyncState.SYNCED.value)
    if is_postgres(conn.dialect):
        target = model.id.in_(select(model.id).where(target).with_for_update(skip_locked=True)
                              .scalar_subquery())
    claimed = _verification(conn, model, "claim", target,
                            verification_retry_at=now + timedelta(seconds=lease_seconds))
    if not claimed:
        return []
    rows = conn.execute(select(model.id, model.record_id, model.path, model.generation,
                               model.mismatch_count, model.expected_size)
                        .where(model.id.in_(claimed)).order_by(model.id)).all()
    return [ToVerify(*row) for row in rows]


def _current(model: Registry, item: ToVerify) -> Any:
    return and_(model.id == item.id, model.generation == item.generation,
                model.state == SyncState.SYNCED.value)


def succeeded(conn: Connection, model: Registry, item: ToVerify, checksum: str,
              fingerprint: str | None = None) -> bool:
    """Record a match, and the copy's fingerprint the sweep compares against."""
    return bool(_verification(
        conn, model, "succeed", _current(model, item), verification_checksum=checksum,
        verification_expected=checksum, verification_error=None, verified_at=utcnow(),
        verification_retry_count=0, verification_retry_at=None, mismatch_count=0,
        verified_fingerprint=fingerprint,
        # The first verification of this change ends its lag; re-verifications do not.
        change_verified_at=func.coalesce(model.change_verified_at, utcnow())))


def disabled(conn: Connection, model: Registry, item: ToVerify, checksum: str | None, *,
             retry_cap: float) -> None:
    """The primary has no checksum yet (it takes one within seconds of a change): try
    again after a short backoff (2 s, doubling, at most ``retry_cap``), not a whole
    re-verification period later."""
    attempts = conn.execute(select(model.verification_retry_count)
                            .where(model.id == item.id)).scalar() or 0
    delay = min(DISABLED_FIRST_RETRY * 2 ** min(attempts, 20), retry_cap)
    _verification(conn, model, "disable", _current(model, item),
                  verification_checksum=checksum, verification_expected=None,
                  verification_error="the primary has no checksum for this item yet",
                  verified_at=utcnow(), verification_retry_count=attempts + 1,
                  verification_retry_at=utcnow() + timedelta(seconds=delay))


def retry_disabled(conn: Connection, model: Registry, now: datetime | None = None
                   ) -> list[int]:
    """Disabled rows whose short retry time has come are verified again."""
    return _verification(conn, model, "reverify",
                         and_(model.verification_state == VerificationState.DISABLED.value,
                              model.verification_retry_at <= (now or utcnow())),
                         verification_retry_at=None)


def postpone(conn: Connection, model: Registry, item: ToVerify, reason: str,
             seconds: float) -> None:
    """Not verifiable now (or the row changed while we looked): try again later."""
    _verification(conn, model, "postpone", model.id == item.id, verification_error=reason,
                  verification_retry_at=utcnow() + timedelta(seconds=seconds))


def mismatched(conn: Connection, model: Registry, item: ToVerify, *, mirror: str | None,
               primary: str, max_rounds: int, retry_cap: float) -> Verdict:
    """Record both checksums. Within ``max_rounds`` mark the sync failed so the copy is
    fetched again after a backoff (MISMATCH); past it, give up (GAVE_UP: needs
    attention). If the row's generation moved meanwhile (a newer sync is underway) the
    copy compared is not the row's any more: nothing is counted (SUPERSEDED)."""
    rounds = item.mismatch_count + 1
    error = (f"checksum mismatch (round {rounds} of {max_rounds}): mirror "
             f"{mirror or 'missing'}, primary {primary}")
    values = {"verification_checksum": mirror, "verification_expected": primary,
              "verified_at": utcnow(), "mismatch_count": rounds}
    if rounds >= max_rounds:
        if _verification(conn, model, "give_up", _current(model, item),
                         verification_error=f"{error}; gave up: needs attention "
                         "(check the item on the primary, then `geo-sync resync`)", **values):
            return Verdict.GAVE_UP
        return superseded(conn, model, item)
    if not _verification(conn, model, "mismatch", _current(model, item),
                         verification_error=error, verification_retry_at=None, **values):
        return superseded(conn, model, item)
    states.apply_sync(conn, model, "mismatch", model.id == item.id,
                      generation=model.generation + 1, last_error=error, retry_count=rounds,
                      retry_at=utcnow() + retry_delay(rounds, cap_seconds=retry_cap))
    return Verdict.MISMATCH


def superseded(conn: Connection, model: Registry, item: ToVerify) -> Verdict:
    """The row moved on while it was verified: the newer sync (whose event or resync
    already reset the verification to pending) decides. Only a claim still held at the
    same generation is released; a newer generation's claim is another verifier's."""
    _verification(conn, model, "postpone",
                  and_(model.id == item.id, model.generation == item.generation),
                  verification_error="superseded by a newer sync while verifying",
                  verification_retry_at=utcnow())
    return Verdict.SUPERSEDED


def request(conn: Connection, model: Registry, ids: Sequence[int]) -> list[int]:
    """An operator asked to verify these rows now (failed ones included)."""
    return _verification(conn, model, "reverify", model.id.in_(list(ids)),
                         verification_retry_at=None)


def suspect(conn: Connection, model: Registry, ids: Sequence[int]) -> list[int]:
    """The sweep saw these verified copies change: verify them again now."""
    return _verification(conn, model, "reverify",
                         and_(model.id.in_(list(ids)),
                              model.verification_state == VerificationState.SUCCEEDED.value),
                         verification_retry_at=None, verification_error=(
                             "changed on disk since it was verified (size, mtime, refs "
                             "or packs); verifying again"))


def release_expired(conn: Connection, model: Registry, now: datetime | None = None
                    ) -> list[int]:
    """Verifications whose lease ran out go back to pending."""
    return _verification(conn, model, "expire",
                         model.verification_retry_at < (now or utcnow()),
                         verification_retry_at=None)


def reverify_due(conn: Connection, model: Registry, window_seconds: float,
                 budget: int | None = None, now: datetime | None = None) -> list[int]:
    """Continuous re-verification: verified (or disabled) rows verified more than half
    the window ago go back to pending, oldest first, at most ``budget`` of them (the
    caller paces it so every copy is covered within ``window_seconds``)."""
    cutoff = (now or utcnow()) - timedelta(seconds=window_seconds / 2)
    due = and_(model.verification_state != VerificationState.FAILED.value,
               or_(model.verified_at.is_(None), model.verified_at < cutoff))
    if budget is not None:
        if budget <= 0:
            return []
        due = model.id.in_(_oldest_verified(conn, model, cutoff, budget))
    return _verification(conn, model, "reverify", due, verification_retry_at=None)


def _oldest_verified(conn: Connection, model: Registry, cutoff: datetime, limit: int
                     ) -> list[int]:
    """Up to ``limit`` verified (or disabled) rows last verified before ``cutoff`` (or
    never), oldest first: two range scans of ix_<registry>_verified_at that stop at
    ``limit``, whatever the table's size (one query with ``IS NULL OR <`` read it all)."""
    walked = model.verification_state.in_([
        states.constant(VerificationState.SUCCEEDED), states.constant(VerificationState.DISABLED)])
    ids = list(conn.execute(select(model.id).where(walked, model.verified_at.is_(None))
                            .order_by(model.id).limit(limit)).scalars().all())
    if len(ids) < limit:
        ids += conn.execute(select(model.id).where(walked, model.verified_at < cutoff)
                            .order_by(model.verified_at).limit(limit - len(ids))
                            ).scalars().all()
    return ids


def walked(counted: Counter[tuple[str, str]]) -> int:
    """Rows the continuous re-verification walks (verified or disabled), from a
    registry's counts (``row_counts``)."""
    states_walked = {VerificationState.SUCCEEDED.value, VerificationState.DISABLED.value}
    return sum(rows for (_, verification), rows in counted.items()
               if verification in states_walked)
