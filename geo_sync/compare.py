"""Comparing a mirror with its primary: same repositories with the same refs and
HEAD, same files with the same bytes. Returns the differences as data."""

from __future__ import annotations

from pathlib import Path

from geo_sync.paths import TEMP_PREFIX
from replicators.type_map import REPLICATORS


def compare_storage(primary_root: Path, mirror_root: Path) -> list[str]:
    """Every way ``mirror_root`` differs from ``primary_root``; empty when equal."""
    differences: list[str] = []
    for replicator in REPLICATORS.values():
        ours, theirs = primary_root / replicator.storage_dir, mirror_root / replicator.storage_dir
        primary = set(replicator.discover(ours)) if ours.is_dir() else set()
        mirror = set(replicator.discover(theirs)) if theirs.is_dir() else set()
        differences += [f"{replicator.name} {p}: missing on the mirror"
                        for p in sorted(primary - mirror)]
        differences += [f"{replicator.name} {p}: on the mirror but not the primary"
                        for p in sorted(mirror - primary)]
        for path in sorted(primary & mirror):
            if not replicator.same_copy(ours / path, theirs / path):
                differences.append(f"{replicator.name} {path}: content differs")
        if theirs.is_dir():
            differences += [f"{replicator.name} {p.relative_to(theirs)}: temporary file left"
                            for p in theirs.rglob(f"{TEMP_PREFIX}*")]
    return differences
