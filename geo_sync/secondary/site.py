"""Setting up a secondary site: config file, mirror layout, tracking schema."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from geo_sync.errors import ConfigError
from geo_sync.migrate import TRACKING
from geo_sync.settings import load_settings
from geo_sync.toml_out import dumps, write_atomically
from replicators.registry import REPLICATORS

CONFIG_NAME = "config.toml"


def init_secondary(
    directory: Path,
    *,
    primary_url: str,
    name: str,
    secret: str,
    database_url: str | None = None,
    broker_url: str = "embedded",
    force: bool = False,
    extra: Mapping[str, object] | None = None,
) -> Path:
    """Write a working secondary config under ``directory`` and create its tracking schema."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / CONFIG_NAME
    if config.exists() and not force:
        raise ConfigError(f"{config} already exists",
                          hint="pass --force to overwrite it, or use another --dir")
    mirror = directory / "mirror"
    for replicator in REPLICATORS.values():
        (mirror / replicator.storage_dir).mkdir(parents=True, exist_ok=True)
    section: dict[str, object] = {
        "name": name,
        "secret": secret,
        "primary_url": primary_url,
        "database_url": database_url or f"sqlite:///{directory / 'tracking.db'}",
        "mirror_root": str(mirror),
        "broker_url": broker_url,
        **(extra or {}),
    }
    write_atomically(config, dumps({"role": "secondary", "secondary": section,
                                    "log": {"level": "info", "format": "json"}}))
    settings = load_settings(config).require_secondary()
    TRACKING.upgrade_url(settings.database_url)
    return config
