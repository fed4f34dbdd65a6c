"""The mirror server's ask to the primary (``GET /events?cursor=...``) on a lean
HTTP/1.1 keep-alive connection of its own.

The ask is made before (nearly) every request the mirror serves, so its cost is the
mirror's cost per request: through httpx/httpcore it was about a third of the mirror
server's CPU (building the request, the connection pool's bookkeeping, an import
of sniffio attempted on every request). Here one request is one prebuilt string
written to a kept connection, and the answer is read by its Content-Length.

Anything this client does not take (a chunked or length-less answer, a status line
it cannot read) raises ``Unsupported``: the caller asks again through httpx, which
takes everything. A connection the primary closed while idle (its keep-alive
timeout) is noticed on use and the ask is sent once more on a new connection; the
ask is a read, so sending it again is safe, and it is still sent after the request
that waits for it arrived (``pending.py``'s rule).
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlencode, urlsplit

#: Idle connections kept (asks in flight at once are few: one per cursor).
MAX_IDLE = 8
#: An answer longer than this is not an events page (500 events are ~150 KB).
MAX_BODY = 32 * 1024 * 1024
_HEAD_LIMIT = 64 * 1024


class Unsupported(Exception):
    """An answer this client does not read: ask through the general client instead."""


class _Closed(Exception):
    """The kept connection was closed by the primary before it answered."""


_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Asker:
    """GETs of JSON from one primary over kept HTTP/1.1 connections."""

    def __init__(self, base_url: str, tls: ssl.SSLContext | None, timeout: float,
                 connect_timeout: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = tls if parts.scheme == "https" else None
        if parts.scheme == "https" and tls is None:
            raise ValueError("an https primary needs a TLS context")
        self.path = parts.path.rstrip("/")
        self.host_header = parts.netloc.rpartition("@")[2]
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._idle: list[_Conn] = []

    async def get(self, path: str, params: dict[str, str | int], authorization: str
                  ) -> tuple[int, bytes]:
        """``(status, body)`` of ``GET <base><path>?<params>``. Raises OSError or
        TimeoutError when the primary cannot be reached or does not answer in time,
        Unsupported for an answer this client does not read."""
        request = (f"GET {self.path}{path}?{urlencode(params)} HTTP/1.1\r\n"
                   f"Host: {self.host_header}\r\nAuthorization: {authorization}\r\n"
                   "Accept: application/json\r\n\r\n").encode("latin-1")
        async with asyncio.timeout(self.timeout):
            while self._idle:
                conn = self._idle.pop()
                try:
                    return await self._round_trip(conn, request)
                except (_Closed, OSError):
                    _close(conn)  # closed while idle: try the next, then a new one
            conn = await self._open()
            try:
                return await self._round_trip(conn, request)
            except _Closed:
                _close(conn)
                raise ConnectionResetError("the primary closed the connection "
                                           "without answering") from None

    async def _open(self) -> _Conn:
        async with asyncio.timeout(self.connect_timeout):
            return await asyncio.open_connection(
                self.host, self.port, ssl=self.tls,
                server_hostname=self.host if self.tls is not None else None,
                limit=_HEAD_LIMIT)

    async def _round_trip(self, conn: _Conn, request: bytes) -> tuple[int, bytes]:
        reader, writer = conn
        try:
            writer.write(request)
            await writer.drain()
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if not exc.partial:
                    raise _Closed from None
                raise Unsupported("the primary's answer broke off in its headers") from None
            except asyncio.LimitOverrunError:
                raise Unsupported("the primary's answer has over 64 KiB of headers") from None
            status, length, keep = _parse_head(head)
            try:
                body = await reader.readexactly(length) if length else b""
            except asyncio.IncompleteReadError:
                raise Unsupported("the primary's answer is shorter than it said") from None
        except BaseException:
            _close(conn)  # whatever is left on it cannot be trusted
            raise
        if keep and len(self._idle) < MAX_IDLE:
            self._idle.append(conn)
        else:
            _close(conn)
        return status, body

    async def aclose(self) -> None:
        while self._idle:
            _close(self._idle.pop())


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    """(status, content length, keep the connection) of a response head."""
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if version != b"HTTP/1.1" or not code.isdigit():
        raise Unsupported(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
    length: int | None = None
    keep = True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip()
        if name == b"content-length":
            if not value.isdigit() or length is not None or int(value) > MAX_BODY:
                raise Unsupported("no single usable Content-Length")
            length = int(value)
        elif name == b"transfer-encoding":
            raise Unsupported("a chunked answer")
        elif name == b"connection" and value.lower() == b"close":
            keep = False
    if length is None:
        raise Unsupported("an answer without Content-Length")
    return int(code), length, keep


def _close(conn: _Conn) -> None:
    conn[1].close()
