"""Verification's share of each scheduler pass: lapsed verifications back to pending,
re-verification paced so every copy comes round within the window, the cheap sweep
one chunk at a time, and due rows sent to the verifiers."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import Connection

from geo_sync.logging import get_logger
from geo_sync.secondary.bootstrap import Messaging
from geo_sync.secondary.runtime import Runtime
from geo_sync.settings import per_type
from geo_sync.tracking import pass_work, row_counts, verification_rows
from geo_sync.tracking.states import SyncState, VerificationState
from replicators.base import Copy
from replicators.type_map import copies
from verification.sweep import sweep_chunk

log = get_logger("scheduler")


@dataclass
class _Sweep:
    """Where the cheap sweep of one type is: ``after`` is None between sweeps."""

    after: int | None = None
    started: float | None = None


@dataclass
class _Pacing:
    """The continuous re-verification's pace for one type."""

    rows: int = 0
    last: float | None = None
    credit: float = 0.0


class VerificationEnqueuer:
    """Keeps per-type sweep and pacing state between passes."""

    def __init__(self, runtime: Runtime, messaging: Messaging) -> None:
        self.runtime = runtime
        self.messaging = messaging
        self._sweeps: dict[str, _Sweep] = {}
        self._pacing: dict[str, _Pacing] = {}

    def run_once(self, conn: Connection, counted: row_counts.Snapshot,
                 batches: dict[str, int]) -> dict[str, tuple[int, int]]:
        """One pass for every type: (rows sent to verification, suspicious copies) per
        type name. ``counted``: the registries' rows per (sync state, verification
        state), read at the start of the pass; a type with no row to act on is left
        out of the statement; ``batches``: rows per message, per type."""
        settings = self.runtime.settings
        asks = {}
        for replicator in copies():
            rows = counted.of(replicator.registry_table.__tablename__)  # type: ignore[attr-defined]
            in_state = Counter[str]()
            for (_, verification), number in rows.items():
                in_state[verification] += number
            budget = self._reverify_budget(replicator.name, verification_rows.walked(rows))
            due = rows[(SyncState.SYNCED.value, VerificationState.PENDING.value)]
            if in_state[VerificationState.STARTED] or in_state[VerificationState.DISABLED] \
                    or budget > 0 or due:
                asks[replicator.name] = pass_work.VerifyAsk(
                    replicator.registry_table,
                    per_type(settings.verification_concurrency, replicator.name,
                             replicator.default_verification_concurrency),
                    budget, started=bool(in_state[VerificationState.STARTED]),
                    disabled=bool(in_state[VerificationState.DISABLED]), due=bool(due))
        work = pass_work.take_verification_work(conn, list(asks.values()),
                                                settings.requeue_after_seconds,
                                                settings.reverify_after_seconds)
        result = {}
        for replicator in copies():
            to_verify = work.get(replicator.registry_table.__tablename__, [])  # type: ignore[attr-defined]
            batch = batches[replicator.name]
            for start in range(0, len(to_verify), batch):
                self.messaging.send_verify(replicator.name, to_verify[start:start + batch])
            result[replicator.name] = (len(to_verify), self._sweep(replicator))
        return result

    def _reverify_budget(self, name: str, walked: int) -> int:
        """How many copies to send to re-verification this pass: the verified rows
        (``walked``) over half the window, so each comes round between half the window
        and the window after its last verification, never in one burst."""
        settings = self.runtime.settings
        pace = self._pacing.setdefault(name, _Pacing())
        now = time.monotonic()
        pace.rows = walked
        if pace.last is not None:
            rate = pace.rows / (settings.reverify_after_seconds / 2)
            # Capped: a scheduler that was down does not make up for it in one go.
            pace.credit = min(pace.credit + rate * (now - pace.last), max(rate * 60, 1.0))
        pace.last = now
        budget = int(pace.credit)
        pace.credit -= budget
        return budget

    def _sweep(self, replicator: type[Copy]) -> int:
        """One chunk of the cheap sweep of ``replicator``'s verified copies (a new sweep
        starts every verification_sweep_interval_seconds); return how many were
        suspicious and sent to full verification."""
        settings = self.runtime.settings
        sweep = self._sweeps.setdefault(replicator.name, _Sweep())
        now = time.monotonic()
        if sweep.after is None:
            if sweep.started is not None and (
                    now - sweep.started < settings.verification_sweep_interval_seconds):
                return 0
            sweep.after, sweep.started = 0, now
        chunk = sweep_chunk(self.runtime.engine, replicator, settings.mirror_root,
                            sweep.after, settings.verification_sweep_chunk)
        sweep.after = chunk.next_after
        if chunk.suspicious:
            log.warning("verification_sweep_suspicious", replicable=replicator.name,
                        count=len(chunk.suspicious), ids=chunk.suspicious[:20])
        return len(chunk.suspicious)
