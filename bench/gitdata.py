"""Deterministic git repositories with real history, built with `git fast-import`
(fast enough for hundreds of repositories, and the same bytes on every run)."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

EPOCH = 1_700_000_000


def _data(payload: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(payload), payload)


def history_stream(seed: int, commits: int, files: int = 40) -> bytes:
    """A fast-import stream: ``commits`` commits on main editing ``files`` text files,
    a feature branch every 50 commits and a tag every 25. (Consecutive commits to one
    branch continue from its tip, so no ``from`` lines are needed.)"""
    rng = random.Random(seed)  # noqa: S311 - reproducible data, not secrets
    words = [f"w{n}" for n in range(500)]
    contents = {f"src/module_{n:03d}.py": [" ".join(rng.choices(words, k=8))
                                          for _ in range(rng.randint(20, 200))]
                for n in range(files)}
    out = bytearray()
    mark = 0
    for number in range(commits):
        changed = rng.sample(sorted(contents), k=min(len(contents), rng.randint(1, 4)))
        blobs = {}
        for path in changed:
            lines = contents[path]
            for _ in range(rng.randint(1, 10)):
                lines.insert(rng.randrange(len(lines) + 1), " ".join(rng.choices(words, k=8)))
            mark += 1
            blobs[path] = mark
            out += b"blob\nmark :%d\n" % mark + _data("\n".join(lines).encode())
        mark += 1
        when = EPOCH + number * 600
        out += (b"commit refs/heads/main\nmark :%d\n" % mark
                + b"author Dev <dev@example.com> %d +0000\n" % when
                + b"committer Dev <dev@example.com> %d +0000\n" % when
                + _data(f"change {number} of repository {seed}".encode()))
        out += b"".join(b"M 100644 :%d %s\n" % (m, p.encode()) for p, m in blobs.items())
        out += b"\n"
        if number % 50 == 49:
            out += b"reset refs/heads/feature-%d\nfrom :%d\n\n" % (number, mark)
        if number % 25 == 24:
            out += b"reset refs/tags/v%d\nfrom :%d\n\n" % (number, mark)
    return bytes(out)


def make_history_repository(path: Path, seed: int, commits: int) -> None:
    """A bare repository at ``path`` holding ``history_stream(seed, commits)``."""
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    subprocess.run(["git", "fast-import", "--quiet"], cwd=path, check=True,
                   input=history_stream(seed, commits))
    subprocess.run(["git", "gc", "-q"], cwd=path, check=True)
