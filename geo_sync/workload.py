"""A deterministic CI workload on a primary: repositories with history, artifacts,
live job logs, and rounds of the changes a CI site sees (pushes, force-pushes,
branch deletions, renames, deletions, uploads, appends, archiving).

Used by `geo-sync demo`, the end-to-end tests and the benchmarks. Every change is
made on disk first and then published, as a CI system would.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from geo_sync.files import CHUNK
from geo_sync.primary.publish import Change
from replicators.artifact import ArtifactReplicator as _ARTIFACT
from replicators.job_log import JobLogReplicator as _LOG
from replicators.repository import RepositoryReplicator as _REPO

ARTIFACT_DIR = _ARTIFACT.storage_dir
"""Where the workload's artifacts lie under a site's storage root (and a mirror's URL)."""

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "geo-sync workload", "GIT_AUTHOR_EMAIL": "ci@geo-sync.invalid",
    "GIT_COMMITTER_NAME": "geo-sync workload", "GIT_COMMITTER_EMAIL": "ci@geo-sync.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}

Publisher = Callable[[Change], None]


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git with a fixed identity; raise with git's own message on failure."""
    result = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_IDENTITY},
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


@dataclass
class Workload:
    """Drives changes into ``storage`` (a primary's storage root) and publishes them."""

    storage: Path
    scratch: Path
    publish: Publisher
    seed: int = 7
    repositories: list[str] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)
    live_logs: list[str] = field(default_factory=list)
    changes: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)  # noqa: S311 - test data, not secrets

    # -- building blocks ---------------------------------------------------------

    def _worktree(self, repo: str) -> Path:
        return self.scratch / "worktrees" / repo.replace("/", "__")

    def _emit(self, change: Change) -> None:
        self.publish(change)
        self.changes += 1

    def _commit(self, work: Path, message: str) -> None:
        name = f"file-{self.rng.randrange(10**6)}.txt"
        (work / name).write_text(f"{message}\n" * self.rng.randint(1, 50))
        git("add", ".", cwd=work)
        git("commit", "-q", "-m", message, cwd=work)

    def create_repository(self, repo: str, commits: int) -> None:
        work = self._worktree(repo)
        git("init", "-q", "-b", "main", str(work))
        for n in range(commits):
            self._commit(work, f"{repo} commit {n}")
        git("branch", "feature", cwd=work)
        git("tag", "-a", "v1.0", "-m", "release 1.0", cwd=work)
        bare = self.storage / _REPO.storage_dir / repo
        bare.parent.mkdir(parents=True, exist_ok=True)
        git("clone", "-q", "--bare", str(work), str(bare))
        git("remote", "add", "primary", str(bare), cwd=work)
        self.repositories.append(repo)
        self._emit(Change(_REPO.name, "created", repo))

    def push(self, repo: str) -> None:
        work = self._worktree(repo)
        self._commit(work, "a push")
        git("push", "-q", "primary", "main", cwd=work)
        self._emit(Change(_REPO.name, "updated", repo))

    def force_push(self, repo: str) -> None:
        work = self._worktree(repo)
        git("reset", "-q", "--hard", "HEAD~1", cwd=work)
        self._commit(work, "rewritten history")
        git("push", "-q", "--force", "primary", "main", cwd=work)
        self._emit(Change(_REPO.name, "updated", repo))

    def delete_branch(self, repo: str) -> None:
        work = self._worktree(repo)
        git("push", "-q", "primary", ":feature", ":refs/tags/v1.0", cwd=work)
        self._emit(Change(_REPO.name, "updated", repo))

    def rename_repository(self, repo: str, new: str) -> None:
        root = self.storage / _REPO.storage_dir
        (root / new).parent.mkdir(parents=True, exist_ok=True)
        (root / repo).rename(root / new)
        work = self._worktree(repo)
        work.rename(self._worktree(new))
        git("remote", "set-url", "primary", str(root / new), cwd=self._worktree(new))
        self.repositories[self.repositories.index(repo)] = new
        self._emit(Change(_REPO.name, "renamed", new, old_path=repo))

    def delete_repository(self, repo: str) -> None:
        shutil.rmtree(self.storage / _REPO.storage_dir / repo)
        self.repositories.remove(repo)
        self._emit(Change(_REPO.name, "deleted", repo))

    def upload_artifact(self, path: str, size: int) -> None:
        target = self.storage / _ARTIFACT.storage_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with target.open("wb") as handle:
            for start in range(0, size, CHUNK):
                block = self.rng.randbytes(min(CHUNK, size - start))
                digest.update(block)
                handle.write(block)
        self.artifacts.append(path)
        self._emit(Change(_ARTIFACT.name, "created", path, size=size, checksum=digest.hexdigest()))

    def delete_artifact(self, path: str) -> None:
        (self.storage / _ARTIFACT.storage_dir / path).unlink()
        self.artifacts.remove(path)
        self._emit(Change(_ARTIFACT.name, "deleted", path))

    def start_log(self, path: str) -> None:
        target = self.storage / _LOG.storage_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"$ ./ci/build.sh\n")
        self.live_logs.append(path)
        self._emit(Change(_LOG.name, "created", path, size=target.stat().st_size))

    def append_log(self, path: str) -> None:
        target = self.storage / _LOG.storage_dir / path
        with target.open("ab") as handle:
            for _ in range(self.rng.randint(5, 200)):
                handle.write(f"step {self.rng.randrange(10**6)}: ok\n".encode())
        self._emit(Change(_LOG.name, "appended", path, size=target.stat().st_size))

    def archive_log(self, path: str) -> None:
        target = self.storage / _LOG.storage_dir / path
        data = target.read_bytes()
        self.live_logs.remove(path)
        self._emit(Change(_LOG.name, "archived", path, size=len(data),
                          checksum=hashlib.sha256(data).hexdigest()))

    # -- scenarios ---------------------------------------------------------------

    def initial(self, repositories: int = 4, artifacts: int = 12, logs: int = 4) -> None:
        """The data a site has before the secondary arrives."""
        for n in range(repositories):
            self.create_repository(f"group{n % 2}/project{n}.git", commits=3 + n % 4)
        for n in range(artifacts):
            self.upload_artifact(f"pipelines/{n}/artifacts.zip", 1024 * (1 + n % 64))
        for n in range(logs):
            self.start_log(f"jobs/{n}/trace.log")
            self.append_log(f"jobs/{n}/trace.log")

    def round(self, number: int) -> None:
        """One round of everyday CI changes; round 1 renames and round 2 deletes a repo."""
        repos = self.repositories
        self.push(repos[number % len(repos)])
        self.force_push(repos[(number + 1) % len(repos)])
        if number < len(repos):
            self.delete_branch(repos[(number + 2) % len(repos)])
        if number == 1:
            self.rename_repository(repos[0], f"moved/renamed-{number}.git")
        if number == 2 and len(repos) > 2:
            self.delete_repository(repos[-1])
        for k in range(3):
            self.upload_artifact(f"pipelines/r{number}-{k}/artifacts.zip",
                                 self.rng.randint(1, 256) * 1024)
        if self.artifacts:
            self.delete_artifact(self.artifacts[0])
        for path in list(self.live_logs)[:2]:
            self.append_log(path)
        if self.live_logs:
            self.archive_log(self.live_logs[0])
        self.start_log(f"jobs/r{number}/trace.log")
        self.append_log(f"jobs/r{number}/trace.log")
