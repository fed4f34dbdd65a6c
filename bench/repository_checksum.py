"""Repository checksum time for a repository with many refs, against the peer an
admin would script: `git show-ref --head | sha256sum`.

    .venv/bin/python -m bench.repository_checksum [--refs 10000] [--output docs/benchmarks.md]

The repository is built deterministically (one commit per 100 refs, refs packed
as `git gc` leaves them); best of five runs each.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from bench.report import add_output_argument, append_section
from replicators.checksums import repository_checksum

ROUNDS = 5
ENV = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b",
       "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}


def build(path: Path, refs: int) -> None:
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    work = path.parent / "work"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    lines = []
    for n in range(refs):
        if n % 100 == 0:
            (work / "f").write_text(str(n))
            subprocess.run(["git", "add", "f"], cwd=work, check=True, env=ENV)
            subprocess.run(["git", "commit", "-qm", str(n)], cwd=work, check=True, env=ENV)
            head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, check=True,
                                  capture_output=True, text=True, env=ENV).stdout.strip()
        kind = "heads" if n % 2 else "tags"
        lines.append(f"create refs/{kind}/ref-{n} {head}\n")
    subprocess.run(["git", "push", "-q", str(path), "main"], cwd=work, check=True, env=ENV)
    subprocess.run(["git", "update-ref", "--stdin"], input="".join(lines), text=True,
                   cwd=path, check=True)
    subprocess.run(["git", "pack-refs", "--all"], cwd=path, check=True)


def best(action: object) -> float:
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        action()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refs", type=int, default=10_000)
    add_output_argument(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo.git"
        build(repo, args.refs)
        ours = best(lambda: repository_checksum(repo))
        peer = best(lambda: subprocess.run(  # noqa: S602 - the peer is a shell pipeline
            "git show-ref --head | sha256sum", shell=True, cwd=repo, check=True,
            capture_output=True))
    rows = ["| tool | seconds | vs peer |", "|---|---|---|",
            f"| geo-sync repository_checksum | {ours:.3f} | {peer / ours:.2f}x |",
            f"| git show-ref --head \\| sha256sum | {peer:.3f} | 1.00x |"]
    print("\n".join(rows))
    append_section(args.output, f"Repository checksum: {args.refs} refs",
                   "bench.repository_checksum", f"best of {ROUNDS}, packed refs",
                   "\n".join(rows))


if __name__ == "__main__":
    main()
