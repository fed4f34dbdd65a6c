"""Fault-matrix fixtures: one Toxiproxy API for the session (a real one named by
``TOXIPROXY_URL``, or our compatible server), reset around every test."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
from toxiproxy import Toxiproxy

from tests.faults.rig import CELL_NOTES
from tests.faults.toxiproxy_api import ToxiproxyApi, toxiproxy_api

REPORT = "GEO_SYNC_FAULT_REPORT"  # set by bench/fault_matrix.py: one JSON line per test


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[None]:
    report = yield
    target = os.environ.get(REPORT)
    failed_setup = report.when == "setup" and not report.passed
    if target and (report.when == "call" or failed_setup):
        outcome = "xfailed" if hasattr(report, "wasxfail") else report.outcome
        detail = ""
        if report.skipped or outcome == "xfailed":
            longrepr = report.longrepr
            detail = (longrepr[2] if isinstance(longrepr, tuple)
                      else getattr(report, "wasxfail", "")) or ""
        elif report.failed:
            detail = str(report.longrepr).strip().splitlines()[-1][:300]
        with open(target, "a") as handle:
            handle.write(json.dumps({
                "test": item.nodeid, "outcome": outcome, "detail": str(detail),
                "seconds": round(report.duration, 1), **CELL_NOTES.get(item.nodeid, {}),
            }) + "\n")
    return report


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
