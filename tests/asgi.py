"""An ASGI app served by uvicorn in a thread of the test process, on a free loopback
port: for tests that need a real HTTP server whose code or counters are this
process's (a subprocess would hide both)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.types import ASGIApp


@contextmanager
def served_in_thread(app: ASGIApp, *, https: bool = False, **config: Any) -> Iterator[str]:
    """Serve ``app`` until the block ends; yield its base URL. ``config`` goes to
    ``uvicorn.Config`` (``ssl_certfile`` and ``ssl_keyfile`` with ``https``)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise AssertionError("the test server did not start")
            threading.Event().wait(0.02)
        yield f"{'https' if https else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
