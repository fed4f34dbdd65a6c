"""Registry state machines as transition tables.

Each transition names the states it may start from and the state it leads to;
``geo_sync.secondary.registry`` applies one as a single conditional
``UPDATE ... WHERE state IN (from) RETURNING``, never read-then-write.
"""

from __future__ import annotations

from enum import StrEnum


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
}
