"""Bare git repositories: mutable refs, replicated by mirror fetch."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from geo_sync.errors import UnsafePath
from replicators.base import FoundItem, KnownItem, Replicator
from verification.checksums import repository_checksum


def is_bare_repository(path: Path) -> bool:
    """Cheap structural test for a bare repository directory."""
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()


class RepositoryReplicator(Replicator):
    """``repositories/<full path>.git``; checksum over HEAD and refs."""

    name: ClassVar[str] = "repository"
    events: ClassVar[tuple[str, ...]] = ("created", "updated", "renamed", "deleted")
    storage_dir: ClassVar[str] = "repositories"

    @classmethod
    def validate_path(cls, path: object, *, field: str = "path") -> str:
        valid = super().validate_path(path, field=field)
        if not valid.endswith(".git") or valid.rsplit("/", 1)[-1] == ".git":
            raise UnsafePath(f"repository {field} must end in .git: {valid!r}")
        return valid

    @classmethod
    def discover(cls, root: Path) -> Iterator[str]:
        for dirpath, dirnames, _ in os.walk(root):
            current = Path(dirpath)
            keep = []
            for name in sorted(dirnames):
                child = current / name
                if child.is_symlink():
                    continue
                if name.endswith(".git") and is_bare_repository(child):
                    yield child.relative_to(root).as_posix()
                elif not name.startswith("."):
                    keep.append(name)
            dirnames[:] = keep

    @classmethod
    def describe(cls, path: Path, relpath: str) -> FoundItem:
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        return FoundItem(path=relpath, size=size, checksum=repository_checksum(path))

    @classmethod
    def change_event(cls, known: KnownItem, found: FoundItem) -> str | None:
        return None if known.checksum == found.checksum else "updated"
