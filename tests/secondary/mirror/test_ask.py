"""The lean client of the mirror server's ask (``ask.py``) against real HTTP servers on
real sockets: answers read by Content-Length over one kept connection, a connection
the server closed while idle replaced without the caller noticing, and every answer it
does not read handed back as Unsupported (the caller asks through httpx then)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from geo_sync.secondary.mirror.ask import Asker, Unsupported

Answer = Callable[[bytes], bytes]


async def _serve(answer: Answer, *, close_after: int | None = None
                 ) -> tuple[asyncio.Server, list[bytes], list[int]]:
    """A server answering each request head with ``answer(head)``; it closes a
    connection after ``close_after`` answers. Returns the server, the request heads it
    read and the number of connections it accepted (one item per connection)."""
    heads: list[bytes] = []
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        answered = 0
        try:
            while close_after is None or answered < close_after:
                head = await reader.readuntil(b"\r\n\r\n")
                heads.append(head)
                writer.write(answer(head))
                await writer.drain()
                answered += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, heads, connections


def _json(body: bytes, extra: bytes = b"") -> Answer:
    return lambda _head: (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                          b"content-length: %d\r\n%s\r\n%s" % (len(body), extra, body))


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def _asker(server: asyncio.Server) -> Asker:
    port = server.sockets[0].getsockname()[1]
    return Asker(f"http://127.0.0.1:{port}/api/geo/v1", None, timeout=30,
                 connect_timeout=5)


def test_asks_share_one_kept_connection_and_send_what_the_primary_expects() -> None:
    async def scenario() -> None:
        server, heads, connections = await _serve(_json(b'{"events": [], "more": false}'))
        port = server.sockets[0].getsockname()[1]
        async with server:
            asker = _asker(server)
            for _ in range(5):
                status, body = await asker.get("/events", {"cursor": "sq1;7", "limit": 500},
                                               "Bearer t0k")
                assert (status, body) == (200, b'{"events": [], "more": false}')
            await asker.aclose()
        assert len(connections) == 1
        first = heads[0].decode()
        assert first.startswith("GET /api/geo/v1/events?cursor=sq1%3B7&limit=500 HTTP/1.1\r\n")
        assert "\r\nAuthorization: Bearer t0k\r\n" in first
        assert f"\r\nHost: 127.0.0.1:{port}\r\n" in first

    _run(scenario)


def test_a_connection_closed_while_idle_is_replaced() -> None:
    async def scenario() -> None:
        server, heads, connections = await _serve(_json(b"{}"), close_after=1)
        async with server:
            asker = _asker(server)
            for _ in range(3):
                assert await asker.get("/events", {"cursor": "c"}, "Bearer t") == (200, b"{}")
            await asker.aclose()
        assert len(heads) == 3 and len(connections) == 3

    _run(scenario)


def test_connection_close_is_honoured() -> None:
    async def scenario() -> None:
        server, _heads, connections = await _serve(_json(b"{}", b"connection: close\r\n"))
        async with server:
            asker = _asker(server)
            for _ in range(2):
                assert await asker.get("/events", {}, "Bearer t") == (200, b"{}")
            await asker.aclose()
        assert len(connections) == 2

    _run(scenario)


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n{}",
    b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n{}",
    b"SSH-2.0-OpenSSH\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}",  # then the server closes
], ids=["chunked", "no-length", "two-lengths", "bad-length", "http10", "not-http", "short"])
def test_an_answer_it_does_not_read_is_unsupported(answer: bytes) -> None:
    async def scenario() -> None:
        server, _heads, _connections = await _serve(lambda _head: answer, close_after=1)
        async with server:
            asker = _asker(server)
            with pytest.raises(Unsupported):
                await asker.get("/events", {}, "Bearer t")
            await asker.aclose()

    _run(scenario)


def test_nobody_listening_is_an_oserror() -> None:
    async def scenario() -> None:
        server, _heads, _connections = await _serve(_json(b"{}"))
        asker = _asker(server)
        server.close()
        await server.wait_closed()
        with pytest.raises(OSError):
            await asker.get("/events", {}, "Bearer t")

    _run(scenario)
