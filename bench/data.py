"""Deterministic data sets: the same bytes on every run, so runs compare."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

MIB = 1024 * 1024


def seeded_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)  # noqa: S311 - reproducible, not secret


def write_seeded_file(path: Path, seed: int, size_mib: int) -> None:
    """``size_mib`` MiB of seeded bytes, written a MiB at a time."""
    with path.open("wb") as handle:
        for n in range(size_mib):
            handle.write(seeded_bytes(seed * 1_000_003 + n, MIB))


def artifact_set(items: int, size: int) -> dict[str, Callable[[Path], None]]:
    """``items`` files of ``size`` seeded bytes, 100 to a directory like job artifacts:
    path -> function writing it."""
    def writer(n: int) -> Callable[[Path], None]:
        return lambda path: path.write_bytes(seeded_bytes(n, size))
    return {f"job-{n // 100:04d}/artifact-{n:06d}.bin": writer(n) for n in range(items)}
