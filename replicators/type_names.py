"""The data types by name: the registration of every type, light enough for any command.

``DATA_TYPES`` maps each type's name to the class that defines it ("module:Class"), in
registration order. Add a new type here. ``replicators.type_map`` imports the classes
(for what transfers, checksums or publishes items); what needs only the names and each
type's registry table (status, check, the per-type settings check) reads this module,
which imports no replicator class: a type's class pulls in its transfer code (httpx,
pygit2), and `geo-sync status` would pay for it at every start
(tests/cli/test_startup_imports.py).
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from geo_sync.errors import ConfigError

if TYPE_CHECKING:
    from geo_sync.settings import SecondarySettings
    from geo_sync.tracking.models import Registry

DATA_TYPES: dict[str, str] = {
    "repository": "replicators.repository:RepositoryReplicator",
    "artifact": "replicators.artifact:ArtifactReplicator",
    "job_log": "replicators.job_log:JobLogReplicator",
}


def type_names() -> list[str]:
    """Every registered type's name, in registration order."""
    return list(DATA_TYPES)


def registry_tables() -> dict[str, Registry]:
    """Every registered type's registry table (the same class its replicator declares,
    ``registry_model(name)``), by type name, in registration order."""
    from geo_sync.tracking.models import registry_model  # noqa: PLC0415 - see above

    return {name: registry_model(name) for name in DATA_TYPES}


PER_TYPE_SETTINGS = ("concurrency", "batch_size", "verification_concurrency")


def check_type_settings(settings: SecondarySettings) -> None:
    """Refuse a per-type setting that names no registered data type (a typo would
    otherwise leave that type at its default without a word)."""
    names = type_names()
    fields = [(field, getattr(settings, field)) for field in PER_TYPE_SETTINGS]
    fields += [(f"selection.{rule}", getattr(settings.selection, rule))
               for rule in ("include", "exclude")]
    for field, setting in fields:
        for key in setting:
            if key == "*" or key in names:
                continue
            close = difflib.get_close_matches(key, names, n=1)
            guess = f" (did you mean secondary.{field}.{close[0]}?)" if close else ""
            raise ConfigError(
                f"secondary.{field}.{key}: unknown data type{guess}",
                hint=f"the data types are {', '.join(names)}; '*' sets every type")
