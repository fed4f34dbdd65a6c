from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from geo_sync.secondary.client import PrimaryClient
from geo_sync.settings import SecondarySettings
from replicators.base import SyncContext
from replicators.repository import configure_git_timeouts
from tests.sites import PrimarySite, primary_site


@pytest.fixture
def served(tmp_path: Path) -> Iterator[PrimarySite]:
    """One running primary (SQLite: the replicators do not touch the primary DB)."""
    with primary_site(tmp_path / "primary", None) as site:
        yield site


@pytest.fixture
def ctx(served: PrimarySite, tmp_path: Path) -> Iterator[SyncContext]:
    settings = SecondarySettings(name="s1", secret=served.secret, primary_url=served.url,
                                 database_url="sqlite:///unused.db",
                                 mirror_root=tmp_path / "mirror")
    configure_git_timeouts(settings.http_timeout_seconds)
    client = PrimaryClient(settings)
    yield SyncContext(client=client, mirror_root=tmp_path / "mirror")
    client.close()
