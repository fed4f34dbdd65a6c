"""CI job logs: appended while the job runs, immutable once archived."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from replicators.base import FoundItem, KnownItem, Replicator, walk_files
from verification.checksums import sha256_file


class JobLogReplicator(Replicator):
    """``job_logs/<relative path>``; appends transfer only the new bytes."""

    name: ClassVar[str] = "job_log"
    events: ClassVar[tuple[str, ...]] = ("created", "appended", "archived", "deleted")
    storage_dir: ClassVar[str] = "job_logs"

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
        if known.size is not None and found.size > known.size:
            return "appended"
        return "created"
