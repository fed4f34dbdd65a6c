"""The tracking rows' state machines as transition tables, and the only code that
applies them.

Each transition names the states it may start from and the state it leads to;
``apply_sync`` and ``apply_verification`` apply one as a single conditional
``UPDATE ... WHERE state IN (from) RETURNING``, never read-then-write, and
``sync_state_after`` does the same inside a batched UPDATE (events). Nothing else
writes a ``state`` or ``verification_state`` column.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection, String, case, literal, or_, update
from sqlalchemy.sql.dml import ReturningUpdate

from geo_sync.db import utcnow
from geo_sync.logging import get_logger

if TYPE_CHECKING:
    from geo_sync.tracking.models import Registry

log = get_logger("states")


class SyncState(StrEnum):
    """Where a registry row's copy stands."""

    PENDING = "pending"
    STARTED = "started"
    SYNCED = "synced"
    FAILED = "failed"


class VerificationState(StrEnum):
    """Whether a synced copy has been checked against the primary's checksum."""

    PENDING = "pending"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DISABLED = "disabled"


class Verdict(StrEnum):
    """What verifying one item concluded (the verification transition it took)."""

    SUCCEEDED = "succeeded"
    DISABLED = "disabled"
    MISMATCH = "mismatch"
    GAVE_UP = "gave_up"
    POSTPONED = "postponed"
    #: The row's generation moved while it was verified (an event, a resync): the copy
    #: looked at is no longer the row's, so its outcome counts for nothing.
    SUPERSEDED = "superseded"


Transition = tuple[frozenset[SyncState], SyncState]

_ANY = frozenset(SyncState)
P, S, OK, F = SyncState.PENDING, SyncState.STARTED, SyncState.SYNCED, SyncState.FAILED

SYNC_TRANSITIONS: dict[str, Transition] = {
    # A worker takes a pending row (the lease starts).
    "claim": (frozenset({P}), S),
    # The worker finished and no event arrived meanwhile (same generation).
    "succeed": (frozenset({S}), OK),
    # The worker finished but an event arrived meanwhile: sync again.
    "outdated": (frozenset({S}), P),
    # The worker failed; retry_at says when to try again.
    "fail": (frozenset({S}), F),
    # The retry time of a failed row has come.
    "retry": (frozenset({F}), P),
    # The lease ran out: the worker died or hung.
    "expire": (frozenset({S}), P),
    # The worker is shutting down before reaching this row of its batch.
    "release": (frozenset({S}), P),
    # An event or an operator's resync. A started row keeps its worker; the
    # generation bump sends it back to pending when that worker finishes.
    "event": (frozenset({P, OK, F}), P),
    "resync": (_ANY - {S}, P),
    # Verification found the copy differs from the primary: resync after a backoff.
    "mismatch": (frozenset({OK}), F),
}

VP, VS, VOK, VF, VD = (VerificationState.PENDING, VerificationState.STARTED,
                       VerificationState.SUCCEEDED, VerificationState.FAILED,
                       VerificationState.DISABLED)

VERIFICATION_TRANSITIONS: dict[str, tuple[frozenset[VerificationState], VerificationState]] = {
    # A verifier takes a synced row whose verification is due.
    "claim": (frozenset({VP}), VS),
    # The mirror's checksum equals the primary's.
    "succeed": (frozenset({VS}), VOK),
    # The primary has no checksum yet: nothing to compare with.
    "disable": (frozenset({VS}), VD),
    # Not verifiable now (a live log still growing, a sync in between): later.
    "postpone": (frozenset({VS}), VP),
    # Still different after the bounded number of resyncs: needs an operator.
    "give_up": (frozenset({VS}), VF),
    # A mismatch within the bound: the copy is resynced, then verified again.
    "mismatch": (frozenset({VS}), VP),
    # The verifier died (its lease ran out).
    "expire": (frozenset({VS}), VP),
    # Time to re-verify, or an operator asked for it.
    "reverify": (frozenset({VOK, VD, VF}), VP),
    # A new copy is coming or has just arrived (an event, a sync, a resync): whatever
    # was verified before no longer counts. A started verification's outcome is then
    # dropped, because its row's generation moved.
    "reset": (frozenset(VerificationState), VP),
    # A new copy arrived whose sha256, taken while it streamed, equals the primary's
    # catalog checksum: verified on arrival, no second fetch and hash.
    "arrive_verified": (frozenset(VerificationState), VOK),
}

def constant(value: str) -> ColumnElement[str]:
    """``value`` written into the SQL, not bound as a parameter: a partial index (see
    ``models.registry_indexes``) only serves a query whose WHERE clause shows it the
    same constants (SQLite never looks inside parameters; PostgreSQL stops doing so
    once it caches a generic plan)."""
    return literal(value, String(), literal_execute=True)


#: The state a row is created in.
NEW_ROW = {"state": SyncState.PENDING.value, "verification_state": VerificationState.PENDING.value}


def apply_sync(conn: Connection, model: Registry, name: str, where: Any,
               **values: Any) -> list[int]:
    """Apply sync transition ``name`` to the rows matching ``where`` that are in one of
    its source states; set ``values`` on them too. Returns the ids that moved."""
    ids = list(conn.execute(sync_update(model, name, where, **values)).scalars().all())
    if ids:
        log.debug("registry_transition", table=model.__tablename__,  # type: ignore[attr-defined]
                  transition=name, to=SYNC_TRANSITIONS[name][1].value, count=len(ids))
    return ids


def sync_update(model: Registry, name: str, where: Any, **values: Any
                ) -> ReturningUpdate[int]:
    """The conditional UPDATE of sync transition ``name`` (rows matching ``where`` that
    are in one of its source states), returning the ids that moved: executed alone by
    ``apply_sync``, or as one part of a scheduler pass's statement (``pass_work``).
    ``values`` may give ``updated_at`` (a bound parameter, for a statement built once)."""
    sources, target = SYNC_TRANSITIONS[name]
    return (update(model)
            .where(where, model.state.in_([s.value for s in sources]))
            .values(state=target.value, **{"updated_at": utcnow(), **values})
            .returning(model.id))


def sync_state_after(model: Registry, name: str) -> Any:
    """The ``state`` a row has after transition ``name`` where it applies, else its own:
    for a batched UPDATE that touches rows in any state (an event leaves a started row
    to its worker, whose finish sees the new generation)."""
    sources, target = SYNC_TRANSITIONS[name]
    # Equalities, not IN: an expanding IN cannot go into an executemany.
    return case((or_(*(model.state == s.value for s in sorted(sources))), target.value),
                else_=model.state)


def verification_state_after(model: Registry, name: str) -> Any:
    """The ``verification_state`` after transition ``name`` where it applies, else its
    own (see ``sync_state_after``); for setting it alongside a sync transition."""
    sources, target = VERIFICATION_TRANSITIONS[name]
    if sources == frozenset(VerificationState):
        return target.value
    return case((or_(*(model.verification_state == s.value for s in sorted(sources))),
                 target.value), else_=model.verification_state)


def apply_verification(conn: Connection, model: Registry, name: str, where: Any,
                       **values: Any) -> list[int]:
    """Apply verification transition ``name`` (see ``apply_sync``)."""
    ids = list(conn.execute(verification_update(model, name, where, **values))
               .scalars().all())
    if ids:
        log.debug("verification_transition", table=model.__tablename__,  # type: ignore[attr-defined]
                  transition=name, to=VERIFICATION_TRANSITIONS[name][1].value, count=len(ids))
    return ids


def verification_update(model: Registry, name: str, where: Any, **values: Any
                        ) -> ReturningUpdate[int]:
    """The conditional UPDATE of verification transition ``name`` (see ``sync_update``)."""
    sources, target = VERIFICATION_TRANSITIONS[name]
    return (update(model)
            .where(where, model.verification_state.in_([s.value for s in sources]))
            .values(verification_state=target.value, **{"updated_at": utcnow(), **values})
            .returning(model.id))
