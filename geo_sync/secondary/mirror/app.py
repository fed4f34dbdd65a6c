"""The mirror server's routes: git upload-pack, artifact and job log downloads, health.

Each request is decided once (``freshness.servable_copy``, then the primary's word
on events the cursor has not applied: one shared ask, ``pending.py``, and a question
about the item itself only when a pending event names it): served from the mirror, proxied to the
primary, or, with the primary unreachable, served from the newest verified copy
marked ``X-Geo-Stale: true`` (or refused, ``serve_stale = false``).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.utils import formatdate
from enum import StrEnum
from pathlib import Path
from stat import S_ISREG

import anyio
import httpx
from sqlalchemy import Engine, select
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from geo_sync.errors import GeoSyncError, InvalidInput
from geo_sync.file_response import LargeChunkFileResponse
from geo_sync.files import CHUNK
from geo_sync.git_http_backend import is_push, run_upload_pack, split_upload_pack
from geo_sync.logging import get_logger
from geo_sync.metrics import MIRROR_REQUESTS
from geo_sync.secondary.mirror.access import Readers, refusal
from geo_sync.secondary.mirror.freshness import Copy, servable_copy, with_small_body
from geo_sync.secondary.mirror.upstream import (
    PrimaryDown,
    ProxiedResponse,
    Upstream,
    Verdict,
)
from geo_sync.settings import SecondarySettings
from geo_sync.tracking.models import CursorRow
from geo_sync.wire import CHECKSUM_HEADER, SIZE_HEADER, error_status
from replicators.base import Replicator
from replicators.type_map import REPLICATORS, served_over_git

log = get_logger("mirror")

SERVED_BY = "X-Geo-Served-By"
STALE = "X-Geo-Stale"
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: Request headers passed on to the primary when proxying.
_FORWARDED = ("range", "if-range", "git-protocol", "content-type", "content-encoding",
              "content-length", "accept", "accept-encoding")


class Route_(StrEnum):
    """Where one request is answered from."""

    MIRROR = "mirror"
    PRIMARY = "primary"
    STALE = "stale"
    REFUSE = "refuse"
    #: A live job log: the mirror's bytes, then the primary's.
    STITCHED = "mirror+primary"


class Mirror:
    """The state the routes share: settings, tracking DB, readers, the primary."""

    def __init__(self, settings: SecondarySettings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.readers = Readers(engine, settings.mirror.allow_anonymous)
        self.upstream = Upstream(settings)
        self.push_url = (settings.mirror.push_url or settings.primary_url).rstrip("/")
        #: Decide on the event loop itself: on SQLite the decision is a local read of
        #: well under a millisecond, cheaper than the trip to a worker thread and back
        #: (a queue put, a thread wake-up, a wake-up of the loop: measured as much CPU
        #: as the decision itself). On PostgreSQL the query waits on the network, and
        #: the loop must serve the other connections meanwhile: a thread.
        self.decide_inline = engine.dialect.name == "sqlite"

    # -- deciding ---------------------------------------------------------------

    def _local(self, replicator: type[Replicator], path: str, small_body: bool) -> Copy:
        with self.engine.connect() as conn:
            copy = servable_copy(conn, replicator, path, self.settings.mirror_root)
        return with_small_body(replicator, copy) if small_body else copy

    async def decide(self, replicator: type[Replicator], path: str) -> tuple[Route_, Copy, str]:
        """Where to answer a request for ``path`` from, the copy, and why."""
        route, copy, reason, _size = await self._decide(replicator, path)
        return route, copy, reason

    async def _decide(self, replicator: type[Replicator], path: str,
                      small_body: bool = False) -> tuple[Route_, Copy, str, int | None]:
        """As ``decide``, with the primary's size of the item when it was asked;
        ``small_body``: read a small copy's bytes in the same trip to a thread."""
        copy = (self._local(replicator, path, small_body) if self.decide_inline
                else await run_in_threadpool(self._local, replicator, path, small_body))
        if not copy.servable:
            return (*await self._unservable(copy), None)
        if not self.settings.mirror.confirm_with_primary:
            return Route_.MIRROR, copy, copy.reason, None
        pending = await self.upstream.pending(copy.cursor)
        if pending.unreachable:
            return (*self._without_primary(copy, pending.unreachable), None)
        if not pending.names(replicator.name, copy.record_id, path):
            return Route_.MIRROR, copy, copy.reason, None
        return await self._confirm(replicator, path, copy)

    async def _confirm(self, replicator: type[Replicator], path: str, copy: Copy
                       ) -> tuple[Route_, Copy, str, int | None]:
        """A pending event may have changed the item: ask the primary about it."""
        said = await self.upstream.confirm(replicator.name, path, copy.cursor, copy.checksum)
        if said.verdict is Verdict.CURRENT:
            return Route_.MIRROR, copy, copy.reason, said.size
        if said.verdict is Verdict.CHANGED:
            return Route_.PRIMARY, copy, said.reason, said.size
        return (*self._without_primary(copy, said.reason), None)

    async def _unservable(self, copy: Copy) -> tuple[Route_, Copy, str]:
        if down := self.upstream.down:
            return self._without_primary(copy, down)
        return Route_.PRIMARY, copy, copy.reason

    def _without_primary(self, copy: Copy, reason: str) -> tuple[Route_, Copy, str]:
        if copy.verified and self.settings.mirror.serve_stale:
            return Route_.STALE, copy, f"primary unreachable ({reason})"
        why = ("no verified copy here" if not copy.verified
               else "serve_stale is off")
        return Route_.REFUSE, copy, f"primary unreachable ({reason}) and {why}"

    def _count(self, replicator: type[Replicator], route: Route_) -> None:
        MIRROR_REQUESTS.labels(replicator.name, route.value).inc()

    # -- blobs --------------------------------------------------------------------

    async def blob(self, request: Request, replicator: type[Replicator]
                   ) -> Response | ProxiedResponse | StitchedResponse:
        if (refused := await self._refuse_reader(request)) is not None:
            return refused
        path = replicator.validate_path(request.path_params["path"])
        route, copy, reason, primary_size = await self._decide(
            replicator, path, small_body="range" not in request.headers)
        if route is Route_.PRIMARY:
            try:
                if (replicator.appendable and copy.servable and primary_size
                        and request.method == "GET" and "range" not in request.headers):
                    stitched = await self._stitch(replicator, path, copy, primary_size)
                    if stitched is not None:
                        return stitched
                return await self._proxy(request, Upstream.blob_url(replicator.name, path),
                                         replicator)
            except PrimaryDown as exc:
                route, copy, reason = self._without_primary(copy, str(exc))
        self._count(replicator, route)
        if route is Route_.REFUSE:
            return _unavailable(reason)
        return self._file(copy, stale=route is Route_.STALE, head=request.method == "HEAD")

    def _file(self, copy: Copy, *, stale: bool, head: bool) -> Response:
        assert copy.file is not None
        stat = copy.stat or copy.file.stat()
        if not S_ISREG(stat.st_mode):
            return _unavailable("the mirror's copy is not a regular file")
        headers = {SERVED_BY: "mirror", SIZE_HEADER: str(stat.st_size)}
        if copy.checksum and _SHA256.fullmatch(copy.checksum):
            headers[CHECKSUM_HEADER] = copy.checksum
            headers["etag"] = f'"{copy.checksum}"'
        if stale:
            headers[STALE] = "true"
        if copy.body is not None:
            # Read already, from the file verified: the headers FileResponse sends.
            headers.update({"content-length": str(stat.st_size), "accept-ranges": "bytes",
                            "last-modified": formatdate(stat.st_mtime, usegmt=True)})
            headers.setdefault("etag", _stat_etag(stat))
            return Response(b"" if head else copy.body, headers=headers,
                            media_type="application/octet-stream")
        return LargeChunkFileResponse(copy.file, stat_result=stat, headers=headers,
                                      media_type="application/octet-stream")

    async def _stitch(self, replicator: type[Replicator], path: str, copy: Copy,
                      primary_size: int) -> StitchedResponse | None:
        """A live job log: the mirror's verified bytes, then the rest from the primary
        in the same response (None: not possible, proxy it whole)."""
        assert copy.file is not None
        have = copy.file.stat().st_size
        if copy.size != have or not 0 < have < primary_size:
            return None
        rest = await self.upstream.open(
            "GET", Upstream.blob_url(replicator.name, path),
            {"range": f"bytes={have}-{primary_size - 1}"})
        if rest.status_code != 206 or rest.headers.get("content-length") != str(
                primary_size - have):
            await rest.aclose()
            return None
        self._count(replicator, Route_.STITCHED)
        return StitchedResponse(copy.file, have, rest, {
            "content-length": str(primary_size), "content-type": "application/octet-stream",
            "accept-ranges": "bytes", SIZE_HEADER: str(primary_size),
            SERVED_BY: "mirror+primary"})

    async def _proxy(self, request: Request, url: str, replicator: type[Replicator],
                     body: AsyncIterator[bytes] | None = None) -> Response | ProxiedResponse:
        headers = {name: request.headers[name] for name in _FORWARDED
                   if name in request.headers}
        response = await self.upstream.open(request.method, url, headers, body)
        if response.status_code == 401:
            await response.aclose()
            log.error("primary_refused_credential", primary=self.settings.primary_url)
            return JSONResponse(
                {"error": "bad_gateway",
                 "message": "the primary refused this secondary's Geo API credential",
                 "hint": "the secondary's operator must fix [secondary] name/secret"},
                status_code=502)
        self._count(replicator, Route_.PRIMARY)
        return ProxiedResponse(response, {SERVED_BY: "primary"})

    # -- git ----------------------------------------------------------------------

    async def git(self, request: Request) -> Response | ProxiedResponse:
        rest, service = request.path_params["rest"], request.query_params.get("service")
        if is_push(rest, service):
            return self._refuse_push(rest)
        if (refused := await self._refuse_reader(request)) is not None:
            return refused
        repo, suffix = split_upload_pack(rest, request.method, service)
        if not repo.endswith(".git"):
            repo += ".git"  # `git clone .../project` as well as `.../project.git`
        repo = served_over_git().validate_path(repo)
        route, copy, reason = await self.decide(served_over_git(), repo)
        if route is Route_.PRIMARY:
            body = request.stream() if request.method == "POST" else None
            try:
                return await self._proxy(request, Upstream.git_url(f"{repo}{suffix}")
                                         + (f"?{request.url.query}" if request.url.query
                                            else ""),
                                         served_over_git(), body)
            except PrimaryDown as exc:
                route, copy, reason = self._without_primary(copy, str(exc))
        self._count(served_over_git(), route)
        if route is Route_.REFUSE:
            return _unavailable(reason)
        response = await run_upload_pack(
            request, self.settings.mirror_root / served_over_git().storage_dir, repo, suffix)
        response.headers[SERVED_BY] = "mirror"
        if route is Route_.STALE:
            response.headers[STALE] = "true"
        return response

    def _refuse_push(self, rest: str) -> Response:
        """An ERR packet, which git prints as ``fatal: remote error: ...``."""
        repo = rest.removesuffix("/info/refs").removesuffix("/git-receive-pack")
        message = (f"ERR this is a read-only mirror; push to the primary instead: "
                   f"{self.push_url}/{repo[:200]}\n")
        packet = f"{len(message) + 4:04x}{message}".encode()
        return Response(packet, status_code=200,
                        media_type="application/x-git-receive-pack-advertisement",
                        headers={SERVED_BY: "mirror", "cache-control": "no-cache"})

    # -- readers and health -------------------------------------------------------

    async def _refuse_reader(self, request: Request) -> Response | None:
        reader = await self.readers.reader(request)
        if reader is None:
            return refusal()
        request.state.reader = reader
        return None

    async def health(self, request: Request) -> Response:
        """200 when requests can be answered, 503 with the reasons when not."""
        reasons: list[str] = []
        try:
            await run_in_threadpool(self._ping_db)
        except Exception as exc:  # any failure is the reason to report
            reasons.append(f"tracking database unreachable: {type(exc).__name__}")
        if not (self.settings.mirror_root / served_over_git().storage_dir).is_dir():
            reasons.append(f"mirror storage {self.settings.mirror_root} is not there")
        primary = "reachable"
        if down := await self._probe_primary():
            primary = f"unreachable: {down}"
            if not self.settings.mirror.serve_stale:
                reasons.append("primary unreachable and serve_stale is off")
        return JSONResponse({"status": "unavailable" if reasons else "ok",
                             "reasons": reasons, "primary": primary},
                            status_code=503 if reasons else 200)

    def _ping_db(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(select(CursorRow.id).limit(1))

    async def _probe_primary(self) -> str | None:
        if down := self.upstream.down:
            return down
        try:
            response = await self.upstream.open("GET", "/events/head", {})
        except PrimaryDown as exc:
            return str(exc)
        await response.aclose()
        return None if response.status_code < 500 else f"answered {response.status_code}"


class StitchedResponse:
    """The first ``have`` bytes of ``file``, then the primary's ranged answer."""

    def __init__(self, file: Path, have: int, rest: httpx.Response,
                 headers: dict[str, str]) -> None:
        self.file, self.have, self.rest = file, have, rest
        self.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                            for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": self.raw_headers})
            remaining = self.have
            async with await anyio.open_file(self.file, "rb") as handle:
                while remaining > 0:
                    chunk = await handle.read(min(CHUNK, remaining))
                    if not chunk:
                        raise OSError(f"{self.file} shrank while it was served")
                    remaining -= len(chunk)
                    await send({"type": "http.response.body", "body": chunk,
                                "more_body": True})
            async for chunk in self.rest.aiter_raw(CHUNK):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await self.rest.aclose()


def _stat_etag(stat: os.stat_result) -> str:
    """Starlette FileResponse's ETag for a file without a checksum, so an answer does
    not depend on which way the file was sent."""
    base = f"{stat.st_mtime}-{stat.st_size}"
    return f'"{hashlib.md5(base.encode(), usedforsecurity=False).hexdigest()}"'


def _unavailable(reason: str) -> Response:
    return JSONResponse({"error": "unavailable", "message": reason,
                         "hint": "retry when the primary is reachable again"},
                        status_code=503, headers={"Retry-After": "5"})


def _error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GeoSyncError)
    status, code = error_status(exc)
    return JSONResponse({"error": code, "message": exc.message, "hint": exc.hint},
                        status_code=status)


def _no_such_path(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "not_found",
                         "message": f"nothing is served at {request.url.path[:200]}",
                         "hint": "see the URL layout in README: /git/<path>.git, "
                                 + ", ".join(f"/{r.storage_dir}/<path>"
                                             for r in REPLICATORS.values()
                                             if r.transport == "blob")},
                        status_code=404)


def create_app(settings: SecondarySettings, engine: Engine) -> Starlette:
    """The mirror server's ASGI app."""
    mirror = Mirror(settings, engine)
    routes = [
        Route("/-/health", mirror.health, methods=["GET"]),
        Route("/git/{rest:path}", mirror.git, methods=["GET", "HEAD", "POST"]),
    ]
    for replicator in REPLICATORS.values():
        if replicator.transport != "blob":
            continue

        async def endpoint(request: Request, replicator: type[Replicator] = replicator
                           ) -> Response | ProxiedResponse | StitchedResponse:
            return await mirror.blob(request, replicator)

        routes.append(Route(f"/{replicator.storage_dir}/{{path:path}}", endpoint,
                            methods=["GET", "HEAD"]))
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await mirror.upstream.aclose()

    app = Starlette(routes=routes, exception_handlers={
        GeoSyncError: _error, InvalidInput: _error, 404: _no_such_path},
        lifespan=lifespan)
    app.state.mirror = mirror
    return app


def storage_layout(mirror_root: Path) -> dict[str, Path]:
    """URL prefix -> directory it serves, for the docs and the benchmark."""
    layout = {"/git/": mirror_root / served_over_git().storage_dir}
    for replicator in REPLICATORS.values():
        if replicator.transport == "blob":
            layout[f"/{replicator.storage_dir}/"] = mirror_root / replicator.storage_dir
    return layout
