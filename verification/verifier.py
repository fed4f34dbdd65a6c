"""Verifying mirror copies against the primary's checksums.

For each claimed row: checksum the mirror's copy, ask the primary for its
checksum, and if they differ ask the primary to re-take its checksum before
blaming the mirror (GitLab Geo loops on a stale primary checksum), and whether
the item changed in an event this secondary has not applied yet (a busy
repository pushed a moment ago is behind, not corrupt: blaming it would count
mismatch rounds towards "needs attention" and rebuild it from scratch). A real
mismatch records both checksums and sends the item back to sync after a
backoff, to be rebuilt rather than patched; after ``max_mismatch_rounds`` it
stops and is shown as needing attention. A copy whose row moved on while it was
verified (an event applied, a resync) is superseded: logged at info, nothing
counted, the row left to the newer sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import structlog
from sqlalchemy import Engine, select

from geo_sync.db import write_transaction
from geo_sync.errors import GeoSyncError, MissingOnPrimary
from geo_sync.logging import get_logger
from geo_sync.paths import resolve_inside
from geo_sync.settings import SecondarySettings
from geo_sync.tracking import verification_rows
from geo_sync.tracking.models import CursorRow
from geo_sync.tracking.states import Verdict
from geo_sync.wire import PrimarySource
from replicators.base import Copy
from replicators.type_map import copy_for

log = get_logger("verifier")
POSTPONE_SECONDS = 30.0


@dataclass(frozen=True)
class Outcome:
    """What verifying one item concluded."""

    verdict: Verdict
    mirror: str | None
    primary: str | None



class Runtime(Protocol):
    """What verifying needs of the secondary process that runs it."""

    @property
    def settings(self) -> SecondarySettings: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def client(self) -> PrimarySource: ...

def _mirror_copy(runtime: Runtime, replicator: type[Copy], path: str
                 ) -> tuple[str | None, int | None, str | None]:
    """Checksum, size and fingerprint of the mirror's copy; Nones if gone, unreadable or
    corrupt. The fingerprint is taken first: a change while we hash shows in the sweep."""
    try:
        full = resolve_inside(runtime.settings.mirror_root / replicator.storage_dir, path)
        fingerprint = replicator.fingerprint(full)
        return replicator.mirror_checksum(full), full.stat().st_size, fingerprint
    except (OSError, GeoSyncError) as exc:  # not the primary's fault
        log.warning("mirror_copy_unreadable", path=path, error=str(exc))
        return None, None, None


def _cursor(runtime: Runtime) -> str | None:
    with runtime.engine.connect() as conn:
        return conn.execute(select(CursorRow.cursor).where(CursorRow.id == 1)).scalar()


def verify_one(runtime: Runtime, replicator: type[Copy], item: verification_rows.ToVerify
               ) -> Outcome:
    """Verify one claimed row and record the outcome."""
    model, client, settings = replicator.registry_table, runtime.client, runtime.settings
    mirror, size, fingerprint = _mirror_copy(runtime, replicator, item.path)
    try:
        primary = client.catalog_item(replicator.name, item.path)
        if primary.checksum is not None and primary.checksum != mirror:
            primary = client.catalog_item(replicator.name, item.path, recompute=True,
                                          cursor=_cursor(runtime))
    except MissingOnPrimary:
        # Deleted on the primary: its delete event will come; nothing to blame.
        with write_transaction(runtime.engine) as conn:
            verification_rows.postpone(
                conn, model, item, "missing on the primary", POSTPONE_SECONDS)
        return Outcome(Verdict.POSTPONED, mirror, None)
    expected = primary.checksum
    behind = (replicator.appendable and size is not None and expected != mirror
              and size == item.expected_size and (primary.size or 0) > size)
    if behind:
        with write_transaction(runtime.engine) as conn:
            verification_rows.postpone(conn, model, item, "behind the primary; the next append "
                            "event catches up", POSTPONE_SECONDS)
        return Outcome(Verdict.POSTPONED, mirror, expected)
    if expected != mirror and primary.changed_after_cursor:
        # Changed on the primary after the last event applied here (a push a moment
        # ago): the copy is behind, not wrong, and that event will resync it.
        with write_transaction(runtime.engine) as conn:
            verification_rows.postpone(
                conn, model, item, "changed on the primary; the event on its "
                            "way resyncs it", POSTPONE_SECONDS)
        return Outcome(Verdict.POSTPONED, mirror, expected)
    with write_transaction(runtime.engine) as conn:
        if expected is None:
            verification_rows.disabled(conn, model, item, mirror,
                            retry_cap=settings.disabled_retry_cap_seconds)
            return Outcome(Verdict.DISABLED, mirror, None)
        if mirror == expected:
            verdict = (Verdict.SUCCEEDED if verification_rows.succeeded(
                conn, model, item, expected, fingerprint)
                else verification_rows.superseded(conn, model, item))
        else:
            verdict = verification_rows.mismatched(conn, model, item, mirror=mirror,
                                                   primary=expected,
                                                   max_rounds=settings.max_mismatch_rounds,
                                                   retry_cap=settings.retry_cap_seconds)
    if verdict is Verdict.SUPERSEDED:
        # A newer sync started while we compared (a push's event, a resync): the copy
        # we hashed is not the row's any more, so a difference says nothing about it.
        log.info("verification_superseded", path=item.path, generation=item.generation,
                 mirror=mirror, primary=expected)
    elif verdict is not Verdict.SUCCEEDED:
        log.warning("checksum_mismatch", path=item.path, mirror=mirror, primary=expected,
                    round=item.mismatch_count + 1, resync=verdict is Verdict.MISMATCH)
    return Outcome(verdict, mirror, expected)


def verify_items(runtime: Runtime, type_name: str, ids: list[int]) -> list[Outcome]:
    """Claim the verifiable rows among ``ids`` and verify each."""
    replicator = copy_for(type_name)
    with write_transaction(runtime.engine) as conn:
        claimed = verification_rows.claim(
            conn, replicator.registry_table, ids, runtime.settings.lease_seconds)
    outcomes = []
    for item in claimed:
        structlog.contextvars.bind_contextvars(replicable=type_name, record_id=item.record_id)
        try:
            outcomes.append(verify_one(runtime, replicator, item))
        except Exception as exc:  # the primary unreachable, say: try again later
            log.warning("verification_failed", path=item.path, error=str(exc))
            with write_transaction(runtime.engine) as conn:
                verification_rows.postpone(conn, replicator.registry_table, item, str(exc)[:500],
                                POSTPONE_SECONDS)
        finally:
            structlog.contextvars.clear_contextvars()
    return outcomes
