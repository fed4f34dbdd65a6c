"""The mirror server's way to the primary: asking whether a copy is current, and
proxying what the mirror cannot serve, with the secondary's own Geo API credential.

An unreachable primary is remembered for ``primary_down_retry_seconds`` so that a
burst of requests during an outage does not wait on a connect timeout each.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum

import httpx
from starlette.types import Receive, Scope, Send

from geo_sync.auth import issue_token
from geo_sync.files import CHUNK
from geo_sync.logging import get_logger
from geo_sync.secondary.client import url_path
from geo_sync.secondary.mirror.pending import INCOMPLETE, Pending, SingleFlight
from geo_sync.settings import SecondarySettings
from geo_sync.tls import client_verify
from geo_sync.wire import API_PREFIX, CHECKSUM_HEADER, MISSING_HEADER

log = get_logger("mirror")

TOKEN_TTL = 60
#: Pending events listed in one answer; past that, items are confirmed one by one.
PENDING_PAGE = 500
#: Headers of the primary's answer passed on to the runner.
PASSED_ON = ("content-type", "content-length", "content-range", "accept-ranges",
             "last-modified", "cache-control", "expires", "pragma", CHECKSUM_HEADER,
             "x-geo-size", "x-geo-record-id", MISSING_HEADER)


class Verdict(StrEnum):
    """What the primary said of a copy the tracking DB holds current."""

    CURRENT = "current"
    CHANGED = "changed"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class Confirmation:
    verdict: Verdict
    reason: str = ""
    #: The item's size in the primary's catalog, when it said.
    size: int | None = None


class PrimaryDown(Exception):
    """Raised when the primary cannot be reached to proxy a request."""


class Upstream:
    """One mirror server's client of its primary (async, pooled)."""

    def __init__(self, settings: SecondarySettings) -> None:
        self.settings = settings
        self.base = f"{settings.primary_url}{API_PREFIX}"
        self.http = httpx.AsyncClient(
            verify=client_verify(settings.primary_ca_bundle, settings.primary_url),
            timeout=httpx.Timeout(settings.http_timeout_seconds, connect=5.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))
        self._down_until = 0.0
        self._down_reason = ""
        self._token = ("", 0.0)
        #: The events beyond a cursor, one ask shared by concurrent requests.
        self.pending = SingleFlight(self._pending)

    async def aclose(self) -> None:
        await self.http.aclose()

    def authorization(self) -> str:
        token, until = self._token
        now = time.monotonic()
        if now >= until:  # a fresh JWT at most every 20 s, valid for 60
            token = issue_token(self.settings.name, self.settings.secret, ttl=TOKEN_TTL)
            self._token = (token, now + 20)
        return f"Bearer {token}"

    @property
    def down(self) -> str | None:
        """Why the primary is taken to be down now, or None."""
        return self._down_reason if time.monotonic() < self._down_until else None

    def _mark_down(self, reason: str) -> None:
        if not self.down:
            log.warning("primary_unreachable", primary=self.settings.primary_url,
                        reason=reason)
        self._down_reason = reason
        self._down_until = time.monotonic() + self.settings.mirror.primary_down_retry_seconds

    async def confirm(self, type_name: str, path: str, cursor: str | None,
                      checksum: str | None) -> Confirmation:
        """Whether the primary changed ``path`` after ``cursor`` (or now holds another
        checksum than ``checksum``, the one the copy was verified as)."""
        if reason := self.down:
            return Confirmation(Verdict.UNREACHABLE, reason)
        if cursor is None:
            return Confirmation(Verdict.CHANGED, "no cursor yet")
        try:
            response = await self.http.get(
                f"{self.base}/catalog/{type_name}/item",
                params={"path": path, "cursor": cursor},
                headers={"Authorization": self.authorization()})
        except httpx.HTTPError as exc:
            self._mark_down(f"{type(exc).__name__}: {exc}")
            return Confirmation(Verdict.UNREACHABLE, self._down_reason)
        if response.status_code >= 500:
            self._mark_down(f"primary answered {response.status_code}")
            return Confirmation(Verdict.UNREACHABLE, self._down_reason)
        return _judge(response, checksum)

    async def _pending(self, cursor: str | None) -> Pending:
        """The events beyond ``cursor`` (one page), asked now; see ``pending.py``."""
        if reason := self.down:
            return Pending(False, unreachable=reason)
        if cursor is None:
            return INCOMPLETE
        try:
            response = await self.http.get(
                f"{self.base}/events", params={"cursor": cursor, "limit": PENDING_PAGE},
                headers={"Authorization": self.authorization()})
        except httpx.HTTPError as exc:
            self._mark_down(f"{type(exc).__name__}: {exc}")
            return Pending(False, unreachable=self._down_reason)
        if response.status_code >= 500:
            self._mark_down(f"primary answered {response.status_code}")
            return Pending(False, unreachable=self._down_reason)
        return _pending_page(response)

    async def open(self, method: str, url: str, headers: dict[str, str],
                   body: AsyncIterator[bytes] | None = None) -> httpx.Response:
        """Send a request to the primary's Geo API path ``url`` and return the response
        with its body still to be streamed; PrimaryDown if it cannot be reached."""
        if reason := self.down:
            raise PrimaryDown(reason)
        request = self.http.build_request(
            method, f"{self.base}{url}", content=body,
            headers={**headers, "Authorization": self.authorization()},
            timeout=httpx.Timeout(self.settings.http_timeout_seconds, connect=5.0,
                                  read=None if url.startswith("/git/") else
                                  self.settings.http_timeout_seconds))
        try:
            return await self.http.send(request, stream=True)
        except httpx.HTTPError as exc:
            self._mark_down(f"{type(exc).__name__}: {exc}")
            raise PrimaryDown(self._down_reason) from None

    @staticmethod
    def blob_url(type_name: str, path: str) -> str:
        return f"/blobs/{type_name}/{url_path(path)}"

    @staticmethod
    def git_url(rest: str) -> str:
        return f"/git/{url_path(rest)}"


def _pending_page(response: httpx.Response) -> Pending:
    """The primary's events page as Pending; anything but a page is incomplete."""
    if response.status_code != 200:
        # Our cursor past its retention (410), a refused credential: not ours to
        # judge here; the per-item question says what it means for each item.
        return INCOMPLETE
    try:
        return Pending.from_page(response.json())
    except ValueError:
        return INCOMPLETE


def _judge(response: httpx.Response, checksum: str | None) -> Confirmation:
    """The primary's answer about an item, as a verdict on our copy of it."""
    body: object = None
    if response.status_code == 200:
        try:
            body = response.json()
        except ValueError:
            body = None
    if not isinstance(body, dict):
        # Deleted there (404), our cursor past its retention (410), or not the Geo
        # API: the primary knows better than our copy.
        return Confirmation(Verdict.CHANGED, f"primary answered {response.status_code}")
    size = body.get("size") if isinstance(body.get("size"), int) else None
    if body.get("changed_after_cursor"):
        return Confirmation(Verdict.CHANGED, "changed on the primary since the cursor", size)
    theirs = body.get("checksum")
    if theirs is not None and checksum is not None and theirs != checksum:
        return Confirmation(Verdict.CHANGED, "primary holds another checksum", size)
    return Confirmation(Verdict.CURRENT, "", size)


class ProxiedResponse:
    """The primary's answer, streamed to the runner as it arrives. Like the CGI
    bridge it never calls ``receive``: a request body being forwarded belongs to the
    task sending it to the primary."""

    def __init__(self, upstream: httpx.Response, extra: dict[str, str]) -> None:
        self.upstream = upstream
        headers = {name: upstream.headers[name] for name in PASSED_ON
                   if name in upstream.headers}
        if CHECKSUM_HEADER in headers:  # the same ETag as the mirror's copy would have
            headers["etag"] = f'"{headers[CHECKSUM_HEADER]}"'
        headers.update(extra)
        self.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                            for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.upstream.status_code,
                        "headers": self.raw_headers})
            if scope["method"] != "HEAD":
                async for chunk in self.upstream.aiter_raw(CHUNK):
                    await send({"type": "http.response.body", "body": chunk,
                                "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except httpx.HTTPError as exc:
            # Headers are out: all that is left is to break the connection, so the
            # runner sees a short body rather than a complete-looking wrong one.
            log.warning("proxy_broke_off", error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            await self.upstream.aclose()
