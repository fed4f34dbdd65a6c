"""Sending a file over HTTP: the response the primary's blob download and the
secondary's mirror server share, and the server side of its zero-copy path.

Large whole-file responses go out with ``sendfile(2)``: uvicorn's h11 protocol does
not implement ASGI's zero-copy send extension, so ``ZeroCopyH11Protocol`` adds it
(``http.response.zerocopysend``: a file, an offset and a count). h11 frames the body
around a placeholder of that length (``send_with_data_passthrough``, made for
sendfile) and ``loop.sendfile`` has the kernel copy the bytes from the page cache to
the socket. Over TLS it is not offered (the kernel cannot encrypt for Python's ssl):
the response reads and writes 1 MiB at a time there, as everywhere before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast

import h11
from starlette.responses import FileResponse
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from geo_sync.files import CHUNK
from geo_sync.metrics import ZERO_COPY_BYTES

#: ASGI's zero-copy send extension (the message type and the scope's extension key).
ZERO_COPY = "http.response.zerocopysend"
#: Smaller bodies are read and written: below this a sendfile's set-up (the write
#: buffer drained first, reading paused and resumed) costs more than the copy saves.
ZERO_COPY_MIN = 256 * 1024

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class LargeChunkFileResponse(FileResponse):
    """FileResponse with 1 MiB chunks (64 KiB caps loopback near 0.85 GB/s), sending
    exactly the size it declared; zero-copy for a whole file of ZERO_COPY_MIN or more
    when the server offers it (ZeroCopyH11Protocol).

    Starlette reads a whole-file response until EOF; a job log appended while it
    is being served then overruns its Content-Length and the connection breaks.
    Range responses are already bounded.
    """

    chunk_size = CHUNK
    _zero_copy = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._zero_copy = ZERO_COPY in scope.get("extensions", {})
        await super().__call__(scope, receive, send)

    async def _handle_simple(self, send: Send, send_header_only: bool,
                             send_pathsend: bool) -> None:
        assert self.stat_result is not None
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        if send_header_only:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        remaining = self.stat_result.st_size
        async with self._open_file() as file:
            if self._zero_copy and remaining >= ZERO_COPY_MIN:
                await send({"type": ZERO_COPY, "file": file.wrapped, "offset": 0,
                            "count": remaining, "more_body": False})
                return
            while True:
                chunk = await file.read(min(self.chunk_size, remaining))
                remaining -= len(chunk)
                more = remaining > 0 and bool(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
                if not more:
                    return


class _Span:
    """Stands for ``count`` bytes of a file in h11's output: h11 frames the body
    around it and hands it back (send_with_data_passthrough) for sendfile to send."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count


class ZeroCopyH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, offering ASGI's zero-copy send extension: a message
    ``{"type": "http.response.zerocopysend", "file", "offset", "count", "more_body"}``
    has the kernel send ``count`` bytes of ``file`` from ``offset``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = self._offer_zero_copy(self.app)

    def _offer_zero_copy(self, app: ASGIApp) -> ASGIApp:
        async def with_zero_copy(scope: Scope, receive: Receive, send: Send) -> None:
            # Over TLS the kernel cannot encrypt (Python's ssl has no kernel TLS), and
            # asyncio's fallback reads 256 KiB at a time through a thread: slower than the
            # response's own 1 MiB reads, so the extension is not offered there.
            if scope["type"] != "http" or self.transport.get_extra_info("sslcontext"):
                await app(scope, receive, send)
                return
            scope["extensions"] = {**scope.get("extensions", {}), ZERO_COPY: {}}

            async def send_or_sendfile(message: MutableMapping[str, Any]) -> None:
                if message["type"] == ZERO_COPY:
                    await self._sendfile(scope, message)
                    # The body is out: the cycle ends the message (and keeps the
                    # connection alive, or closes it) as after any last body.
                    message = {"type": "http.response.body", "body": b"",
                               "more_body": message.get("more_body", False)}
                await send(message)

            await app(scope, receive, send_or_sendfile)

        return with_zero_copy

    async def _sendfile(self, scope: Scope, message: MutableMapping[str, Any]) -> None:
        cycle = self.cycle
        if cycle is None or cycle.disconnected or scope["method"] == "HEAD":
            return
        count = int(message["count"])
        span = _Span(count)
        # h11 types Data's data as bytes; passthrough is made for objects with a len().
        framed: list[object] = list(
            self.conn.send_with_data_passthrough(h11.Data(data=cast(bytes, span))) or ())
        for part in framed:
            if part is not span:
                self.transport.write(cast(bytes, part))
                continue
            try:
                sent = await asyncio.get_running_loop().sendfile(
                    self.transport, message["file"], int(message.get("offset", 0)), count)
            except (ConnectionError, OSError):
                sent = 0  # the client went away; its connection is closing
            ZERO_COPY_BYTES.inc(sent)
            if sent < count:
                # Shorter than declared (the file shrank, or the client left): the
                # response cannot be completed on this connection.
                self.transport.close()
