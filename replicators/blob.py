"""What every file-per-item data type shares: items are regular files found by walking
the type's root, described by size and sha256, and fetched whole as a streamed,
hashed download renamed into place once it checks out; small ones many to a request
(the primary's blob batch), made durable with one sync per group."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

from geo_sync.errors import MissingOnPrimary
from geo_sync.files import StagedFiles, atomic_file
from geo_sync.paths import InsideRoot
from geo_sync.tracking.sync_rows import Claimed
from geo_sync.wire import BatchEntry, BatchStatus
from replicators.base import (
    Arrival,
    Copy,
    FoundItem,
    KnownItem,
    Original,
    Replicator,
    SyncContext,
    SyncResult,
)
from replicators.checksums import sha256_file
from replicators.transfer import IntegrityError, check_integrity, stream_into


class BlobOriginal(Original):
    """The primary's side of a blob: size and sha256 of the file."""

    @classmethod
    def describe(cls, path: Path, relpath: str) -> FoundItem:
        return FoundItem(path=relpath, size=path.stat().st_size, checksum=sha256_file(path))

    @classmethod
    def change_event(cls, known: KnownItem, found: FoundItem) -> str | None:
        if known.size == found.size and known.checksum in (None, found.checksum):
            return None
        return cls.created_event


class BlobCopy(Copy):
    """The secondary's side of a blob: streamed, hashed downloads renamed into place,
    many small ones to a request."""

    transfer_group: ClassVar[int] = 200

    @classmethod
    def mirror_checksum(cls, path: Path) -> str:
        return sha256_file(path)

    @classmethod
    def sync(cls, ctx: SyncContext, item: Claimed) -> Arrival | None:
        """Download the whole blob, hashing while it streams, and rename it into place."""
        return cls.download_whole(ctx, item, cls.destination(ctx, item))

    @classmethod
    def download_whole(cls, ctx: SyncContext, item: Claimed, dest: Path) -> Arrival | None:
        digest = hashlib.sha256()
        with ctx.client.blob(cls.name, item.path) as response, atomic_file(dest) as handle:
            size = stream_into(response, handle, digest)
            verified = check_integrity(f"{cls.name} {item.path}", size, digest.hexdigest(),
                                       response.headers, item, appendable=cls.appendable)
        return Arrival(digest.hexdigest(), cls.fingerprint(dest)) if verified else None

    @classmethod
    def sync_many(cls, ctx: SyncContext, items: list[Claimed]) -> dict[int, SyncResult]:
        """Fetch the group in one batch request, write every copy to a temp file, sync
        them together and rename them all into place. An item the batch cannot carry
        (too large) is downloaded on its own; a bad one (corrupt, short, not ours) fails
        alone; if the transfer breaks off, what arrived whole still lands."""
        results: dict[int, SyncResult] = {}
        dests: dict[int, Path] = {}
        inside = InsideRoot(ctx.root(cls))
        for item in items:
            try:
                dests[item.id] = cls.destination(ctx, item, inside)
            except Exception as exc:  # an unsafe path, say: this item's problem only
                results[item.id] = exc
        wanted = [item for item in items if item.id in dests]
        alone: list[Claimed] = []
        staged: list[tuple[Claimed, str, bool]] = []
        broken: Exception | None = None
        with StagedFiles() as files:
            try:
                cls._receive(ctx, wanted, dests, files, results, alone, staged)
            except Exception as exc:  # the transfer broke off: the rest is retried
                broken = exc
            try:
                landed = files.commit()
            except OSError as exc:
                landed = []
                results.update((item.id, exc) for item, _checksum, _verified in staged)
        for (item, checksum, verified), (_dest, stat) in zip(staged, landed, strict=False):
            results[item.id] = Arrival(checksum, cls.fingerprint_of(stat)) if verified else None
        for item in wanted:
            if item.id not in results and item not in alone:
                results[item.id] = broken or IntegrityError(
                    f"blob batch ended before {cls.name} {item.path}")
        results.update(cls.sync_each(ctx, alone))
        return results

    @classmethod
    def _receive(cls, ctx: SyncContext, wanted: list[Claimed], dests: dict[int, Path],
                 files: StagedFiles, results: dict[int, SyncResult], alone: list[Claimed],
                 staged: list[tuple[Claimed, str, bool]]) -> None:
        """Read the batch for ``wanted``: stage good entries, note bad and missing ones
        in ``results`` and those too large for a batch in ``alone``."""
        if not wanted:
            return
        with ctx.client.blob_batch(cls.name, [i.path for i in wanted]) as entries:
            for item, (entry, data) in zip(wanted, entries, strict=False):
                if entry.path != item.path:
                    raise IntegrityError(f"blob batch answered {entry.path!r} where "
                                         f"{item.path!r} was asked for")
                if entry.status == BatchStatus.OK:
                    outcome = cls._stage(item, entry, data, dests[item.id], files)
                    if isinstance(outcome, Exception):
                        results[item.id] = outcome
                    else:
                        staged.append(outcome)
                elif entry.status == BatchStatus.MISSING:
                    results[item.id] = MissingOnPrimary(
                        f"{cls.name} {item.path} is missing on primary")
                else:
                    alone.append(item)

    @classmethod
    def _stage(cls, item: Claimed, entry: BatchEntry, data: bytes, dest: Path,
               files: StagedFiles) -> tuple[Claimed, str, bool] | IntegrityError:
        """Check one batch entry's bytes against our record and the primary's, and
        stage them for ``dest``: (item, sha256, verified), or why not."""
        checksum = hashlib.sha256(data).hexdigest()
        try:
            verified = check_integrity(f"{cls.name} {item.path}", len(data), checksum,
                                       entry.headers(), item, appendable=cls.appendable)
        except IntegrityError as exc:
            return exc
        files.stage(dest, data)
        return item, checksum, verified


class BlobReplicator(BlobOriginal, BlobCopy, Replicator):
    """A data type whose items are single files (subclasses declare name, events,
    storage directory and registry table)."""
