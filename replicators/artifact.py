"""CI job artifacts: immutable blobs."""

from __future__ import annotations

from typing import ClassVar

from geo_sync.tracking.models import Registry, registry_model
from replicators.blob import BlobReplicator

#: The tracking-DB table of this type (its name is only here and in old migrations).
ArtifactRegistry = registry_model("artifact")


class ArtifactReplicator(BlobReplicator):
    """``artifacts/<relative path>``; sha256 of the content."""

    name: ClassVar[str] = "artifact"
    events: ClassVar[tuple[str, ...]] = ("created", "deleted")
    storage_dir: ClassVar[str] = "artifacts"
    default_concurrency: ClassVar[int] = 200
    default_batch_size: ClassVar[int] = 25
    default_verification_concurrency: ClassVar[int] = 20
    registry_table: ClassVar[Registry] = ArtifactRegistry
