"""The listening sockets of `primary serve` and `secondary serve` give every accepted
connection TCP_NODELAY.

uvicorn hands our socket to asyncio (``loop.create_server(sock=...)``), and asyncio
sets TCP_NODELAY only on connections whose socket says it is TCP (``proto ==
IPPROTO_TCP``). A socket made with proto 0 left Nagle on: every keep-alive response
after the first waited ~40 ms for the client's delayed ACK between its header and body
writes (the mirror server's ask to the primary took 44 ms instead of 2). The test
accepts a real connection the way uvicorn does and reads the option off the server's
side of it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

from geo_sync.cli.primary import listen_socket
from geo_sync.secondary.mirror.server import _bind


async def _accepted_nodelay(sock: socket.socket) -> int:
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_side = writer.get_extra_info("socket")
        accepted.set_result(server_side.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(connected, sock=sock)
    async with server:
        host, port = sock.getsockname()[:2]
        _reader, writer = await asyncio.open_connection(host, port)
        value = await asyncio.wait_for(accepted, timeout=30)
        writer.close()
    return value


@pytest.mark.parametrize("bind", [listen_socket, _bind], ids=["primary", "mirror"])
def test_accepted_connections_have_nodelay(bind: Callable[[str, int], socket.socket]) -> None:
    sock = bind("127.0.0.1", 0)
    try:
        if bind is listen_socket:
            sock.listen(16)  # `primary serve` listens in uvicorn; do it here
        assert asyncio.run(_accepted_nodelay(sock)) != 0
    finally:
        sock.close()
