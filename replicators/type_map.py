"""The map of data types: name -> replicator class, for the types registered in
``replicators.type_names`` (add new types there).

Each side asks for its own half of a type: the primary's code for the ``Original``
(``original_for``, ``originals``), the secondary's and verification's for the ``Copy``
(``copy_for``, ``copies``); ``REPLICATORS`` itself is for what both read (names,
storage directories, registry tables).
"""

from __future__ import annotations

import importlib

from geo_sync.errors import ConfigError, InvalidInput
from replicators.base import Copy, Original, Replicator
from replicators.type_names import DATA_TYPES


def _load(name: str, where: str) -> type[Replicator]:
    module, attribute = where.split(":")
    cls = getattr(importlib.import_module(module), attribute)
    if not (isinstance(cls, type) and issubclass(cls, Replicator)) or cls.name != name:
        raise ConfigError(f"data type {name!r} is registered as {where}, which is not "
                          f"a Replicator named {name!r}")
    return cls


REPLICATORS: dict[str, type[Replicator]] = {
    name: _load(name, where) for name, where in DATA_TYPES.items()
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
