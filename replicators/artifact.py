"""CI job artifacts: immutable blobs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from replicators.base import FoundItem, KnownItem, Replicator, walk_files
from verification.checksums import sha256_file


class ArtifactReplicator(Replicator):
    """``artifacts/<relative path>``; sha256 of the content."""

    name: ClassVar[str] = "artifact"
    events: ClassVar[tuple[str, ...]] = ("created", "deleted")
    storage_dir: ClassVar[str] = "artifacts"

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
