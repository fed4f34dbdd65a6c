r"""Push-to-mirror lag: a steady stream of pushes to the primary, and the time from
each push to its commit being visible on the mirror. geo-sync against grokmirror's
continuous mode, in the same run, from the same primary.

    .venv/bin/python -m bench.push_lag [--rate 20] [--seconds 30] [--repos 10] \
        [--output docs/benchmarks.md]

The primary (PostgreSQL, `primary serve`) holds N repositories with history. A
driver pushes a new commit to `main` of one repository after another (round
robin) at RATE pushes per second with `git push` to the bare repository, so the
primary's post-receive hook runs; a push's clock starts when `git push` returns.
A poller reads `refs/heads/main` of every mirror every few milliseconds; a push
is visible when the mirror's `main` is that commit or a later push's.

- geo-sync: hooks from `primary install-hooks`, `secondary run` and one
  `geo-sync worker --processes 1 --threads T`, Redis, defaults otherwise.
- grokmirror: `grok-pull -o` (continuous) with pull_threads=T and refresh=1,
  told of every push through its listener socket the moment `git push` returns
  (its fastest path: no manifest round trip). geo-sync's post-receive hooks stay
  installed on the primary during grokmirror's run, so both runs pay their cost.
Both fetch over the primary's smart HTTP endpoint with the same kind of token.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, select

from bench.gitdata import make_history_repository
from bench.harness import running_secondary
from bench.initial_sync import TOKEN_TTL, git_auth_env
from bench.peers import grok_pull_setup, grokmirror_bin
from bench.report import add_output_argument, append_section
from geo_sync.cli.serving import default_processes
from replicators.repository import RepositoryRegistry
from tests.gitutil import git
from tests.services import temporary_database
from tests.sites import PrimarySite, primary_site

THREADS = 4
POLL_SECONDS = 0.002
SETTLE_TIMEOUT = 120.0


def read_ref(repo: Path, ref: str = "refs/heads/main") -> str | None:
    """The ref's target as git stores it (loose file first, then packed-refs)."""
    try:
        return (repo / ref).read_text().strip() or None
    except (FileNotFoundError, NotADirectoryError):
        pass
    try:
        for line in (repo / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split(" ", 1)[0]
    except FileNotFoundError:
        pass
    return None


@dataclass
class Repo:
    name: str
    work: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    pushed: list[str] = field(default_factory=list)  # commit per push, in order
    push_ids: list[int] = field(default_factory=list)


class PushDriver:
    """Pushes at a fixed rate and measures when each push shows up on the mirror."""

    def __init__(self, primary: PrimarySite, repos: list[Repo]) -> None:
        self.primary = primary
        self.repos = repos
        self.pushed_at: dict[int, float] = {}
        self.seen_at: dict[int, float] = {}
        self._done = threading.Event()

    def _push(self, number: int, repo: Repo, notify: Callable[[str], None]) -> None:
        with repo.lock:
            git("commit", "-q", "--allow-empty", "-m", f"push {number}", cwd=repo.work)
            sha = git("rev-parse", "HEAD", cwd=repo.work).stdout.strip()
            git("push", "-q", "origin", "main", cwd=repo.work)
            self.pushed_at[number] = time.monotonic()
            repo.pushed.append(sha)
            repo.push_ids.append(number)
        notify(repo.name)

    def _poll(self, mirror_root: Path) -> None:
        seen_upto = {r.name: -1 for r in self.repos}
        while not self._done.is_set():
            now = time.monotonic()
            for repo in self.repos:
                sha = read_ref(mirror_root / repo.name)
                with repo.lock:
                    if sha not in repo.pushed:
                        continue
                    index = repo.pushed.index(sha)
                    for n in repo.push_ids[seen_upto[repo.name] + 1:index + 1]:
                        self.seen_at[n] = now
                    seen_upto[repo.name] = max(seen_upto[repo.name], index)
            time.sleep(POLL_SECONDS)

    def run(self, rate: float, seconds: float, mirror_root: Path,
            notify: Callable[[str], None]) -> list[float]:
        """Lags in seconds, one per push; a push never seen counts as infinite."""
        for repo in self.repos:
            repo.pushed.clear()
            repo.push_ids.clear()
        self.pushed_at.clear()
        self.seen_at.clear()
        self._done.clear()
        poller = threading.Thread(target=self._poll, args=(mirror_root,), daemon=True)
        poller.start()
        total = int(rate * seconds)
        start = time.monotonic()
        with ThreadPoolExecutor(THREADS * 2) as pool:
            for number in range(total):
                delay = start + number / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(self._push, number, self.repos[number % len(self.repos)], notify)
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while len(self.seen_at) < total and time.monotonic() < deadline:
            time.sleep(0.1)
        self._done.set()
        poller.join()
        return [max(0.0, self.seen_at[n] - self.pushed_at[n]) if n in self.seen_at
                else float("inf") for n in range(total)]


@contextmanager
def primary_for_pushes(count: int, scratch: Path) -> Iterator[tuple[PrimarySite, list[Repo]]]:
    with temporary_database() as url, \
            primary_site(scratch / "p", url, processes=default_processes()) as primary:
        root = primary.storage("repositories")
        repos = []
        for n in range(count):
            name = f"group/project-{n:02d}.git"
            make_history_repository(root / name, seed=n, commits=100)
            work = scratch / "work" / name
            git("clone", "-q", str(root / name), str(work))
            repos.append(Repo(name, work))
        primary.cli("primary", "install-hooks")
        primary.cli("primary", "scan")
        yield primary, repos


class RecordedLags:
    """What geo-sync itself recorded (registry: the change's commit on the primary to
    its copy synced), sampled from the tracking DB on a side thread while the driver
    runs: each change that got its own sync counts once (one superseded by the next
    push before it synced has no record of its own). The samples also catch when each
    change's row was sent to the queue (``enqueued_at``) and claimed by a worker thread
    (its first lease, less ``lease_seconds``), which split the lag into stages."""

    def __init__(self, engine: Engine, lease_seconds: float) -> None:
        self.engine = engine
        self.lease = timedelta(seconds=lease_seconds)
        self.lags: dict[tuple[str, datetime], float] = {}
        #: Per change (record id, commit): when it was enqueued, claimed, synced.
        self.enqueued: dict[tuple[str, datetime], datetime] = {}
        self.claimed: dict[tuple[str, datetime], datetime] = {}
        self.synced: dict[tuple[str, datetime], datetime] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        model = RepositoryRegistry
        while not self._done.wait(0.02):
            with self.engine.connect() as conn:
                for row in conn.execute(select(
                        model.record_id, model.change_committed_at, model.change_synced_at,
                        model.enqueued_at, model.lease_until).where(
                            model.change_committed_at.is_not(None))):
                    key = (row.record_id, row.change_committed_at)
                    if row.enqueued_at is not None:
                        self.enqueued.setdefault(key, row.enqueued_at)
                    if row.lease_until is not None:
                        self.claimed.setdefault(key, row.lease_until - self.lease)
                    if row.change_synced_at is not None:
                        self.synced[key] = row.change_synced_at
                        self.lags[key] = (
                            row.change_synced_at - row.change_committed_at).total_seconds()

    def stages(self, since: datetime) -> dict[str, list[float]]:
        """Seconds of each stage, for the changes committed since ``since`` whose three
        moments were all caught in order (a change whose row was already queued or being
        synced when it was committed has no stage of its own)."""
        found: dict[str, list[float]] = {"commit → enqueued": [], "enqueued → claimed": [],
                                         "claimed → synced": []}
        for key, synced in self.synced.items():
            committed = key[1]
            enqueued, claimed = self.enqueued.get(key), self.claimed.get(key)
            if committed < since or enqueued is None or claimed is None:
                continue
            if not committed <= enqueued <= claimed <= synced:
                continue
            found["commit → enqueued"].append((enqueued - committed).total_seconds())
            found["enqueued → claimed"].append((claimed - enqueued).total_seconds())
            found["claimed → synced"].append((synced - claimed).total_seconds())
        return found

    def __enter__(self) -> RecordedLags:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def geo_sync_lags(primary: PrimarySite, driver: PushDriver, rate: float, seconds: float,
                  recorded: list[float] | None = None,
                  stages: dict[str, list[float]] | None = None) -> list[float]:
    """Lags measured from outside; ``recorded`` gets the ones geo-sync recorded, and
    ``stages`` their split (see RecordedLags.stages)."""
    with running_secondary(primary) as secondary:
        secondary.start_workers(1, THREADS)
        repos = len(driver.repos)
        while secondary.count(RepositoryRegistry,
                              RepositoryRegistry.state == "synced") < repos:
            time.sleep(0.1)
        began = datetime.now(UTC)
        with RecordedLags(secondary.site.engine, secondary.site.settings.lease_seconds) as own:
            lags = driver.run(rate, seconds, secondary.site.mirror("repositories"),
                              notify=lambda name: None)
        if recorded is not None:
            # Only the changes pushed during the run (not the initial backfill's).
            recorded += [lag for (_, committed), lag in own.lags.items() if committed >= began]
        if stages is not None:
            stages.update(own.stages(began))
        return lags


def grokmirror_lags(primary: PrimarySite, driver: PushDriver, rate: float, seconds: float,
                    scratch: Path) -> list[float]:
    mirror = scratch / "grok"
    sock = scratch / "grok.sock"
    config = grok_pull_setup(primary.storage("repositories"), f"{primary.api}/git", mirror,
                             scratch, THREADS, refresh=1, socket=sock)
    pull = [str(grokmirror_bin() / "grok-pull"), "-c", str(config)]
    subprocess.run(pull, env=git_auth_env(primary), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # first clone
    proc = subprocess.Popen([*pull, "-o"], env=git_auth_env(primary),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not sock.exists():
            time.sleep(0.05)

        def notify(name: str) -> None:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(str(sock))
                conn.sendall(f"/{name}\n".encode())

        return driver.run(rate, seconds, mirror, notify)
    finally:
        proc.terminate()
        proc.wait()


def summary(lags: list[float]) -> tuple[float, float, float, int]:
    seen = sorted(lag for lag in lags if lag != float("inf"))
    if not seen:
        return float("inf"), float("inf"), float("inf"), len(lags)
    p99 = seen[min(len(seen) - 1, int(len(seen) * 0.99))]
    return statistics.median(seen), p99, seen[-1], len(lags) - len(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repos", type=int, default=10)
    add_output_argument(parser)
    args = parser.parse_args()
    if args.seconds + SETTLE_TIMEOUT + 60 > TOKEN_TTL:
        parser.error(f"--seconds must leave the run within the token lifetime ({TOKEN_TTL} s)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        with primary_for_pushes(args.repos, scratch) as (primary, repos):
            driver = PushDriver(primary, repos)
            recorded: list[float] = []
            stages: dict[str, list[float]] = {}
            rows.append(("geo-sync (hook + spool, cursor, 1 worker process)",
                         summary(geo_sync_lags(primary, driver, args.rate, args.seconds,
                                               recorded, stages))))
            rows.append(("grokmirror grok-pull -o (socket notify, refresh=1)",
                         summary(grokmirror_lags(primary, driver, args.rate, args.seconds,
                                                 scratch))))
    table = ["| tool | p50 s | p99 s | max s | never seen | p50 vs peer |",
             "|---|---|---|---|---|---|"]
    peer_p50 = rows[-1][1][0]
    table += [f"| {name} | {p50:.3f} | {p99:.3f} | {worst:.3f} | {missing} | "
              f"{peer_p50 / p50:.1f}x |" for name, (p50, p99, worst, missing) in rows]
    # Beside it, the lag geo-sync recorded itself (commit to synced, per change, from its
    # registry); it should agree with the outside measurement above.
    p50, p99, worst, _ = summary(recorded)
    table.append(f"| recorded by geo-sync itself ({len(recorded)} changes, commit → "
                 f"synced) | {p50:.3f} | {p99:.3f} | {worst:.3f} | - | - |")
    # And where that went, for the changes whose stages were all caught.
    for stage, seconds in stages.items():
        p50, p99, worst, _ = summary(seconds)
        table.append(f"| stage: {stage} ({len(seconds)} changes) | {p50:.3f} | {p99:.3f} "
                     f"| {worst:.3f} | - | - |")
    print("\n".join(table))
    append_section(args.output, f"Push-to-mirror lag at {args.rate:g} pushes/s",
                   "bench.push_lag",
                   f"{int(args.rate * args.seconds)} pushes over {args.repos} repositories "
                   f"for {args.seconds:g} s, loopback, PostgreSQL + Redis", "\n".join(table))


if __name__ == "__main__":
    main()
