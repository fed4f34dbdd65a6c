"""Atomic file writes for blobs: temp file in the destination directory, fsync,
check size and checksum, rename into place. Nothing half-written is ever visible
at a final path; a killed worker leaves at most a temp file (TEMP_PREFIX) that
the scheduler's janitor removes."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import httpx

from geo_sync.errors import GeoSyncError, TransientError
from geo_sync.paths import TEMP_PREFIX

CHUNK = 1024 * 1024
SIZE_HEADER = "x-geo-size"
CHECKSUM_HEADER = "x-geo-checksum-sha256"


class IntegrityError(GeoSyncError):
    """Raised when transferred bytes do not match the size or checksum the primary stated."""

    retryable = True
    default_hint = "the transfer is retried; if it persists, verify the item on the primary"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_file(dest: Path) -> Iterator[BinaryIO]:
    """Yield a temp file next to ``dest``; on success fsync and rename it over ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(dest)
        fsync_dir(dest.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


def check_integrity(what: str, size: int, checksum: str, response: httpx.Response,
                    expected_size: int | None, expected_checksum: str | None) -> None:
    """Compare what we wrote with the primary's headers, else with what the event said."""
    stated_size = response.headers.get(SIZE_HEADER)
    stated_checksum = response.headers.get(CHECKSUM_HEADER)
    if stated_size is not None and int(stated_size) != size:
        raise IntegrityError(f"{what}: received {size} bytes, primary stated {stated_size}")
    if stated_checksum and stated_checksum != checksum:
        raise IntegrityError(f"{what}: sha256 {checksum} differs from primary's {stated_checksum}")
    if (not stated_checksum and expected_checksum and expected_size == size
            and expected_checksum != checksum):
        raise IntegrityError(f"{what}: sha256 {checksum} differs from the event's "
                             f"{expected_checksum}")


def remove_path(path: Path) -> None:
    """Remove a file or directory so it vanishes from its final path in one step."""
    if path.is_dir() and not path.is_symlink():
        graveyard = path.parent / f"{TEMP_PREFIX}deleted-{uuid.uuid4().hex}"
        path.rename(graveyard)
        shutil.rmtree(graveyard, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
