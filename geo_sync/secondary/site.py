"""Setting up a secondary site: config file, mirror layout, tracking schema."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from geo_sync.db import require_reachable
from geo_sync.errors import ConfigError
from geo_sync.files import write_atomically
from geo_sync.migrate import TRACKING
from geo_sync.settings import SecondarySettings, load_settings, validate_section
from geo_sync.toml_out import dumps
from replicators.type_map import REPLICATORS

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
    """Write a working secondary config under ``directory`` and create its tracking schema.

    Options and the database are checked before anything is written, so a failed init
    leaves nothing behind and can simply be run again."""
    directory = directory.resolve()
    config = directory / CONFIG_NAME
    if config.exists() and not force:
        raise ConfigError(f"{config} already exists",
                          hint="pass --force to overwrite it, or use another --dir")
    mirror = directory / "mirror"
    section: dict[str, object] = {
        "name": name,
        "secret": secret,
        "primary_url": primary_url,
        "database_url": database_url or f"sqlite:///{directory / 'tracking.db'}",
        "mirror_root": str(mirror),
        "broker_url": broker_url,
        **(extra or {}),
    }
    validate_section(SecondarySettings, section)
    if database_url is not None:
        require_reachable(database_url)
    directory.mkdir(parents=True, exist_ok=True)
    TRACKING.upgrade_url(str(section["database_url"]))
    for replicator in REPLICATORS.values():
        (mirror / replicator.storage_dir).mkdir(parents=True, exist_ok=True)
    write_atomically(config, dumps({"role": "secondary", "secondary": section,
                                    "log": {"level": "info", "format": "json"}}))
    load_settings(config).require_secondary()
    return config
