"""Talking to the primary's Geo API, with a fresh short-lived JWT on every request."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from geo_sync.auth import issue_token
from geo_sync.errors import (
    AuthError,
    BackfillRequired,
    GeoSyncError,
    InvalidInput,
    MissingOnPrimary,
    SiteReadOnly,
    SplitBrain,
    TransientError,
)
from geo_sync.files import CHUNK
from geo_sync.logging import get_logger
from geo_sync.settings import SecondarySettings
from geo_sync.tls import client_verify, tls_failure, untrusted_hint
from geo_sync.wire import (
    API_PREFIX,
    EPOCH_HEADER,
    EVENTS_MAX_LIMIT,
    EVENTS_MAX_LIMIT_BEFORE,
    MISSING_HEADER,
    NEW_PRIMARY_HEADER,
    BatchEntry,
    CatalogItemReply,
    CatalogPage,
    EventPage,
    read_batch,
)

log = get_logger("client")
TOKEN_TTL = 60
#: The range in the Geo API's 400 for an out-of-range parameter.
_LIMIT_RANGE = re.compile(r"between 1 and ([0-9]{1,9})")


class PrimaryClient:
    """One secondary's view of its primary."""

    def __init__(self, settings: SecondarySettings, *, epoch_floor: int = 0) -> None:
        self.settings = settings
        self.base = f"{settings.primary_url}{API_PREFIX}"
        #: The highest epoch this secondary followed (tracking DB): a site answering
        #: below it is an old primary and is refused; sent along so that such a site
        #: learns it was replaced and fences itself.
        self.epoch_floor = epoch_floor
        #: The highest epoch the primary answered with (the cursor records it).
        self.seen_epoch: int | None = None
        #: The largest page of events this primary serves: lowered, once, by a primary
        #: from before EVENTS_MAX_LIMIT was raised (it refuses a larger page with a 400).
        self.events_limit = EVENTS_MAX_LIMIT
        self._http = httpx.Client(
            base_url=self.base,
            timeout=httpx.Timeout(settings.http_timeout_seconds, connect=10.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            verify=client_verify(settings.primary_ca_bundle, settings.primary_url),
        )

    @property
    def ca_bundle(self) -> Path | None:
        """The CA file libgit2 must trust too (None: the public CAs only)."""
        return self.settings.primary_ca_bundle

    def close(self) -> None:
        self._http.close()

    def token(self) -> str:
        return issue_token(self.settings.name, self.settings.secret, ttl=TOKEN_TTL)

    def auth_header(self) -> str:
        """``Authorization: Bearer ...`` for libgit2's custom headers."""
        return f"Authorization: Bearer {self.token()}"

    def git_url(self, path: str) -> str:
        return f"{self.base}/git/{url_path(path)}"

    def _headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token()}"}
        if self.epoch_floor:
            headers[EPOCH_HEADER] = str(self.epoch_floor)
        return headers

    def check_epoch(self, response: httpx.Response) -> None:
        """Refuse a site older than the one we followed; note a newer one."""
        raw = response.headers.get(EPOCH_HEADER, "")
        if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
            return  # a primary from before epochs: nothing to compare
        epoch = int(raw)
        if epoch < self.epoch_floor:
            raise SplitBrain(
                f"the site at {self.settings.primary_url} answers at epoch {epoch}, but this "
                f"secondary already followed epoch {self.epoch_floor}: it is an old primary "
                "that another site replaced; nothing from it is applied")
        self.seen_epoch = max(self.seen_epoch or 0, epoch)

    def _request(self, method: str, url: str, *, timeout: float | None = None,
                 **kwargs: Any) -> httpx.Response:
        headers = {**self._headers(), **kwargs.pop("headers", {})}
        try:
            response = self._http.request(method, url, headers=headers,
                                          timeout=timeout or httpx.USE_CLIENT_DEFAULT,
                                          **kwargs)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        self.check_epoch(response)
        check(response)
        return response

    def _unreachable(self, exc: httpx.HTTPError) -> TransientError:
        """The error for a request that got no answer; a TLS refusal is named as such
        (the primary was reached, but is not trusted)."""
        url = self.settings.primary_url
        if (failure := tls_failure(exc)) is not None:
            return TransientError(f"{failure} (at {url})",
                                  hint=untrusted_hint(self.settings.primary_ca_bundle))
        if url.startswith("http://") and isinstance(exc, httpx.RemoteProtocolError):
            return TransientError(
                f"primary unreachable at {url}: {type(exc).__name__}: {exc}",
                hint="the primary closed the connection unanswered: if it serves HTTPS "
                "(tls_cert_file), primary_url must start with https://")
        return TransientError(
            f"primary unreachable at {url}: {type(exc).__name__}: {exc}",
            hint="check that the primary is up, and that primary_url's host and port "
            "are right and reachable from here")

    def head(self, *, reset: bool = False) -> str:
        params = {"reset": "1"} if reset else {}
        return str(self._request("GET", "/events/head", params=params).json()["cursor"])

    def events(self, cursor: str, *, limit: int, wait: int) -> EventPage:
        """Up to ``limit`` events after ``cursor`` (fewer if the primary's pages are
        smaller), waiting up to ``wait`` seconds for the first."""
        asked = min(limit, self.events_limit)
        try:
            return self._events(cursor, asked, wait)
        except InvalidInput as exc:
            # A primary from before pages of EVENTS_MAX_LIMIT refuses a larger page, its
            # message naming the parameter and the range it takes.
            if asked <= EVENTS_MAX_LIMIT_BEFORE or "parameter limit" not in exc.message:
                raise
            found = _LIMIT_RANGE.search(exc.message)
            self.events_limit = min(int(found[1]), asked - 1) if found else \
                EVENTS_MAX_LIMIT_BEFORE
        log.info("events_page_limit_lowered", asked=asked, limit=self.events_limit,
                 reason="the primary refused larger pages of events (an older version)")
        return self._events(cursor, self.events_limit, wait)

    def _events(self, cursor: str, limit: int, wait: int) -> EventPage:
        return EventPage.from_json(self._request(
            "GET", "/events", params={"cursor": cursor, "limit": limit, "wait": wait},
            timeout=self.settings.http_timeout_seconds + wait,
        ).json())

    def ack(self, cursor: str) -> None:
        self._request("POST", "/ack", json={"cursor": cursor})

    def catalog_page(self, type_name: str, after: int, limit: int = 1000, *,
                     total: bool = True) -> CatalogPage:
        """Up to ``limit`` catalog items after id ``after``; with ``total``, also how many
        items of the type there are (a count the primary makes for the page, so a caller
        paging through asks once). A primary from before the flag counts every time."""
        params = {"after": after, "limit": limit, **({} if total else {"total": 0})}
        response = self._request("GET", f"/catalog/{type_name}", params=params)
        return CatalogPage.from_json(response.json())

    def catalog_item(self, type_name: str, path: str, *, recompute: bool = False,
                     cursor: str | None = None) -> CatalogItemReply:
        """An item's size and checksum on the primary (re-taken first if ``recompute``);
        with ``cursor``, also whether it changed in an event beyond that cursor."""
        params = {"path": path, **({"recompute": "1"} if recompute else {}),
                  **({"cursor": cursor} if cursor is not None else {})}
        return CatalogItemReply.from_json(
            self._request("GET", f"/catalog/{type_name}/item", params=params).json())

    def maintenance(self, on: bool, reason: str | None = None) -> dict[str, Any]:
        """Turn the primary's maintenance mode on or off (a planned promotion)."""
        return dict(self._request("POST", "/maintenance",
                                  json={"on": on, "reason": reason}).json())

    def fence(self, new_primary_url: str, epoch: int) -> dict[str, Any]:
        """Demote the primary in favour of ``new_primary_url`` at ``epoch``."""
        return dict(self._request("POST", "/fence", json={
            "new_primary_url": new_primary_url, "epoch": epoch}).json())

    def status(self) -> dict[str, Any]:
        return dict(self._request("GET", "/status").json())

    def status_and_skew(self) -> tuple[dict[str, Any], float | None]:
        """The primary's /status and how far its clock is ahead of ours, in seconds
        (from its ``server_time``, else its ``Date`` header; None if it sent neither)."""
        before = time.time()
        response = self._request("GET", "/status")
        middle = (before + time.time()) / 2
        body = dict(response.json())
        if isinstance(body.get("server_time"), str):
            return body, datetime.fromisoformat(body["server_time"]).timestamp() - middle
        if date := response.headers.get("date"):
            # A Date header has whole seconds: centre it within its second.
            return body, parsedate_to_datetime(date).timestamp() + 0.5 - middle
        return body, None

    @contextmanager
    def blob(self, type_name: str, path: str, *, start: int = 0) -> Iterator[httpx.Response]:
        """Stream a blob from byte ``start``; a 416 (nothing past ``start``) is returned as is."""
        headers = self._headers()
        if start:
            headers["Range"] = f"bytes={start}-"
        try:
            with self._http.stream("GET", f"/blobs/{type_name}/{url_path(path)}",
                                   headers=headers) as response:
                self.check_epoch(response)
                if response.status_code != 416:
                    if response.status_code >= 400:
                        response.read()
                    check(response)
                yield response
        except httpx.HTTPError as exc:
            if tls_failure(exc) is not None:
                raise self._unreachable(exc) from None
            raise TransientError(f"transfer from primary failed: {type(exc).__name__}: {exc}",
                                 hint="it will be retried") from None

    @contextmanager
    def blob_batch(self, type_name: str, paths: list[str]
                   ) -> Iterator[Iterator[tuple[BatchEntry, bytes]]]:
        """Stream many blobs in one request: (entry, bytes) per path, in order. A
        transfer that breaks off raises TransientError where the reading stops, so
        the entries read before it stand."""
        headers = self._headers()
        try:
            with self._http.stream("POST", f"/blob-batch/{type_name}",
                                   json={"paths": paths}, headers=headers) as response:
                self.check_epoch(response)
                if response.status_code >= 400:
                    response.read()
                    check(response)
                yield read_batch(response.iter_raw(CHUNK))
        except httpx.HTTPError as exc:
            if tls_failure(exc) is not None:
                raise self._unreachable(exc) from None
            raise TransientError(f"batch transfer from primary failed: "
                                 f"{type(exc).__name__}: {exc}",
                                 hint="it will be retried") from None


def url_path(path: str) -> str:
    """``path`` as URL path segments: every byte but the separators percent-encoded,
    so ``a?b`` is not a query, ``a#b`` not a fragment and ``e%2ff`` not ``e/f``."""
    return quote(path, safe="/")


def check(response: httpx.Response) -> None:
    """Turn an error response of the Geo API into the matching GeoSyncError."""
    if response.status_code < 400:
        return
    code = response.status_code
    body = _geo_error_body(response)
    if body is None:
        # Not the Geo API talking: a proxy, another service, or a wrong path prefix.
        where = f"{response.request.method} {response.request.url.copy_with(query=None)}"
        if code == 404:
            raise GeoSyncError(
                f"primary answered 404 for {where}: no Geo API at that URL",
                hint="primary_url must be the primary's scheme://host:port (plus any path "
                f"a reverse proxy adds) without {API_PREFIX}; geo-sync adds that itself")
        snippet = " ".join(response.text[:200].split())
        if code >= 500 or code == 429:
            raise TransientError(f"primary answered {code} for {where}: {snippet}",
                                 hint="not the Geo API's own answer: check the primary and "
                                 "any proxy in front of it; it will be retried")
        raise GeoSyncError(f"primary answered {code} for {where}: {snippet}",
                           hint="check primary_url and any proxy in front of the primary")
    message, hint = body
    if code == 409 and (moved := response.headers.get(NEW_PRIMARY_HEADER)):
        raise SiteReadOnly(f"primary refused: {message}",
                           hint=f"the primary is now {moved}: run `geo-sync secondary repoint "
                           f"{moved}` here")
    if code == 409:
        raise SiteReadOnly(f"primary refused: {message}", hint=hint or None)
    if code == 401:
        raise AuthError(f"primary refused our credentials: {message}", hint=hint or None)
    if code == 410:
        raise BackfillRequired(message)
    if code == 404 and response.headers.get(MISSING_HEADER):
        raise MissingOnPrimary(message)
    if code >= 500 or code == 429:
        raise TransientError(f"primary answered {code}: {message}")
    if code == 400:
        raise InvalidInput(f"primary answered {code}: {message}", hint=hint)
    raise GeoSyncError(f"primary answered {code}: {message}", hint=hint or None)


def _geo_error_body(response: httpx.Response) -> tuple[str, str] | None:
    """(message, hint) of a Geo API error body, or None when the body is not one."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or "error" not in body or "message" not in body:
        return None
    return str(body["message"]), str(body.get("hint") or "")
