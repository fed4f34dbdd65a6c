"""What one fetch of a fresh push costs the server: the primary's Geo API (`primary
serve`, one process) against nginx + fcgiwrap + `git http-backend` (Debian's, the
standard deployment) serving the same repository in the same run.

    .venv/bin/python -m bench.git_fetch_cpu [--fetches 50] [--output docs/benchmarks.md]

Each round pushes one commit into the bare repository through the file system (off the
clock) and then times `git fetch` of it into a mirror clone over HTTP, as a secondary
does after every push. The server's CPU is read from /proc for its whole process tree
(reaped children included) before and after the rounds; the client's git is the same
for both and not counted. The primary's own periodic jobs (checksums, retention) run
meanwhile and are counted in its figure. nginx's side has no CPU figure: fcgiwrap's
children ignore SIGCHLD, so the kernel reaps each `git http-backend` and its CPU is
counted nowhere in /proc; its row compares wall time only.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.mirror_serve import nginx
from bench.report import add_output_argument, append_section
from tests.gitutil import git, make_repository
from tests.sites import primary_site

TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and every descendant alive now, each with the children it
    has reaped (``cutime``/``cstime``)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = sum(int(value) for value in fields[11:15]) / TICKS
    members, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        members.update(children)
        frontier.extend(children)
    return sum(times.get(pid, 0.0) for pid in members)


def fetch_rounds(url: str, auth: list[str], bare: Path, work: Path, mirror: Path,
                 fetches: int, server_cpu: Callable[[], float]) -> tuple[float, float]:
    """(wall seconds of the fetches alone, server CPU seconds over all rounds)."""
    git(*auth, "clone", "-q", "--mirror", url, str(mirror))  # off the clock
    cpu_before, wall = server_cpu(), 0.0
    for n in range(fetches):
        (work / "push.txt").write_text(f"push {n}\n")
        git("commit", "-qam", f"push {n}", cwd=work)
        git("push", "-q", "bare", "main", cwd=work)
        started = time.perf_counter()
        git(*auth, "fetch", "-q", "origin", cwd=mirror)
        wall += time.perf_counter() - started
    return wall, server_cpu() - cpu_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fetches", type=int, default=50)
    add_output_argument(parser)
    args = parser.parse_args()
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="geo-fetch-cpu-") as tmp_name:
        tmp = Path(tmp_name)
        with primary_site(tmp / "primary", None, processes=1) as primary:
            root = primary.settings.storage_root
            bare = root / "repositories" / "group" / "project.git"
            make_repository(bare, tmp / "work", commits=20)
            (tmp / "work" / "push.txt").write_text("start\n")
            git("add", "push.txt", cwd=tmp / "work")
            auth = ["-c", f"http.extraHeader=Authorization: Bearer {primary.token(300)}"]
            process = primary.process
            assert process is not None
            rows.append(("geo-sync primary serve (Geo API), 1 process", *fetch_rounds(
                f"{primary.api}/git/group/project.git", auth, bare, tmp / "work",
                tmp / "mirror-geo.git", args.fetches, lambda: tree_cpu(process.pid))))
            nginx_tmp = tmp / "nginx"
            nginx_tmp.mkdir()
            with nginx(root, nginx_tmp) as base:
                rows.append(("nginx + fcgiwrap + git http-backend (Debian)", *fetch_rounds(
                    f"{base}/git/group/project.git", [], bare, tmp / "work",
                    tmp / "mirror-nginx.git", args.fetches, lambda: float("nan"))))
    peer = rows[-1]
    lines = ["| tool | seconds | fetches/s | server CPU per fetch (ms) | vs nginx (wall) |",
             "|---|---|---|---|---|"]
    lines += [f"| {name} | {wall:.2f} | {args.fetches / wall:.1f} | "
              f"{'n/a' if math.isnan(cpu) else f'{cpu * 1000 / args.fetches:.1f}'} | "
              f"{peer[1] / wall:.2f}x |" for name, wall, cpu in rows]
    text = "\n".join(lines)
    print(text)
    append_section(args.output, "Git fetch cost on the server", "bench.git_fetch_cpu",
                   f"{args.fetches} rounds of one pushed commit fetched into a mirror clone "
                   "over loopback HTTP, sequential; server CPU from /proc over its whole "
                   "process tree", text)


if __name__ == "__main__":
    main()
