"""Blob download for artifacts and job logs: large chunks, Range, size and sha256 headers."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from stat import S_ISREG
from urllib.parse import quote

from sqlalchemy import Engine, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from geo_sync.errors import InvalidInput, MissingOnPrimary
from geo_sync.file_response import LargeChunkFileResponse
from geo_sync.paths import InsideRoot, resolve_inside
from geo_sync.primary.models import CatalogItem
from geo_sync.wire import (
    BATCH_INLINE_MAX,
    CHECKSUM_HEADER,
    RECORD_HEADER,
    SIZE_HEADER,
    BatchEntry,
    BatchStatus,
)
from replicators.base import Original
from replicators.type_map import original_for

#: Bytes of files read per trip to the thread pool while streaming a batch.
_READ_GROUP_BYTES = 4 * 1024 * 1024

_SHA256 = re.compile(r"[0-9a-f]{64}")


def _catalog_entry(engine: Engine, type_name: str, path: str
                   ) -> tuple[str | None, int | None, str | None]:
    with engine.connect() as conn:
        row = conn.execute(
            select(CatalogItem.record_id, CatalogItem.size, CatalogItem.checksum).where(
                CatalogItem.replicable_type == type_name, CatalogItem.path == path
            )
        ).first()
    return (row.record_id, row.size, row.checksum) if row else (None, None, None)


def blob_replicator(type_name: str) -> type[Original]:
    """The replicator of a type served as blobs; InvalidInput naming it otherwise."""
    replicator = original_for(type_name)
    if replicator.transport != "blob":
        raise InvalidInput(f"a {replicator.name} is fetched over {replicator.transport}, "
                           "not downloaded as a blob")
    return replicator


def _batch_catalog(engine: Engine, type_name: str, paths: list[str]
                   ) -> dict[str, tuple[str, int | None, str | None]]:
    """path -> (record id, size, checksum) of the catalogued ones among ``paths``: one
    query for the whole batch."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(CatalogItem.path, CatalogItem.record_id, CatalogItem.size,
                   CatalogItem.checksum).where(CatalogItem.replicable_type == type_name,
                                               CatalogItem.path.in_(paths))).all()
    return {row.path: (row.record_id, row.size, row.checksum) for row in rows}


def _read_inline(full: Path) -> bytes | int | None:
    """The file's bytes; its size if it is too large to inline; None if it is not a
    regular file. Read at once, so the size sent is the size of the bytes sent even
    while the file is appended to."""
    try:
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # gone, a directory's parent missing, a symlink, a FIFO's peer
        return None
    with os.fdopen(fd, "rb") as handle:
        stat = os.fstat(handle.fileno())
        if not S_ISREG(stat.st_mode):
            return None
        if stat.st_size > BATCH_INLINE_MAX:
            return stat.st_size
        data = handle.read(BATCH_INLINE_MAX + 1)
    return len(data) if len(data) > BATCH_INLINE_MAX else data


def _read_group(inside: InsideRoot, paths: list[str],
                catalog: dict[str, tuple[str, int | None, str | None]]) -> tuple[bytes, int]:
    """Header lines and bytes of the first of ``paths``, in order, up to about
    _READ_GROUP_BYTES; and how many paths that covered."""
    parts: list[bytes] = []
    taken = size_so_far = 0
    for path in paths:
        if size_so_far >= _READ_GROUP_BYTES:
            break
        taken += 1
        try:
            content = _read_inline(inside(path))
        except InvalidInput:  # a symlink out of the storage root: not an item
            content = None
        record_id, size, checksum = catalog.get(path, (None, None, None))
        if content is None:
            parts.append(BatchEntry(path, BatchStatus.MISSING).header_line())
        elif isinstance(content, int):
            parts.append(BatchEntry(path, BatchStatus.TOO_LARGE, content).header_line())
        else:
            sha = checksum if (checksum and size == len(content)
                               and _SHA256.fullmatch(checksum)) else None
            entry = BatchEntry(path, BatchStatus.OK, len(content), sha, record_id)
            parts.append(entry.header_line())
            parts.append(content)
            size_so_far += len(content)
    return b"".join(parts), taken


def download_batch(replicator: type[Original], paths: list[str], engine: Engine,
                   storage_root: Path) -> Response:
    """``POST /blob-batch/{type}``: every path's entry and bytes in one response, with
    the catalog's checksums from one query; see ``wire.BatchEntry``."""
    root = storage_root / replicator.storage_dir

    async def body() -> AsyncIterator[bytes]:
        catalog = await run_in_threadpool(_batch_catalog, engine, replicator.name, paths)
        inside = await run_in_threadpool(InsideRoot, root)  # directories resolved once
        rest = paths
        while rest:  # a few MiB per trip to the thread pool, not one trip per file
            chunk, taken = await run_in_threadpool(_read_group, inside, rest, catalog)
            rest = rest[taken:]
            yield chunk

    return StreamingResponse(body(), media_type="application/octet-stream")


async def download(request: Request, engine: Engine, storage_root: Path) -> Response:
    """GET/HEAD ``/blobs/{type}/{path}``: the file as it is now, or 404 missing on primary."""
    replicator = blob_replicator(request.path_params["type"])
    relpath = replicator.validate_path(request.path_params["path"])
    full = resolve_inside(storage_root / replicator.storage_dir, relpath)
    try:
        stat = full.stat()
    except (FileNotFoundError, NotADirectoryError):
        stat = None
    if stat is None or not S_ISREG(stat.st_mode):
        raise MissingOnPrimary(f"{replicator.name} {relpath} is missing on primary")
    record_id, size, checksum = await run_in_threadpool(_catalog_entry, engine,
                                                        replicator.name, relpath)
    headers = {SIZE_HEADER: str(stat.st_size)}
    if record_id is not None:
        # Percent-encoded: a record id may hold any character, a header value only Latin-1.
        headers[RECORD_HEADER] = quote(record_id, safe="")
    # The catalog checksum describes the file only if the file is still that size. A
    # value that is not one (a row from before the rules were whole-value) would be an
    # illegal header, and the server would drop the connection.
    if checksum and size == stat.st_size and _SHA256.fullmatch(checksum):
        headers[CHECKSUM_HEADER] = checksum
    return LargeChunkFileResponse(
        full,
        stat_result=stat,
        headers=headers,
        media_type="application/octet-stream",
    )
