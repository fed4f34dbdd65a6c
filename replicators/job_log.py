"""CI job logs: appended while the job runs, immutable once archived."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar

from geo_sync.files import CHUNK, atomic_file
from geo_sync.tracking.models import Registry, registry_model
from geo_sync.tracking.sync_rows import Claimed
from geo_sync.wire import SIZE_HEADER
from replicators.base import Arrival, FoundItem, KnownItem, SyncContext, SyncResult
from replicators.blob import BlobCopy, BlobOriginal, BlobReplicator
from replicators.checksums import sha256_file
from replicators.transfer import (
    IntegrityError,
    check_record,
)

#: Bytes of the mirror's tail compared with the primary before appending.
OVERLAP = 4096


#: The tracking-DB table of this type (its name is only here and in old migrations).
JobLogRegistry = registry_model("job_log")


class JobLogOriginal(BlobOriginal):
    """The primary's side of a job log: a longer log than the catalog's was appended to."""

    @classmethod
    def change_event(cls, known: KnownItem, found: FoundItem) -> str | None:
        event = super().change_event(known, found)
        if event is not None and known.size is not None and found.size > known.size:
            return "appended"
        return event


class JobLogCopy(BlobCopy):
    """The secondary's side of a job log: appends fetch only the new bytes."""

    @classmethod
    def sync_many(cls, ctx: SyncContext, items: list[Claimed]) -> dict[int, SyncResult]:
        """Logs the mirror has a copy of are appended to one at a time; new ones (and
        rebuilds) come in one batch like any blob."""
        ours = ctx.root(cls)

        def has_copy(item: Claimed) -> bool:
            try:
                existing = ours / cls.validate_path(item.path)
                return existing.is_file() and existing.stat().st_size > 0
            except Exception:  # a bad path fails in the batch, with its own error
                return False
        appends = [item for item in items if not item.fresh and has_copy(item)]
        whole = [item for item in items if item not in appends]
        results = super().sync_many(ctx, whole) if whole else {}
        results.update(cls.sync_each(ctx, appends))
        return results

    @classmethod
    def sync(cls, ctx: SyncContext, item: Claimed) -> Arrival | None:
        dest = cls.destination(ctx, item)
        appendable = dest.is_file() and dest.stat().st_size > 0 and not item.fresh
        if not (appendable and cls._append(ctx, item, dest)):
            return cls.download_whole(ctx, item, dest)
        if item.expected_checksum and dest.stat().st_size == item.expected_size:
            actual = sha256_file(dest)
            if actual != item.expected_checksum:
                cls.download_whole(ctx, item, dest)
                if sha256_file(dest) != item.expected_checksum:
                    raise IntegrityError(
                        f"job log {item.path}: sha256 {actual} differs from the archived "
                        f"checksum {item.expected_checksum} even after a full download"
                    )
        return None

    @classmethod
    def _append(cls, ctx: SyncContext, item: Claimed, dest: Path) -> bool:
        """Fetch only the new bytes; False if the mirror's prefix no longer matches."""
        size = dest.stat().st_size
        overlap = min(OVERLAP, size)
        with dest.open("rb") as existing:
            existing.seek(size - overlap)
            tail = existing.read(overlap)
        with ctx.client.blob(cls.name, item.path, start=size - overlap) as response:
            if response.status_code == 416:
                return False  # the primary's log is now shorter than our tail
            check_record(f"{cls.name} {item.path}", response.headers, item)
            raw = response.headers.get(SIZE_HEADER, "")
            stated = int(raw) if raw.isascii() and raw.isdigit() else None
            if stated is not None and stated < size:
                return False
            iterator = response.iter_raw(CHUNK)
            head = b""
            for chunk in iterator:
                head += chunk
                if len(head) >= overlap:
                    break
            if head[:overlap] != tail:
                return False
            new_bytes = head[overlap:]
            if not new_bytes and stated == size:
                return True  # nothing appended since our copy
            with atomic_file(dest) as handle, dest.open("rb") as old:
                shutil.copyfileobj(old, handle, CHUNK)
                handle.write(new_bytes)
                for chunk in iterator:
                    handle.write(chunk)
                total = handle.tell()
                if item.expected_size is not None and total < item.expected_size:
                    # Still inside atomic_file: the short copy never reaches dest.
                    raise IntegrityError(f"{cls.name} {item.path}: {total} bytes after the "
                                         f"append, our record says {item.expected_size}")
        return True


class JobLogReplicator(JobLogOriginal, JobLogCopy, BlobReplicator):
    """``job_logs/<relative path>``; appends transfer only the new bytes.

    An append asks the primary for the bytes from ``size - OVERLAP``: the first
    OVERLAP bytes must equal the mirror's tail, else the mirror's prefix no
    longer matches (the log was rewritten) and the whole log is downloaded again.
    The append is written as a new file (copy of the old one plus the new bytes)
    renamed into place, so readers never see a half-appended tail. Once the log
    is archived its sha256 is checked over the whole file.
    """

    name: ClassVar[str] = "job_log"
    events: ClassVar[tuple[str, ...]] = ("created", "appended", "archived", "deleted")
    storage_dir: ClassVar[str] = "job_logs"
    default_concurrency: ClassVar[int] = 100
    default_batch_size: ClassVar[int] = 25
    default_verification_concurrency: ClassVar[int] = 20
    registry_table: ClassVar[Registry] = JobLogRegistry
    appendable: ClassVar[bool] = True
