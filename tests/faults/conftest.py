"""Fault-matrix fixtures: one Toxiproxy API for the session (a real one named by
``TOXIPROXY_URL``, or our compatible server), reset around every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from toxiproxy import Toxiproxy

from tests.faults.toxiproxy_api import ToxiproxyApi, toxiproxy_api


@pytest.fixture(scope="session")
def toxiproxy_server() -> Iterator[ToxiproxyApi]:
    with toxiproxy_api() as api:
        yield api


@pytest.fixture
def toxiproxy(toxiproxy_server: ToxiproxyApi) -> Iterator[Toxiproxy]:
    """The toxiproxy-python client; every proxy a test made is destroyed after it."""
    client = toxiproxy_server.client()
    before = set(client.proxies())
    yield client
    client.update_api_consumer(toxiproxy_server.host, toxiproxy_server.port)
    for name, proxy in client.proxies().items():
        if name not in before:
            proxy.destroy()
