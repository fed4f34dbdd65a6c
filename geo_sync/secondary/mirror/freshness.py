"""Whether the mirror's copy of an item may be served: the one place that decides.

A copy is servable when its registry row says it is the primary's current content,
verified: synced, verification succeeded for the change the row reflects, no event
applied since (an event sends the row back to pending), no rename pending, the item
selected by the applied selection, and the file on disk still the one that was
verified (its stat fingerprint equals the one recorded at verification). Events the
cursor has not applied yet are the primary's to tell (``pending.py``).

A copy that is not servable may still be the newest *verified* copy (its row went
back to pending for a newer change, but the bytes on disk are the ones verified
before): it is served, marked stale, only when the primary cannot be reached.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from stat import S_ISREG

from sqlalchemy import Connection, Executable, bindparam, select

from geo_sync.errors import InvalidInput
from geo_sync.paths import resolve_inside
from geo_sync.selection import Selection
from geo_sync.tracking.models import CursorRow
from geo_sync.tracking.states import SyncState, VerificationState
from replicators.base import Replicator


@dataclass(frozen=True)
class Copy:
    """What the mirror knows of one item: where its copy is, what it was verified as,
    and whether it may be served (``reason`` says why not)."""

    file: Path | None
    checksum: str | None
    size: int | None
    cursor: str | None
    servable: bool
    #: The bytes on disk are a verified copy (of this or an older change).
    verified: bool
    reason: str
    #: The CI system's id of the item, which the primary's events name it by.
    record_id: str | None = None
    #: A small file's bytes, read at the decision from the very file verified
    #: (``with_small_body``), and that file's stat; None: send it from the path.
    body: bytes | None = None
    stat: os.stat_result | None = None
    #: The stat fingerprint the copy was verified with.
    fingerprint: str | None = None


#: Files up to this size are read whole where the copy is decided, in the same
#: thread: one hop to a thread per request instead of four (open, read, close).
SMALL_BODY = 256 * 1024


@lru_cache(maxsize=8)
def _selection(text: str | None) -> Selection:
    """The applied selection, parsed once per stored text (keyed by the text itself,
    so a changed selection is a different key, never a stale answer)."""
    return Selection.from_json(text)


@lru_cache(maxsize=32)
def _statements(replicator: type[Replicator]) -> tuple[Executable, Executable]:
    """Built once per type (they run on every request): the cursor row joined with the
    item's registry row (the row's columns are NULL when there is none; ``state``
    never is otherwise), and the registry row alone."""
    model = replicator.registry_table
    columns = (model.state, model.verification_state, model.change_verified_at,
               model.tombstone, model.mirror_path, model.missing_on_primary,
               model.verified_fingerprint, model.verification_checksum,
               model.expected_size, model.record_id)
    at_path = model.path == bindparam("path")
    joined = (select(CursorRow.cursor, CursorRow.selection, *columns)
              .select_from(CursorRow).outerjoin(model, at_path).where(CursorRow.id == 1))
    return joined, select(*columns).where(at_path)


def servable_copy(conn: Connection, replicator: type[Replicator], path: str,
                  mirror_root: Path) -> Copy:
    """Decide from the tracking DB (and one stat of the copy) whether ``path`` may be
    served from the mirror."""
    # The cursor, the selection and the item's row in one prebuilt statement.
    both = conn.execute(_statements(replicator)[0], {"path": path}).first()
    if both is None:  # no cursor row yet (before the first backfill): the row alone
        cursor, selection = None, None
        row = conn.execute(_statements(replicator)[1], {"path": path}).first()
    else:
        cursor, selection = both.cursor, both.selection
        row = None if both.state is None else both
    nothing = Copy(None, None, None, cursor, False, False, "")
    if not _selection(selection).selects(replicator.name, path):
        return replace(nothing, reason="not selected on this secondary")
    if row is None or row.tombstone:
        return replace(nothing, reason="not on this secondary")
    file, fingerprint = _on_disk(replicator, mirror_root, row.mirror_path or path)
    if file is None:
        return replace(nothing, reason="no copy on disk")
    # The bytes on disk are the ones verified: no verification has failed since (a
    # mismatch fails it) and nothing has touched the file since it succeeded.
    verified = (row.verification_state != VerificationState.FAILED
                and row.verified_fingerprint is not None
                and row.verified_fingerprint == fingerprint)
    copy = Copy(file, row.verification_checksum, row.expected_size, cursor, False,
                verified, "", row.record_id, fingerprint=row.verified_fingerprint)
    refusals = (
        (row.state != SyncState.SYNCED, f"copy is {row.state}, a newer change is pending"),
        (row.missing_on_primary, "missing on primary"),
        (row.mirror_path not in (None, path), "rename pending"),
        (row.verification_state != VerificationState.SUCCEEDED
         or row.change_verified_at is None, "copy not verified yet"),
        (not verified, "copy changed on disk since it was verified"),
    )
    for refused, reason in refusals:
        if refused:
            return replace(copy, reason=reason)
    return replace(copy, servable=True, reason="synced and verified")


def _on_disk(replicator: type[Replicator], mirror_root: Path, where: str
             ) -> tuple[Path | None, str | None]:
    """The copy's file and stat fingerprint, or Nones when there is none."""
    try:
        file = resolve_inside(mirror_root / replicator.storage_dir, where)
        return file, replicator.fingerprint(file)
    except (InvalidInput, OSError):
        return None, None


def with_small_body(replicator: type[Replicator], copy: Copy) -> Copy:
    """``copy`` with its bytes when it is a servable regular file of at most
    SMALL_BODY bytes, read from an open descriptor that is checked, after the read,
    to be the file the path names and still the verified one (its fingerprint): a
    sync that replaces the file meanwhile is not served under the old checksum."""
    if not copy.servable or copy.file is None:
        return copy
    try:
        with copy.file.open("rb") as handle:
            stat = os.fstat(handle.fileno())
            if not S_ISREG(stat.st_mode) or stat.st_size > SMALL_BODY:
                return copy
            body = handle.read(stat.st_size + 1)
        fingerprint = replicator.fingerprint(copy.file)
        now = copy.file.stat()
    except OSError:
        return replace(copy, servable=False, reason="no copy on disk")
    if (len(body) != stat.st_size or fingerprint != copy.fingerprint
            or _identity(now) != _identity(stat)):
        return replace(copy, servable=False,
                       reason="copy changed on disk since it was verified")
    return replace(copy, body=body, stat=stat)


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns
