"""The registry of data types: name -> replicator class. Add new types here."""

from __future__ import annotations

from geo_sync.errors import InvalidInput
from replicators.artifact import ArtifactReplicator
from replicators.base import Replicator
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
