"""What every file-per-item data type shares: items are regular files found by walking
the type's root, described by size and sha256, and fetched whole as a streamed,
hashed download renamed into place once it checks out."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from geo_sync.files import atomic_file
from geo_sync.tracking.sync_rows import Claimed
from replicators.base import FoundItem, KnownItem, Replicator, SyncContext, walk_files
from replicators.checksums import sha256_file
from replicators.transfer import check_integrity, stream_into


class BlobReplicator(Replicator):
    """A data type whose items are single files (subclasses declare name, events,
    storage directory and registry)."""

    @classmethod
    def discover(cls, root: Path) -> Iterator[str]:
        return walk_files(root)

    @classmethod
    def describe(cls, path: Path, relpath: str) -> FoundItem:
        return FoundItem(path=relpath, size=path.stat().st_size, checksum=sha256_file(path))

    @classmethod
    def change_event(cls, known: KnownItem, found: FoundItem) -> str | None:
        if known.size == found.size and known.checksum in (None, found.checksum):
            return None
        return cls.created_event

    @classmethod
    def sync(cls, ctx: SyncContext, item: Claimed) -> None:
        """Download the whole blob, hashing while it streams, and rename it into place."""
        cls.download_whole(ctx, item, cls.destination(ctx, item))

    @classmethod
    def download_whole(cls, ctx: SyncContext, item: Claimed, dest: Path) -> None:
        digest = hashlib.sha256()
        with ctx.client.blob(cls.name, item.path) as response, atomic_file(dest) as handle:
            size = stream_into(response, handle, digest)
            check_integrity(f"{cls.name} {item.path}", size, digest.hexdigest(), response,
                            item, appendable=cls.appendable)
