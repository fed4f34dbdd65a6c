"""Fixtures of the hostile-input tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from geo_sync.secondary.cursor import LogCursor
from geo_sync.secondary.runtime import Runtime, open_runtime
from tests.sites import SecondarySite


@pytest.fixture
def runtime(secondary: SecondarySite) -> Iterator[Runtime]:
    rt = open_runtime(secondary.settings)
    LogCursor(rt).run_once(wait=0)  # the first start backfills an empty catalog
    yield rt
    rt.close()
