"""Whether a failed sync was the item's fault or the whole site's.

When the primary is unreachable or the mirror's disk is full, every item fails
for the same reason; backing each one off on its own would keep the site idle
long after the cause is gone (70 s after disk space was freed, in one outage).
Such rows are marked with what blocked them and retried as soon as that
dependency answers again; only an item's own failures back it off.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from geo_sync.errors import TransientError
from geo_sync.paths import TEMP_PREFIX

PRIMARY = "primary"
STORAGE = "storage"
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}
_STORAGE_TEXT = ("No space left on device", "Disk quota exceeded", "Read-only file system")
# How the client and libgit2 word "could not talk to the primary at all".
_PRIMARY_TEXT = ("primary unreachable", "transfer from primary failed",
                 "transfer interrupted", "failed to connect", "Connection refused",
                 "connection refused", "timed out", "failed to send request",
                 "failed to resolve address")


def blocker(error: BaseException) -> str | None:
    """``STORAGE``, ``PRIMARY`` or None (the item's own failure)."""
    message = str(error)
    if isinstance(error, OSError) and error.errno in _STORAGE_ERRNOS:
        return STORAGE
    if any(text in message for text in _STORAGE_TEXT):
        return STORAGE
    if isinstance(error, TransientError | OSError) and any(
            text in message for text in _PRIMARY_TEXT):
        return PRIMARY
    return None


def storage_writable(dirs: list[Path]) -> bool:
    """Can each of ``dirs`` (the mirror's storage per type, perhaps separate mounts)
    take a small write again? A temp file in each, synced and removed."""
    return all(_writable(directory) for directory in dirs)


def _writable(directory: Path) -> bool:
    probe = directory / f"{TEMP_PREFIX}probe-{os.getpid()}"
    try:
        with probe.open("wb") as handle:
            handle.write(b"\0" * 65536)
            handle.flush()
            os.fsync(handle.fileno())
        return True
    except OSError:
        return False
    finally:
        probe.unlink(missing_ok=True)
