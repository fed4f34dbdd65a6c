"""What every replicable data type declares, in three parts with one job each.

- ``DataType``: what the type is and how its items lie on disk (name, events, storage
  directory, registry table, path rules, finding items under a root). Both sides read it.
- ``Original``: the primary's side: what a stored item is (size, checksum) and which
  event tells a secondary how it changed. Only the primary's code calls it.
- ``Copy``: the secondary's side: bringing the mirror's copy up to the primary's,
  removing it, and checking it. Only the secondary's code (and verification) calls it.

A new data type is still one class: it subclasses ``Replicator`` (both sides) or
``BlobReplicator`` and is registered in ``replicators.type_map``; nothing else in
geo-sync switches on type names. The primary's code asks for a type's ``Original``
(``original_for``), the secondary's for its ``Copy`` (``copy_for``), so each side's code
is typed against its own half.
"""

from __future__ import annotations

import filecmp
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from geo_sync.errors import InvalidInput
from geo_sync.logging import get_logger
from geo_sync.paths import TEMP_PREFIX, InsideRoot, resolve_inside, validate_relpath
from geo_sync.tracking.models import Registry
from geo_sync.tracking.sync_rows import Claimed
from geo_sync.wire import PrimarySource
from replicators.transfer import remove_path

log = get_logger("replicator")


@dataclass(frozen=True)
class FoundItem:
    """An item as it exists on disk right now."""

    path: str
    size: int
    checksum: str


@dataclass(frozen=True)
class KnownItem:
    """An item as the catalog last recorded it."""

    path: str
    size: int | None
    checksum: str | None


@dataclass(frozen=True)
class Arrival:
    """A copy that was verified as it arrived: its sha256, taken while it streamed,
    equalled the primary's catalog checksum; ``fingerprint`` is the copy's as written.
    It is recorded as verified without fetching and hashing it a second time."""

    checksum: str
    fingerprint: str


#: What syncing one item of a group came to: verified on arrival, synced (to be
#: verified later), or the error.
SyncResult = Arrival | None | Exception


@dataclass(frozen=True)
class SyncContext:
    """What a replicator needs on the secondary: the primary, and where copies live."""

    client: PrimarySource
    mirror_root: Path
    #: Told right after an earlier copy was moved to its item's new path (a rename), so
    #: the secondary records where the copy is before the transfer that follows.
    copy_moved: Callable[[type[DataType], Claimed], None] | None = None

    def root(self, data_type: type[DataType]) -> Path:
        return self.mirror_root / data_type.storage_dir


class DataType(ABC):
    """What a replicable data type is and how its items lie on disk; both sides read it."""

    name: ClassVar[str]
    events: ClassVar[tuple[str, ...]]
    storage_dir: ClassVar[str]
    registry_table: ClassVar[Registry]
    #: The event that brings an item into existence or replaces it wholesale.
    created_event: ClassVar[str] = "created"
    #: Items grow by appends while live: a copy at the size it was synced to, behind a
    #: longer primary, is late rather than wrong.
    appendable: ClassVar[bool] = False
    #: How the primary serves an item: a file download ("blob") or git ("git").
    transport: ClassVar[str] = "blob"

    @classmethod
    def validate_path(cls, path: object, *, field: str = "path") -> str:
        """Refuse a path this type cannot store; return it unchanged if valid."""
        return validate_relpath(path, field=field)

    @classmethod
    def validate_event(cls, event: object) -> str:
        if event not in cls.events:
            raise InvalidInput(
                f"unknown event {event!r} for {cls.name}; expected one of {', '.join(cls.events)}"
            )
        assert isinstance(event, str)
        return event

    @classmethod
    def discover(cls, root: Path) -> Iterator[str]:
        """Yield the relative path of every item stored under ``root`` (the primary's
        storage or the mirror). Blobs are the regular files."""
        return walk_files(root)

    @classmethod
    def not_one_item(cls, path: Path) -> str | None:
        """Why ``path`` is not just one copy of this type (None if it is, or is gone).
        Blobs are files: a directory holds other items."""
        if path.is_dir() and not path.is_symlink():
            return "a directory, not one item's copy: it may hold other items"
        return None

    @classmethod
    def same_copy(cls, ours: Path, theirs: Path) -> bool:
        """Whether two stored copies of an item are equal (for comparing whole sites).
        Blobs compare byte for byte."""
        return filecmp.cmp(ours, theirs, shallow=False)


class Original(DataType):
    """The primary's side of a data type: what the item stored at a path is, and which
    event tells a secondary how it changed. Used by publishing, scans, hooks and the
    checksummer."""

    @classmethod
    @abstractmethod
    def describe(cls, path: Path, relpath: str) -> FoundItem:
        """Size and checksum of the item stored at ``path``."""

    @classmethod
    @abstractmethod
    def change_event(cls, known: KnownItem, found: FoundItem) -> str | None:
        """The event that tells a secondary how ``known`` became ``found``; None if equal."""


class Copy(DataType):
    """The secondary's side of a data type: make the mirror's copy equal to the
    primary's, remove it, and say what it is now (for verification). Used by the
    sync tasks, the scheduler and verification."""

    #: Defaults of the per-type secondary settings, for a type the config does not name:
    #: items in flight, rows per message, verifications in flight.
    default_concurrency: ClassVar[int] = 100
    default_batch_size: ClassVar[int] = 25
    default_verification_concurrency: ClassVar[int] = 20
    #: Items a worker hands to ``sync_many`` at once (1: one at a time).
    transfer_group: ClassVar[int] = 1

    @classmethod
    @abstractmethod
    def mirror_checksum(cls, path: Path) -> str:
        """The checksum of the mirror's copy at ``path`` (comparable with the primary's
        catalog checksum); raises OSError if it is gone."""

    @classmethod
    def fingerprint(cls, path: Path) -> str:
        """A cheap stand-in for the checksum: what a stat shows of the copy (size and
        mtime). Equal to the one recorded at the last verification means "probably
        unchanged"; different sends the copy to full verification. Raises OSError
        if the copy is gone."""
        return cls.fingerprint_of(path.stat())

    @classmethod
    def fingerprint_of(cls, stat: os.stat_result) -> str:
        """``fingerprint`` from a stat already taken of a file copy (blobs)."""
        return f"{stat.st_size}:{stat.st_mtime_ns}"

    @classmethod
    @abstractmethod
    def sync(cls, ctx: SyncContext, item: Claimed) -> Arrival | None:
        """Make the mirror's copy of ``item`` equal to the primary's; raise GeoSyncError.
        Returns an Arrival if the copy was verified on its way in."""

    @classmethod
    def sync_many(cls, ctx: SyncContext, items: list[Claimed]) -> dict[int, SyncResult]:
        """Sync a group of items (at most ``transfer_group``); each item's result by row
        id. One at a time here; a type that can move many at once overrides it."""
        return cls.sync_each(ctx, items)

    @classmethod
    def sync_each(cls, ctx: SyncContext, items: list[Claimed]) -> dict[int, SyncResult]:
        """``sync`` each item in turn, its error its own result."""
        results: dict[int, SyncResult] = {}
        for item in items:
            try:
                results[item.id] = cls.sync(ctx, item)
            except Exception as exc:  # one item's failure is its own
                results[item.id] = exc
        return results

    @classmethod
    def remove(cls, ctx: SyncContext, item: Claimed) -> None:
        """Delete the mirror's copy of ``item`` (after a delete event), and nothing else.

        The primary refuses a delete that names no catalogued item, but an event is
        input from the network: whatever is at the path must look like one copy of
        this type before it goes, or it stays and the refusal is logged."""
        root = ctx.root(cls)
        for relpath in {item.path, item.mirror_path or item.path}:
            target = resolve_inside(root, cls.validate_path(relpath))
            refusal = cls.not_one_item(target)
            if refusal is not None:
                log.warning("mirror_delete_refused", path=relpath, reason=refusal)
                continue
            remove_path(target)

    @classmethod
    def destination(cls, ctx: SyncContext, item: Claimed, inside: InsideRoot | None = None
                    ) -> Path:
        """Where ``item`` belongs on the mirror; moves an earlier copy there after a rename.
        ``inside``, for the items of one batch, resolves each directory once."""
        root = ctx.root(cls)
        resolve = inside or InsideRoot(root)
        dest = resolve(cls.validate_path(item.path))
        if item.mirror_path and item.mirror_path != item.path:
            previous = resolve(cls.validate_path(item.mirror_path, field="old path"),
                               field="old path")
            if previous.exists() and not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                previous.rename(dest)
                if ctx.copy_moved is not None:
                    ctx.copy_moved(cls, item)
        return dest


class Replicator(Original, Copy):
    """One replicable data type: its identity, its primary side and its secondary side,
    declared in one class (a subclass fills in both halves)."""


def walk_files(root: Path) -> Iterator[str]:
    """Relative paths of regular files under ``root``, skipping symlinks and our temp files."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not (Path(dirpath) / d).is_symlink())
        for filename in sorted(filenames):
            full = Path(dirpath) / filename
            if filename.startswith(TEMP_PREFIX) or full.is_symlink() or not full.is_file():
                continue
            yield full.relative_to(root).as_posix()
