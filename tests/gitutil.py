"""Building real git repositories for the tests with the git command line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent",
}


def git(*args: str, cwd: Path | None = None, check: bool = True
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV},
                          capture_output=True, text=True, check=check, timeout=120)


def make_repository(bare: Path, work: Path, commits: int = 3, branch: str = "main") -> None:
    """A bare repository at ``bare`` with history on ``branch``, a feature branch and a tag."""
    git("init", "-q", "-b", branch, str(work))
    for n in range(commits):
        (work / f"file{n}.txt").write_text(f"content {n}\n")
        git("add", ".", cwd=work)
        git("commit", "-q", "-m", f"commit {n}", cwd=work)
    git("branch", "feature", cwd=work)
    git("tag", "-a", "v1", "-m", "release", cwd=work)
    bare.parent.mkdir(parents=True, exist_ok=True)
    git("clone", "-q", "--bare", str(work), str(bare))
    git("remote", "add", "bare", str(bare), cwd=work)


def refs(repo: Path) -> dict[str, str]:
    """``refname -> oid`` of every ref, as git itself lists them."""
    out = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=repo).stdout
    pairs = (line.split(" ", 1) for line in out.splitlines())
    return {name: oid for name, oid in pairs}
