"""Alembic environment for the tracking database; see geo_sync.migrate.run_env."""

from geo_sync.migrate import run_env

run_env()
