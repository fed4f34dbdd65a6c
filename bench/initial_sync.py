r"""Initial sync of many repositories with real history: geo-sync against
grokmirror's `grok-pull` and a parallel `git clone --mirror` loop, all with the
same concurrency and all fetching from the same primary over smart HTTP.

    .venv/bin/python -m bench.initial_sync [--repos 200] [--concurrency 4] \
        [--output docs/benchmarks.md]

The primary (PostgreSQL) holds N generated repositories (100 to 500 commits,
branches and tags; bench/gitdata.py) served by `primary serve`'s git endpoint;
the peers reach it with the same JWT, sent as `http.extraHeader` through
GIT_CONFIG_* variables. geo-sync: `secondary run` + one `geo-sync worker` process
with N threads and a repository concurrency of N, Redis broker; the clock runs
from starting the worker to the last repository synced. grok-pull: one-shot
run (`grok-pull -c CONF`) with pull_threads=N against a manifest made by
`grok-manifest`, timed to its "N fetched" log line (see time_grok_pull). The
loop: N `git clone --mirror` at a time. Every mirror's refs are compared with the
primary's afterwards.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from bench.gitdata import make_history_repository
from bench.harness import time_worker_sync
from bench.peers import grok_pull_setup, grokmirror_bin
from bench.report import add_output_argument, append_section, peer_table
from geo_sync.cli.serving import default_processes
from geo_sync.secondary.client import PrimaryClient
from geo_sync.settings import SecondarySettings
from geo_sync.tracking.sync_rows import Claimed
from replicators.base import SyncContext
from replicators.repository import RepositoryReplicator, configure_git_timeouts
from tests.services import temporary_database
from tests.sites import PrimarySite, primary_site

TOKEN_TTL = 300  # the primary's default max_token_ttl_seconds


def repository_names(count: int) -> list[str]:
    return [f"group-{n % 10}/project-{n:04d}.git" for n in range(count)]


@contextmanager
def primary_with_repositories(count: int) -> Iterator[PrimarySite]:
    with tempfile.TemporaryDirectory() as tmp, temporary_database() as url, \
            primary_site(Path(tmp) / "p", url,
                         processes=default_processes()) as primary:
        root = primary.storage("repositories")
        for n, name in enumerate(repository_names(count)):
            make_history_repository(root / name, seed=n, commits=100 + (n * 37) % 401)
        primary.cli("primary", "scan")
        yield primary


def refs_of(repo: Path) -> str:
    return subprocess.run(["git", "for-each-ref", "--format=%(objectname) %(refname)"],
                          cwd=repo, capture_output=True, text=True, check=True).stdout


def check_mirrors(source: Path, mirror: Path, names: list[str], who: str) -> None:
    wrong = [n for n in names if not (mirror / n).is_dir()
             or refs_of(mirror / n) != refs_of(source / n)]
    if wrong:
        raise SystemExit(f"{who}: {len(wrong)} mirrors differ from the primary, e.g. {wrong[:3]}")


def git_auth_env(primary: PrimarySite) -> dict[str, str]:
    """Environment making every `git` child send the Geo API's bearer token."""
    return {**os.environ, "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Bearer {primary.token(TOKEN_TTL)}"}


def time_clone_loop(primary: PrimarySite, names: list[str], dest: Path,
                    concurrency: int) -> float:
    env = git_auth_env(primary)

    def clone(name: str) -> None:
        subprocess.run(["git", "clone", "--mirror", "-q", f"{primary.api}/git/{name}",
                        str(dest / name)], env=env, check=True)

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(clone, names))
    return time.monotonic() - started


def time_libgit2_loop(primary: PrimarySite, names: list[str], dest: Path,
                      concurrency: int) -> float:
    """geo-sync's repository replicator alone (libgit2 through pygit2: init, fetch
    into a staging directory, rename into place), ``concurrency`` at a time, without
    worker, broker or registry: what is left of the gap to `git clone --mirror` is
    libgit2's, the rest geo-sync's own."""
    settings = SecondarySettings(name=primary.secondary, secret=primary.secret,
                                 primary_url=primary.url, database_url="sqlite:///unused.db",
                                 mirror_root=dest)
    configure_git_timeouts(settings.http_timeout_seconds)
    client = PrimaryClient(settings)
    ctx = SyncContext(client=client, mirror_root=dest)
    items = [Claimed(n, name, name, None, 1, False, None, None)
             for n, name in enumerate(names)]
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda item: RepositoryReplicator.sync(ctx, item), items))
    elapsed = time.monotonic() - started
    client.close()
    return elapsed


def time_grok_pull(primary: PrimarySite, dest: Path, scratch: Path, concurrency: int,
                   count: int) -> float:
    """Seconds until grok-pull has fetched all ``count`` repositories.

    The clock stops at its log line "<count> fetched" (or its exit, whichever comes
    first): in one-shot mode grok-pull 2.0.12 then waits for its repack ("spa")
    queue, and with 200 repositories here it never exited (the queue kept entries
    with no spa worker left), so waiting for the exit would measure a hang.
    """
    config = grok_pull_setup(primary.storage("repositories"), f"{primary.api}/git", dest,
                             scratch, concurrency)
    log = scratch / "grok-pull.log"
    done = re.compile(rf"---:\s+{count} fetched")
    started = time.monotonic()
    proc = subprocess.Popen([str(grokmirror_bin() / "grok-pull"), "-c", str(config)],
                            env=git_auth_env(primary), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while proc.poll() is None and not (log.exists() and done.search(log.read_text())):
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        if proc.returncode not in (None, 0):
            raise SystemExit(f"grok-pull failed ({proc.returncode}); see {log}")
        return elapsed
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # with its worker processes
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    add_output_argument(parser)
    args = parser.parse_args()
    names = repository_names(args.repos)
    n = args.concurrency
    rows: list[tuple[str, float]] = []
    with primary_with_repositories(args.repos) as primary, \
            tempfile.TemporaryDirectory() as tmp:
        source = primary.storage("repositories")
        scratch = Path(tmp)
        size = sum(f.stat().st_size for f in source.rglob("*") if f.is_file())

        def check(mirror: Path) -> None:
            check_mirrors(source, mirror, names, "geo-sync")

        rows.append((f"geo-sync, 1 worker process x {n} threads", time_worker_sync(
            primary, batch_size=1, threads=n, check=check, replicable="repository",
            concurrency={"artifact": 100, "repository": n, "job_log": 100})))
        rows.append((f"grok-pull, pull_threads={n}",
                     time_grok_pull(primary, scratch / "grok", scratch, n, args.repos)))
        check_mirrors(source, scratch / "grok", names, "grok-pull")
        rows.append((f"git clone --mirror, {n} at a time",
                     time_clone_loop(primary, names, scratch / "clone", n)))
        check_mirrors(source, scratch / "clone", names, "git clone --mirror")
        rows.append((f"geo-sync's replicator alone (libgit2), {n} at a time, no worker "
                     "(not a peer: locates the gap)",
                     time_libgit2_loop(primary, names, scratch / "libgit2", n)))
        check_mirrors(source, scratch / "libgit2" / "repositories", names, "libgit2")
    table = peer_table(rows, args.repos, "repositories")
    print(table)
    append_section(args.output, f"Initial sync of {args.repos} repositories",
                   "bench.initial_sync",
                   f"{size / 1e6:.0f} MB of bare repositories, loopback smart HTTP, "
                   "PostgreSQL + Redis, every mirror's refs compared with the primary's",
                   table)


if __name__ == "__main__":
    main()
