"""Real services for the tests: PostgreSQL databases made and dropped per test.

A service that is not running skips the tests that need it on a developer's
machine and fails them in CI (CI=true), where skipping would hide a regression.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

PG_ADMIN_DSN = os.environ.get(
    "GEO_SYNC_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)
PG_HOSTPORT = os.environ.get("GEO_SYNC_TEST_PG_URL_BASE", "postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("GEO_SYNC_TEST_REDIS", "redis://127.0.0.1:6379/0")


def service_missing(what: str, error: Exception) -> None:
    """Skip locally, fail in CI."""
    message = f"{what} is not reachable ({error})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def temporary_database(prefix: str = "geo_test") -> Iterator[str]:
    """Create a uniquely named PostgreSQL database; yield its SQLAlchemy URL; drop it."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        service_missing("PostgreSQL", exc)
        raise
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{PG_HOSTPORT}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
