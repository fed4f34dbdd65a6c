"""Per-type test drivers: make an item on the primary, change it, compare copies."""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from pathlib import Path

from geo_sync.db import write_transaction
from geo_sync.primary.publish import Change, publish
from replicators.base import Replicator
from replicators.type_map import REPLICATORS
from tests.gitutil import git, make_repository, refs
from tests.sites import PrimarySite


class Driver(ABC):
    replicator: type[Replicator]

    def __init__(self, site: PrimarySite, scratch: Path) -> None:
        self.site = site
        self.scratch = scratch

    @property
    def root(self) -> Path:
        return self.site.storage(self.replicator.storage_dir)

    def publish(self, event: str, path: str, **fields: object) -> None:
        with write_transaction(self.site.engine) as conn:
            publish(conn, Change(self.replicator.name, event, path, **fields))  # type: ignore[arg-type]

    @abstractmethod
    def create(self, path: str) -> None: ...

    @abstractmethod
    def change(self, path: str) -> None: ...

    @abstractmethod
    def same(self, primary: Path, mirror: Path) -> bool: ...


class RepositoryDriver(Driver):
    replicator = REPLICATORS["repository"]

    def create(self, path: str) -> None:
        make_repository(self.root / path, self.scratch / f"work-{path.replace('/', '_')}")
        self.publish("created", path)

    def change(self, path: str) -> None:
        work = self.scratch / f"work-{path.replace('/', '_')}"
        git("reset", "-q", "--hard", "HEAD~1", cwd=work)
        (work / "rewritten.txt").write_text(os.urandom(8).hex())
        git("add", ".", cwd=work)
        git("commit", "-q", "-m", "rewrite history", cwd=work)
        git("push", "-q", "--force", "bare", "main", ":feature", ":refs/tags/v1", cwd=work)
        self.publish("updated", path)

    def same(self, primary: Path, mirror: Path) -> bool:
        head = ("symbolic-ref", "HEAD")
        return refs(primary) == refs(mirror) and git(*head, cwd=primary).stdout == git(
            *head, cwd=mirror).stdout


class ArtifactDriver(Driver):
    replicator = REPLICATORS["artifact"]

    def create(self, path: str) -> None:
        data = os.urandom(3 * 1024 * 1024 + 17)
        (self.root / path).parent.mkdir(parents=True, exist_ok=True)
        (self.root / path).write_bytes(data)
        self.publish("created", path, size=len(data), checksum=hashlib.sha256(data).hexdigest())

    def change(self, path: str) -> None:
        (self.root / path).unlink()
        self.create(path)

    def same(self, primary: Path, mirror: Path) -> bool:
        return primary.read_bytes() == mirror.read_bytes()


class JobLogDriver(Driver):
    replicator = REPLICATORS["job_log"]

    def create(self, path: str) -> None:
        (self.root / path).parent.mkdir(parents=True, exist_ok=True)
        data = b"".join(f"step {n}: ok\n".encode() for n in range(2000))
        (self.root / path).write_bytes(data)
        self.publish("created", path, size=len(data))

    def change(self, path: str) -> None:
        with (self.root / path).open("ab") as handle:
            handle.write(b"appended line\n" * 100)
        self.publish("appended", path, size=(self.root / path).stat().st_size)

    def same(self, primary: Path, mirror: Path) -> bool:
        return primary.read_bytes() == mirror.read_bytes()


DRIVERS: dict[str, type[Driver]] = {
    "repository": RepositoryDriver, "artifact": ArtifactDriver, "job_log": JobLogDriver,
}
