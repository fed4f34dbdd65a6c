"""The Geo API (``/api/geo/v1``): events feed, catalog, blobs, git, status.

Every endpoint requires ``Authorization: Bearer <JWT>`` signed with the calling
secondary's secret. Database work runs in the thread pool; long-polls wait on
the ChangeSignal without holding a thread.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Engine, exists, func, not_, select
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from geo_sync.db import write_transaction
from geo_sync.errors import (
    AuthError,
    BackfillRequired,
    GeoSyncError,
    InvalidInput,
    MissingOnPrimary,
    SiteReadOnly,
    TooLarge,
)
from geo_sync.logging import get_logger
from geo_sync.paths import resolve_inside
from geo_sync.primary import blobs, git_http, hooks, secondaries, site_state
from geo_sync.primary.background import BackgroundJobs
from geo_sync.primary.checksummer import take_checksum
from geo_sync.primary.credentials import Credentials
from geo_sync.primary.feed import JsonPage, feed_for
from geo_sync.primary.models import CatalogItem, Event, Secondary
from geo_sync.primary.notify import ChangeSignal, Watcher
from geo_sync.primary.openapi import OPENAPI_PATH, openapi_document
from geo_sync.primary.status import primary_status
from geo_sync.settings import PrimarySettings
from geo_sync.wire import (
    API_PREFIX,
    BATCH_BODY_BYTES,
    BATCH_MAX_PATHS,
    EPOCH_HEADER,
    EVENTS_MAX_LIMIT,
    MISSING_HEADER,
    NEW_PRIMARY_HEADER,
    CatalogEntry,
    CatalogItemReply,
    CatalogPage,
    error_status,
)
from replicators.type_map import git_original, original_for

log = get_logger("api")
#: The largest catalog page (events: geo_sync.wire.EVENTS_MAX_LIMIT).
MAX_LIMIT = 1000
MAX_WAIT = 60.0
SAFETY_REREAD = 1.0
#: The only body the API reads is an ack: a cursor, at most MAX_CURSOR_CHARS.
MAX_BODY_BYTES = 80 * 1024
_DIGITS = re.compile(r"[0-9]{1,19}")
#: A URL a demoted site names (it travels in a header: printable ASCII only).
_URL = re.compile(r"https?://[\x21-\x7e]{1,2000}")
#: How often each serving process re-reads the site's epoch and fencing state.
SITE_REFRESH_SECONDS = 1.0
#: Routes a demoted site still answers: its status, and the fencing calls themselves.
_WHILE_DEMOTED = ("status", "maintenance", "fence")

Handler = Callable[[Request], Awaitable[Response]]


def _error_response(exc: GeoSyncError) -> JSONResponse:
    status, code = error_status(exc)
    headers = {MISSING_HEADER: "true"} if isinstance(exc, MissingOnPrimary) else {}
    return JSONResponse(
        {"error": code, "message": exc.message, "hint": exc.hint},
        status_code=status,
        headers=headers,
    )


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    # ASCII digits only: int() also takes other scripts' digits, signs, '_' and spaces.
    if not _DIGITS.fullmatch(raw):
        raise InvalidInput(f"query parameter {name} must be an integer, got {raw[:40]!r}")
    value = int(raw)
    if not low <= value <= high:
        raise InvalidInput(f"query parameter {name} must be between {low} and {high}")
    return value


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and (len(declared) > 18
                                                       or int(declared) > limit):
        raise TooLarge(f"request body of {declared[:20]} bytes is over the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"request body is over the limit of {limit} bytes")
    return bytes(body)


class GeoApi:
    """The routes and the state behind them: settings, engine, change signal; the
    credentials and the background jobs live in their own modules."""

    def __init__(self, settings: PrimarySettings, engine: Engine, *,
                 background: bool = True) -> None:
        self.settings = settings
        self.engine = engine
        #: Whether this process runs the periodic jobs (one of several serving processes).
        self.background = background
        self.feed = feed_for(engine.dialect)
        self.signal: ChangeSignal | None = None
        self.credentials = Credentials(settings, engine)
        self.jobs = BackgroundJobs(settings, engine, fatal=self._fatal)
        #: A background job died: the server was asked to stop, the process must fail.
        self.failed = False
        #: How to stop the server (set by whoever runs it: geo_sync.cli.serving).
        self.stop_server: Callable[[], None] = lambda: None
        #: This site's epoch and fencing state, refreshed every SITE_REFRESH_SECONDS.
        self.site = self._read_site()

    def _fatal(self) -> None:
        self.failed = True
        self.stop_server()

    def _read_site(self) -> site_state.SiteState:
        with self.engine.connect() as conn:
            return site_state.read_state(conn)

    async def _refresh_site(self) -> None:
        while True:
            await asyncio.sleep(SITE_REFRESH_SECONDS)
            try:
                self.site = await run_in_threadpool(self._read_site)
            except Exception as exc:  # the database is down: keep the last state
                log.warning("site_state_unreadable", error=str(exc))

    async def _note_caller_epoch(self, request: Request, caller: str) -> None:
        """A secondary that followed a higher epoch than ours proves another site was
        promoted over us: fence ourselves at once (an old primary coming back after an
        unplanned promotion), so nothing more is published here."""
        raw = request.headers.get(EPOCH_HEADER, "")
        if not _DIGITS.fullmatch(raw) or int(raw) < self.site.epoch:
            return
        if int(raw) == self.site.epoch:
            if caller in self.site.awaiting_confirmation:
                await self._confirm(caller)
            return

        def run() -> site_state.SiteState:
            with write_transaction(self.engine) as conn:
                return site_state.demote(conn, None)

        self.site = await run_in_threadpool(run)
        site_state.write_marker(self.settings.storage_root, self.site)
        log.error("fenced_by_higher_epoch", caller=caller, epoch=int(raw),
                  hint="another site was promoted; `geo-sync primary rejoin` makes this "
                  "site a secondary of it")

    async def _confirm(self, caller: str) -> None:
        """After an unclean shutdown: ``caller`` followed nobody newer than us. Writes
        resume once every secondary that followed us before has said so."""
        def run() -> site_state.SiteState:
            with write_transaction(self.engine) as conn:
                return site_state.confirm_epoch(conn, caller)

        self.site = await run_in_threadpool(run)
        site_state.write_marker(self.settings.storage_root, self.site)
        if self.site.awaiting_confirmation:
            log.warning("epoch_confirmed_by", caller=caller, epoch=self.site.epoch,
                        still_waiting_for=list(self.site.awaiting_confirmation))
        else:
            log.warning("epoch_confirmed", caller=caller, epoch=self.site.epoch,
                        hint="publishes and pushes are accepted again")

    def headers(self) -> dict[str, str]:
        """Headers every response carries: the epoch, and where a demoted site's
        successor is."""
        headers = {EPOCH_HEADER: str(self.site.epoch)}
        if self.site.demoted and self.site.new_primary_url:
            headers[NEW_PRIMARY_HEADER] = self.site.new_primary_url
        return headers

    # -- plumbing -------------------------------------------------------------

    def guarded(self, handler: Callable[[Request, str], Awaitable[Response]]) -> Handler:
        """Wrap a route: authenticate the caller, map our errors to JSON responses."""

        async def endpoint(request: Request) -> Response:
            try:
                scheme, _, token = request.headers.get("authorization", "").partition(" ")
                if scheme.lower() != "bearer" or not token:
                    raise AuthError("missing Authorization: Bearer <JWT> header")
                token = token.strip()
                # A token checked a moment ago needs neither a thread nor a decode.
                caller = self.credentials.checked(token)
                if caller is None:
                    caller = await run_in_threadpool(self.credentials.authenticate, token)
                await self._note_caller_epoch(request, caller)
                if self.site.demoted and handler.__name__ not in _WHILE_DEMOTED:
                    refusal = self.site.refusal()
                    assert refusal is not None
                    raise refusal
                return await handler(request, caller)
            except GeoSyncError as exc:
                if isinstance(exc, AuthError):
                    log.warning("request_refused", path=request.url.path, reason=exc.message,
                                detail=getattr(exc, "detail", None))
                return _error_response(exc)

        return endpoint

    # -- routes ---------------------------------------------------------------

    async def events(self, request: Request, caller: str) -> Response:
        cursor = request.query_params.get("cursor")
        if cursor is None:
            raise InvalidInput("query parameter cursor is required (GET /events/head gives one)")
        self.feed.validate(cursor)
        limit = _int_param(request, "limit", 100, 1, EVENTS_MAX_LIMIT)
        wait = _int_param(request, "wait", 0, 0, int(MAX_WAIT))
        deadline = time.monotonic() + wait
        assert self.signal is not None
        while True:
            generation = self.signal.generation
            page = await run_in_threadpool(self._read_events, caller, cursor, limit)
            remaining = deadline - time.monotonic()
            if page.events or remaining <= 0 or self.signal.closed:
                return Response(page.body(), media_type="application/json")
            await self.signal.wait_for_change(generation, min(remaining, SAFETY_REREAD))

    def _read_events(self, caller: str, cursor: str, limit: int) -> JsonPage:
        with self.engine.connect() as conn:
            if secondaries.is_backfill_required(conn, caller):
                raise BackfillRequired(
                    f"events after secondary {caller!r}'s cursor were pruned",
                )
            return self.feed.read_json(conn, cursor, limit)

    async def head(self, request: Request, caller: str) -> Response:
        reset = request.query_params.get("reset") in ("1", "true")

        def run() -> str:
            if reset:
                with write_transaction(self.engine) as conn:
                    return secondaries.restart_at_head(conn, caller)
            with self.engine.connect() as conn:
                return self.feed.head(conn)

        return JSONResponse({"cursor": await run_in_threadpool(run)})

    async def ack(self, request: Request, caller: str) -> Response:
        raw = await _bounded_body(request, MAX_BODY_BYTES)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: deeply nested JSON
            raise InvalidInput("body must be JSON: {\"cursor\": \"...\"}") from None
        cursor = body.get("cursor") if isinstance(body, dict) else None
        if not isinstance(cursor, str):
            raise InvalidInput("body must be JSON with a string cursor: {\"cursor\": \"...\"}")

        def run() -> None:
            with write_transaction(self.engine) as conn:
                secondaries.acknowledge(conn, caller, cursor)

        await run_in_threadpool(run)
        return JSONResponse({"acknowledged": cursor})

    async def catalog(self, request: Request, caller: str) -> Response:
        replicator = original_for(request.path_params["type"])
        after = _int_param(request, "after", 0, 0, 2**62)
        limit = _int_param(request, "limit", 500, 1, MAX_LIMIT)
        # Counting the type's items scans its part of the catalog (0.15-0.4 s a page at
        # 1,000,000 items, and more than the page itself): a backfill asks on its first
        # page only and sends total=0 after it.
        with_total = _int_param(request, "total", 1, 0, 1) == 1

        def run() -> dict[str, Any]:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(CatalogItem.__table__)
                    .where(CatalogItem.replicable_type == replicator.name, CatalogItem.id > after)
                    .order_by(CatalogItem.id)
                    .limit(limit)
                ).all()
                total = conn.execute(
                    select(func.count()).where(CatalogItem.replicable_type == replicator.name)
                ).scalar_one() if with_total else None
            items = [CatalogEntry(row.id, row.record_id, row.path, row.size, row.checksum,
                                  row.checksum_at, row.updated_at) for row in rows]
            next_after = items[-1].id if len(items) == limit else None
            return CatalogPage(replicator.name, list(items), next_after, total).to_json()

        return JSONResponse(await run_in_threadpool(run))

    async def catalog_item(self, request: Request, caller: str) -> Response:
        """One item's size and checksum; ``recompute=1`` re-takes the checksum on disk
        first, so a secondary can rule out a stale primary checksum before blaming its
        copy, and ``cursor=`` (the secondary's) says whether the item changed in an event
        that secondary has not applied yet: then its copy is behind, not wrong."""
        replicator = original_for(request.path_params["type"])
        path = replicator.validate_path(request.query_params.get("path"))
        recompute = request.query_params.get("recompute") in ("1", "true")
        cursor = request.query_params.get("cursor")
        if cursor is not None:
            self.feed.validate(cursor)

        def run() -> dict[str, Any]:
            with self.engine.connect() as conn:
                row_id = conn.execute(select(CatalogItem.id).where(
                    CatalogItem.replicable_type == replicator.name,
                    CatalogItem.path == path)).scalar()
            if row_id is None:
                raise MissingOnPrimary(f"{replicator.name} {path} is not in the primary's catalog")
            if recompute and take_checksum(self.engine, self.settings.storage_root,
                                           row_id) is None:
                raise MissingOnPrimary(f"{replicator.name} {path} is missing on primary")
            # A push still in the hook spool is on disk (and in a re-taken checksum) but
            # not yet an event: it will be one beyond any cursor. The spool is read before
            # the events (the drain unlinks an entry after committing its event).
            pending = (cursor is not None and replicator.name == git_original().name
                       and hooks.push_pending(self.settings.storage_root, resolve_inside(
                           self.settings.storage_root / replicator.storage_dir, path)))
            with self.engine.connect() as conn:
                row = conn.execute(select(CatalogItem.size, CatalogItem.checksum,
                                          CatalogItem.checksum_at, CatalogItem.record_id)
                                   .where(CatalogItem.id == row_id)).one()
                changed = None if cursor is None else pending or bool(conn.execute(
                    select(exists().where(
                        Event.replicable_type == replicator.name,
                        Event.record_id == row.record_id,
                        not_(self.feed.delivered(cursor))))).scalar())
            # changed: whether an event about this item lies beyond the caller's cursor,
            # or is about to (a push in the spool).
            return CatalogItemReply(replicator.name, path, row.size, row.checksum,
                                    row.checksum_at, changed).to_json()

        return JSONResponse(await run_in_threadpool(run))

    async def blob(self, request: Request, caller: str) -> Response:
        return await blobs.download(request, self.engine, self.settings.storage_root)

    async def blob_batch(self, request: Request, caller: str) -> Response:
        """Many blobs of one type in one response (``{"paths": [...]}`` in the body)."""
        replicator = blobs.blob_replicator(request.path_params["type"])
        raw = await _bounded_body(request, BATCH_BODY_BYTES)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise InvalidInput("body must be JSON: {\"paths\": [\"...\", ...]}") from None
        paths = body.get("paths") if isinstance(body, dict) else None
        if not isinstance(paths, list) or not 1 <= len(paths) <= BATCH_MAX_PATHS:
            raise InvalidInput(f"body must be JSON with paths, a list of 1 to {BATCH_MAX_PATHS} "
                               "paths: {\"paths\": [\"...\", ...]}")
        valid = [replicator.validate_path(path, field=f"paths[{index}]")
                 for index, path in enumerate(paths)]
        return blobs.download_batch(replicator, valid, self.engine, self.settings.storage_root)

    async def git(self, request: Request, caller: str) -> Response:
        return await git_http.serve_git(
            request, self.settings.storage_root / git_original().storage_dir)

    async def _json_body(self, request: Request, example: str) -> dict[str, Any]:
        raw = await _bounded_body(request, MAX_BODY_BYTES)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise InvalidInput(f"body must be JSON: {example}") from None
        if not isinstance(body, dict):
            raise InvalidInput(f"body must be a JSON object: {example}")
        return body

    async def maintenance(self, request: Request, caller: str) -> Response:
        """Turn maintenance mode on or off (a planned promotion drives this with the
        promoting secondary's credential)."""
        example = '{"on": true, "reason": "..."}'
        body = await self._json_body(request, example)
        on, reason = body.get("on"), body.get("reason")
        if not isinstance(on, bool) or not (reason is None or isinstance(reason, str)):
            raise InvalidInput(f"body must be {example} (on a boolean, reason a string)")
        if self.site.demoted:
            raise SiteReadOnly("this site was demoted; maintenance mode does not apply",
                               hint="talk to the new primary")

        def run() -> site_state.SiteState:
            with write_transaction(self.engine) as conn:
                return site_state.set_maintenance(conn, on, reason)

        self.site = await run_in_threadpool(run)
        site_state.write_marker(self.settings.storage_root, self.site)
        log.warning("maintenance_changed", on=on, reason=reason, by=caller)
        return JSONResponse(self.site.to_json())

    async def fence(self, request: Request, caller: str) -> Response:
        """Demote this site in favour of a promoted one: it refuses writes from now on
        and names ``new_primary_url`` to whoever asks. Answers with the epoch this site
        had, so the promoted site takes the next one."""
        example = ('{"new_primary_url": "https://...", "epoch": N} (the URL printable '
                   'ASCII, http or https)')
        body = await self._json_body(request, example)
        url, epoch = body.get("new_primary_url"), body.get("epoch")
        if not isinstance(url, str) or not _URL.fullmatch(url) or not (
                epoch is None or (isinstance(epoch, int) and not isinstance(epoch, bool)
                                  and 0 < epoch < 2**62)):
            raise InvalidInput(f"body must be {example}")

        def run() -> tuple[int, site_state.SiteState, list[str]]:
            with write_transaction(self.engine) as conn:
                before = site_state.read_state(conn).epoch
                if epoch is not None and epoch <= before:
                    raise InvalidInput(
                        f"epoch {epoch} is not above this site's epoch {before}: only a "
                        "site promoted over this one can fence it",
                        hint="the site asking is an older primary, or was promoted from "
                        "another line of sites: check which one is the primary")
                names = list(conn.execute(select(Secondary.name).order_by(Secondary.name))
                             .scalars())
                return before, site_state.demote(conn, url), names

        before, self.site, names = await run_in_threadpool(run)
        site_state.write_marker(self.settings.storage_root, self.site)
        log.error("site_demoted", new_primary_url=url, new_epoch=epoch, by=caller)
        # Names only: secrets never leave a site (the new primary re-registers them).
        return JSONResponse({"previous_epoch": before, "secondaries": names,
                             **self.site.to_json()})

    async def status(self, request: Request, caller: str) -> Response:
        return JSONResponse(await run_in_threadpool(primary_status, self.settings, self.engine))

    @asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self.signal = ChangeSignal(asyncio.get_running_loop())
        watcher = Watcher(self.engine, self.signal)
        watcher.start()
        jobs = await self.jobs.start() if self.background else []
        jobs.append(asyncio.create_task(self._refresh_site()))
        log.info("geo_api_started")
        try:
            yield
        finally:
            for job in jobs:
                job.cancel()
            watcher.stop()
            if self.background and not self.failed:
                await self._stopped_cleanly()

    async def _stopped_cleanly(self) -> None:
        """A graceful stop: the next `primary serve` is not an unclean start (see
        site_state.begin_serving; a crash never gets here)."""
        def run() -> None:
            with write_transaction(self.engine) as conn:
                site_state.end_serving(conn)

        try:
            await run_in_threadpool(run)
        except Exception as exc:  # the next start waits for a confirmation: safe
            log.warning("clean_stop_not_recorded", error=str(exc))


async def _no_such_endpoint(request: Request, _exc: Exception) -> Response:
    """Unknown URLs get the API's JSON error too, with the likely cause: a primary_url
    whose path is wrong."""
    return JSONResponse(
        {"error": "no_such_endpoint",
         "message": f"no Geo API at that URL: {request.url.path[:200]}",
         "hint": "primary_url must be the primary's scheme://host:port (plus any path a "
                 f"reverse proxy adds) without {API_PREFIX}; geo-sync adds that itself"},
        status_code=404)


async def _openapi(_request: Request) -> Response:
    """The API's description needs no token: it holds no data."""
    return JSONResponse(openapi_document())


class _SiteHeaders:
    """Adds the site's epoch (and a demoted site's successor) to every response."""

    def __init__(self, app: Any, api: GeoApi) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.api.headers().items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: PrimarySettings, engine: Engine, *, background: bool = True
               ) -> Starlette:
    """The Starlette application serving the Geo API; with ``background`` it also runs
    the periodic jobs (pruning, checksums, the push spool, metrics)."""
    api = GeoApi(settings, engine, background=background)
    routes = [
        Route(f"{API_PREFIX}/events", api.guarded(api.events)),
        Route(f"{API_PREFIX}/events/head", api.guarded(api.head)),
        Route(f"{API_PREFIX}/ack", api.guarded(api.ack), methods=["POST"]),
        Route(f"{API_PREFIX}/catalog/{{type}}", api.guarded(api.catalog)),
        Route(f"{API_PREFIX}/catalog/{{type}}/item", api.guarded(api.catalog_item)),
        Route(f"{API_PREFIX}/blobs/{{type}}/{{path:path}}", api.guarded(api.blob),
              methods=["GET", "HEAD"]),
        Route(f"{API_PREFIX}/blob-batch/{{type}}", api.guarded(api.blob_batch), methods=["POST"]),
        Route(f"{API_PREFIX}/git/{{rest:path}}", api.guarded(api.git), methods=["GET", "POST"]),
        Route(f"{API_PREFIX}/status", api.guarded(api.status)),
        Route(f"{API_PREFIX}/maintenance", api.guarded(api.maintenance), methods=["POST"]),
        Route(f"{API_PREFIX}/fence", api.guarded(api.fence), methods=["POST"]),
        Route(OPENAPI_PATH, _openapi),
    ]
    app = Starlette(routes=routes, lifespan=api.lifespan,
                    exception_handlers={404: _no_such_endpoint},
                    middleware=[Middleware(_SiteHeaders, api=api)])
    app.state.api = api
    return app
