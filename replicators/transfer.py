"""Atomic file writes for blobs: temp file in the destination directory, fsync,
check size and checksum, rename into place. Nothing half-written is ever visible
at a final path; a killed worker leaves at most a temp file (TEMP_PREFIX) that
the scheduler's janitor removes."""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote

import httpx

from geo_sync.errors import GeoSyncError, TransientError
from geo_sync.files import CHUNK
from geo_sync.paths import TEMP_PREFIX
from geo_sync.tracking.sync_rows import Claimed
from geo_sync.wire import CHECKSUM_HEADER, RECORD_HEADER, SIZE_HEADER


class IntegrityError(GeoSyncError):
    """Raised when transferred bytes do not match the size or checksum the primary stated."""

    retryable = True
    default_hint = "the transfer is retried; if it persists, verify the item on the primary"


def stream_into(response: httpx.Response, handle: BinaryIO, digest: hashlib._Hash | None
                ) -> int:
    """Copy a streamed response body into ``handle`` (hashing as it goes); return bytes."""
    written = 0
    try:
        for chunk in response.iter_raw(CHUNK):
            handle.write(chunk)
            if digest is not None:
                digest.update(chunk)
            written += len(chunk)
    except httpx.HTTPError as exc:
        raise TransientError(f"transfer interrupted after {written} bytes: {exc}") from None
    return written


def check_record(what: str, headers: Mapping[str, str], item: Claimed) -> None:
    """The primary says which record its bytes belong to: they must be ours. A path
    that now belongs to another record would otherwise be mirrored as ours."""
    stated = headers.get(RECORD_HEADER)
    if stated is not None and unquote(stated, errors="strict") != item.record_id:
        raise IntegrityError(f"{what}: the primary served record {unquote(stated)!r} at this "
                             f"path, not {item.record_id!r}")


def check_integrity(what: str, size: int, checksum: str, headers: Mapping[str, str],
                    item: Claimed, *, appendable: bool = False) -> bool:
    """Compare what we received with our own record of the item (its record id, and the
    size and checksum the event or catalog gave us) and with the primary's headers
    (a response's, or a batch entry's). True if the primary stated a checksum and the
    bytes matched it: the copy is then verified as it arrived.

    Our record comes first: the headers only describe whatever the primary served,
    which is not necessarily the item we asked for. An appendable item may have grown
    since its event, never shrunk."""
    check_record(what, headers, item)
    expected_size, expected_checksum = item.expected_size, item.expected_checksum
    if expected_size is not None and (size < expected_size
                                      or (size > expected_size and not appendable)):
        raise IntegrityError(f"{what}: received {size} bytes, our record says {expected_size}")
    if expected_checksum and expected_size == size and expected_checksum != checksum:
        raise IntegrityError(f"{what}: sha256 {checksum} differs from our record's "
                             f"{expected_checksum}")
    stated_size = headers.get(SIZE_HEADER)
    stated_checksum = headers.get(CHECKSUM_HEADER)
    if stated_size is not None and stated_size != str(size):
        raise IntegrityError(f"{what}: received {size} bytes, primary stated {stated_size[:40]}")
    if stated_checksum and stated_checksum != checksum:
        raise IntegrityError(f"{what}: sha256 {checksum} differs from primary's "
                             f"{stated_checksum[:64]}")
    return bool(stated_checksum)


def remove_path(path: Path) -> None:
    """Remove a file or directory so it vanishes from its final path in one step."""
    if path.is_dir() and not path.is_symlink():
        graveyard = path.parent / f"{TEMP_PREFIX}deleted-{uuid.uuid4().hex}"
        path.rename(graveyard)
        shutil.rmtree(graveyard, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
