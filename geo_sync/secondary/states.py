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
}
