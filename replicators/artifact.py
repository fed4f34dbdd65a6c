"""CI job artifacts: immutable blobs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from geo_sync.files import atomic_file
from geo_sync.tracking.models import Registry, registry_model
from geo_sync.tracking.sync_rows import Claimed
from replicators.base import FoundItem, KnownItem, Replicator, SyncContext, walk_files
from replicators.checksums import sha256_file
from replicators.transfer import check_integrity, stream_into

#: The tracking-DB table of this type (its name is only here and in old migrations).
ArtifactRegistry = registry_model("artifact")


class ArtifactReplicator(Replicator):
    """``artifacts/<relative path>``; sha256 of the content."""

    name: ClassVar[str] = "artifact"
    events: ClassVar[tuple[str, ...]] = ("created", "deleted")
    storage_dir: ClassVar[str] = "artifacts"
    default_concurrency: ClassVar[int] = 200
    default_batch_size: ClassVar[int] = 25
    default_verification_concurrency: ClassVar[int] = 20
    registry: ClassVar[Registry] = ArtifactRegistry

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
        return "created"

    @classmethod
    def sync(cls, ctx: SyncContext, item: Claimed) -> None:
        """Download the whole blob, hashing while it streams, and rename it into place."""
        dest = cls.destination(ctx, item)
        digest = hashlib.sha256()
        with ctx.client.blob(cls.name, item.path) as response, atomic_file(dest) as handle:
            size = stream_into(response, handle, digest)
            check_integrity(f"{cls.name} {item.path}", size, digest.hexdigest(), response,
                            item)
