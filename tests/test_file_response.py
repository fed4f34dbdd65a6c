"""File downloads as both servers send them (LargeChunkFileResponse on uvicorn with
ZeroCopyH11Protocol), over a real socket to real clients (curl, httpx): a whole file
of ZERO_COPY_MIN bytes or more is sent by the kernel (sendfile), smaller ones, HEAD
and ranges are read and written, and every one arrives byte-exact, over keep-alive
and over TLS (where the kernel cannot encrypt: read and written)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from geo_sync.file_response import ZERO_COPY_MIN, LargeChunkFileResponse, ZeroCopyH11Protocol
from tests.asgi import served_in_thread
from tests.deployment import wait_for
from tests.tls import TestCA, make_ca


def zero_copy_bytes() -> float:
    return REGISTRY.get_sample_value("geo_sync_http_zero_copy_bytes_total") or 0.0


def wait_zero_copied(before: float, expected: int) -> None:
    """The server thread counts what sendfile sent when it returns, which may be just
    after the client has read the last byte."""
    wait_for(lambda: zero_copy_bytes() - before == expected,
             f"{expected} bytes counted as sent by the kernel", 10)


@dataclass
class FileServer:
    root: Path
    url: str

    def put(self, name: str, size: int) -> bytes:
        data = os.urandom(size)
        (self.root / name).write_bytes(data)
        return data


@contextmanager
def file_server(root: Path, tls: TestCA | None = None) -> Iterator[FileServer]:
    """uvicorn on a free loopback port, in a thread of this process (so that its
    counters are this process's), serving ``root/<name>`` as the servers do."""

    async def download(request: Request) -> Response:
        path = root / request.path_params["name"]
        return LargeChunkFileResponse(path, stat_result=path.stat())  # as both servers do

    app = Starlette(routes=[Route("/{name}", download, methods=["GET", "HEAD"])])
    with served_in_thread(app, https=tls is not None, http=ZeroCopyH11Protocol,
                          ssl_certfile=str(tls.cert) if tls else None,
                          ssl_keyfile=str(tls.key) if tls else None) as url:
        yield FileServer(root, url)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FileServer]:
    with file_server(tmp_path_factory.mktemp("files")) as running:
        yield running


def curl(*args: str) -> bytes:
    return subprocess.run(["curl", "-sS", "--fail", *args], capture_output=True, check=True,
                          timeout=60).stdout


def test_a_large_file_is_sent_by_the_kernel_twice_over_one_connection(
        served: FileServer) -> None:
    data = served.put("large.bin", 3 * 1024 * 1024 + 7)
    before = zero_copy_bytes()
    # Two URLs in one curl: the second request reuses the connection (keep-alive).
    both = curl(f"{served.url}/large.bin", f"{served.url}/large.bin")
    assert both == data + data
    wait_zero_copied(before, 2 * len(data))


def test_a_small_file_head_and_a_range_are_read_and_written(served: FileServer) -> None:
    small = served.put("small.bin", ZERO_COPY_MIN - 1)
    large = served.put("ranged.bin", 2 * ZERO_COPY_MIN)
    before = zero_copy_bytes()
    assert curl(f"{served.url}/small.bin") == small
    headers = curl("-I", f"{served.url}/ranged.bin").decode().lower()
    assert f"content-length: {len(large)}" in headers
    assert curl("-r", "1000-299999", f"{served.url}/ranged.bin") == large[1000:300000]
    assert zero_copy_bytes() == before


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.one_of(st.sampled_from([0, 1, ZERO_COPY_MIN - 1, ZERO_COPY_MIN,
                                       ZERO_COPY_MIN + 1]),
                      st.integers(min_value=0, max_value=4 * 1024 * 1024)))
def test_every_size_arrives_whole_and_only_large_ones_by_the_kernel(
        served: FileServer, size: int) -> None:
    data = served.put("any.bin", size)
    before = zero_copy_bytes()
    with httpx.Client(base_url=served.url, timeout=30) as client:
        for _ in range(2):  # the second over the same connection
            answer = client.get("/any.bin")
            assert answer.status_code == 200
            assert answer.headers["content-length"] == str(size)
            assert answer.content == data
    if size >= ZERO_COPY_MIN:
        wait_zero_copied(before, 2 * size)
    else:
        assert zero_copy_bytes() == before


def test_over_tls_a_large_file_arrives_whole_read_and_written(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    with file_server(tmp_path, tls=ca) as server:
        data = server.put("large.bin", 2 * 1024 * 1024 + 3)
        before = zero_copy_bytes()
        got = curl("--cacert", str(ca.ca_cert), f"{server.url}/large.bin",
                   f"{server.url}/large.bin")
        assert got == data + data
        assert zero_copy_bytes() == before, "sendfile cannot send through TLS"
