"""The map of data types: name -> replicator class. Add new types here.

Each side asks for its own half of a type: the primary's code for the ``Original``
(``original_for``, ``originals``), the secondary's and verification's for the ``Copy``
(``copy_for``, ``copies``); ``REPLICATORS`` itself is for what both read (names,
storage directories, registry tables).
"""

from __future__ import annotations

import difflib

from geo_sync.errors import ConfigError, InvalidInput
from geo_sync.settings import SecondarySettings
from replicators.artifact import ArtifactReplicator
from replicators.base import Copy, Original, Replicator
from replicators.job_log import JobLogReplicator
from replicators.repository import RepositoryReplicator

REPLICATORS: dict[str, type[Replicator]] = {
    cls.name: cls for cls in (RepositoryReplicator, ArtifactReplicator, JobLogReplicator)
}


def replicator_for(name: object) -> type[Replicator]:
    """The replicator class for a type name, or InvalidInput naming the valid ones."""
    if isinstance(name, str) and name in REPLICATORS:
        return REPLICATORS[name]
    raise InvalidInput(
        f"unknown replicable type {name!r}; expected one of {', '.join(REPLICATORS)}"
    )


def original_for(name: object) -> type[Original]:
    """The primary's side of the type named ``name`` (InvalidInput if none is)."""
    return replicator_for(name)


def copy_for(name: object) -> type[Copy]:
    """The secondary's side of the type named ``name`` (InvalidInput if none is)."""
    return replicator_for(name)


def originals() -> list[type[Original]]:
    """The primary's side of every registered type, in registration order."""
    return list(REPLICATORS.values())


def copies() -> list[type[Copy]]:
    """The secondary's side of every registered type, in registration order."""
    return list(REPLICATORS.values())


def served_over_git() -> type[Replicator]:
    """The type served over git: the one whose pushes the hooks publish and whose items
    the git HTTP endpoints (the Geo API's and the mirror server's) serve."""
    served = [cls for cls in REPLICATORS.values() if cls.transport == "git"]
    if len(served) != 1:
        raise ConfigError(f"exactly one data type is served over git, not {len(served)}")
    return served[0]


def git_original() -> type[Original]:
    """The primary's side of the type served over git."""
    return served_over_git()


PER_TYPE_SETTINGS = ("concurrency", "batch_size", "verification_concurrency")


def check_type_settings(settings: SecondarySettings) -> None:
    """Refuse a per-type setting that names no registered data type (a typo would
    otherwise leave that type at its default without a word)."""
    fields = [(field, getattr(settings, field)) for field in PER_TYPE_SETTINGS]
    fields += [(f"selection.{rule}", getattr(settings.selection, rule))
               for rule in ("include", "exclude")]
    for field, setting in fields:
        for key in setting:
            if key == "*" or key in REPLICATORS:
                continue
            close = difflib.get_close_matches(key, list(REPLICATORS), n=1)
            guess = f" (did you mean secondary.{field}.{close[0]}?)" if close else ""
            raise ConfigError(
                f"secondary.{field}.{key}: unknown data type{guess}",
                hint=f"the data types are {', '.join(REPLICATORS)}; '*' sets every type")
