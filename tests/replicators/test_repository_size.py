"""A repository's size on the primary is taken while pushes go on: what a push's
quarantine directory holds may vanish during the walk, and that is not an error."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from replicators.repository import RepositoryReplicator, size_on_disk
from tests.gitutil import git


def _bare(path: Path) -> Path:
    git("init", "-q", "--bare", str(path))
    return path


def test_the_size_is_the_bytes_of_the_regular_files(tmp_path: Path) -> None:
    repo = _bare(tmp_path / "r.git")
    (repo / "objects" / "extra").write_bytes(b"x" * 1000)
    (repo / "objects" / "gone").symlink_to(repo / "nowhere")  # listed, then not there
    expected = sum(f.stat().st_size for f in repo.rglob("*")
                   if f.is_file() and not f.is_symlink())
    assert size_on_disk(repo) == expected
    assert RepositoryReplicator.describe(repo, "r.git").size == expected


def test_describe_skips_what_a_concurrent_push_removes(tmp_path: Path) -> None:
    """git creates and removes objects/tmp_objdir-incoming-* around every push; the old
    walk (Path.rglob) raised FileNotFoundError for about one call in 150 against this
    churn, which failed the whole drain of the push spool."""
    repo = _bare(tmp_path / "r.git")
    stop = threading.Event()

    def churn() -> None:
        number = 0
        while not stop.is_set():
            quarantine = repo / "objects" / f"tmp_objdir-incoming-{number}"
            quarantine.mkdir()
            for index in range(20):
                (quarantine / str(index)).write_bytes(b"x")
            shutil.rmtree(quarantine)
            number += 1

    pusher = threading.Thread(target=churn)
    pusher.start()
    try:
        for _ in range(1500):
            RepositoryReplicator.describe(repo, "r.git")
    finally:
        stop.set()
        pusher.join()
