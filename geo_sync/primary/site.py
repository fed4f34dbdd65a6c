"""Setting up a primary site: config file, storage layout, schema."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from geo_sync.db import make_engine, require_reachable
from geo_sync.errors import ConfigError
from geo_sync.files import write_atomically
from geo_sync.migrate import PRIMARY
from geo_sync.settings import (
    DEFAULT_PORT,
    PrimarySettings,
    Settings,
    load_settings,
    validate_section,
)
from geo_sync.toml_out import dumps
from replicators.type_map import REPLICATORS

CONFIG_NAME = "config.toml"


def init_primary(
    directory: Path,
    *,
    database_url: str | None = None,
    listen_host: str = "127.0.0.1",
    listen_port: int = DEFAULT_PORT,
    force: bool = False,
) -> Path:
    """Write a working primary config under ``directory``, create storage, migrate the DB.

    Everything is checked before anything is written: an unreachable or missing database
    leaves no config and no storage behind, so the same command works once it is fixed."""
    directory = directory.resolve()
    config = directory / CONFIG_NAME
    if config.exists() and not force:
        raise ConfigError(
            f"{config} already exists",
            hint="pass --force to overwrite it, or use another --dir",
        )
    storage = directory / "storage"
    url = database_url or f"sqlite:///{directory / 'primary.db'}"
    section = {
        "database_url": url,
        "storage_root": str(storage),
        "listen_host": listen_host,
        "listen_port": listen_port,
        "event_retention_seconds": 7 * 86400,
    }
    validate_section(PrimarySettings, section)
    if database_url is not None:
        require_reachable(url)
    directory.mkdir(parents=True, exist_ok=True)
    PRIMARY.upgrade_url(url)
    for replicator in REPLICATORS.values():
        (storage / replicator.storage_dir).mkdir(parents=True, exist_ok=True)
    text = dumps({"role": "primary", "primary": section,
                  "log": {"level": "info", "format": "json"}})
    write_atomically(config, text)
    load_settings(config).require_primary()
    return config


def open_primary(settings: Settings, *, pre_ping: bool = True
                 ) -> tuple[PrimarySettings, Engine]:
    """The primary section and an engine on a database at the current schema."""
    primary = settings.require_primary()
    engine = make_engine(primary.database_url, pre_ping=pre_ping)
    PRIMARY.require_current(engine)
    return primary, engine
