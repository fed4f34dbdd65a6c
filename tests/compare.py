"""The tests' own comparison of a mirror with its primary, with the git CLI and bytes
(independent of geo_sync.compare, which the demo uses)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from replicators.type_map import REPLICATORS
from tests.gitutil import git

TEMP = ".geo-sync-tmp-"


def _repositories(root: Path) -> dict[str, str]:
    found = {}
    for head in sorted(root.rglob("HEAD")):
        repo = head.parent
        if repo.name.endswith(".git") and (repo / "objects").is_dir() and TEMP not in str(repo):
            refs = git("for-each-ref", "--format=%(objectname) %(refname)", cwd=repo).stdout
            symbolic = git("symbolic-ref", "-q", "HEAD", cwd=repo, check=False).stdout
            found[repo.relative_to(root).as_posix()] = symbolic + refs
    return found


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(TEMP)}


def differences(primary_storage: Path, mirror_root: Path,
                selected: Callable[[str, str], bool] | None = None) -> list[str]:
    """What differs; empty when the mirror equals the primary (only the items for which
    ``selected(type name, path)`` holds, when given: a selective secondary)."""
    found = []
    for replicator in REPLICATORS.values():
        # Git-served types compare by refs and HEAD (git's view); the rest byte by byte.
        read = _repositories if replicator.transport == "git" else _files
        a: dict[str, object] = {
            path: value for path, value in read(primary_storage / replicator.storage_dir).items()
            if selected is None or selected(replicator.name, path)}
        b: dict[str, object] = dict(read(mirror_root / replicator.storage_dir))
        found += [f"{replicator.name} {p}" for p in sorted(set(a) | set(b))
                  if a.get(p) != b.get(p)]
    return found


def temp_files(root: Path) -> list[Path]:
    """geo-sync's temporary files and directories under ``root``, while it runs.

    os.walk, not rglob: a temporary directory renamed into place during the walk made
    rglob raise FileNotFoundError (a fault-matrix cell failed on it); os.walk skips a
    directory that is gone by the time it is listed."""
    found: list[Path] = []
    for directory, dirs, files in os.walk(root):
        found += [Path(directory, name) for name in (*dirs, *files) if name.startswith(TEMP)]
    return found
