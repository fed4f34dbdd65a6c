r"""Scale: a million small artifacts, an initial sync, then 1 % of them changed,
against an rsync daemon re-run over the same tree (which must walk all of it).

    .venv/bin/python -m bench.scale [--items 1000000] [--size 4096] \
        [--output docs/benchmarks.md] [--json]

The full size is ``--items 1000000`` (about 4 GiB of artifacts on the primary, the
same again for each of the three copies); the default is smaller so that a run fits
a shared machine. Two rounds, each measured in the same run for every tool:

1. initial: an empty mirror made equal to the primary. geo-sync: `secondary run`
   started on the full catalog, the clock from its backfill's first registry row to
   the last item synced (as in bench.small_blobs); rsync: `rsync -a` (and `rsync -a
   --fsync`, the like-for-like row, since geo-sync makes every copy durable before it
   is visible) from an rsync daemon into an empty directory.
2. incremental: 1 % of the artifacts (a seeded sample) overwritten with new bytes of
   the same size on the primary and published there in one transaction as the type's
   change event, then the time until the mirror equals the primary again. geo-sync:
   everything running and idle, the clock from that commit to the last changed item
   synced; rsync: the same command re-run over the whole tree into its copy from
   round 1.

Publishing the catalog is the CI system's work and stays off the clock; it goes
through ``geo_publish()`` (the SQL function every publisher calls) for a page of
changes per statement, not one CLI call or round trip per file. Every copy is
compared byte for byte with the primary after each round. A sampler reads
/proc every half second for the peak RSS (VmHWM, reset at each round's start) and
the CPU time of every process of each tool: `primary serve` and its children,
`secondary run`, the worker processes, the rsync daemon (and its forked server) and
the rsync client (and its receiver). The harness looks for completion only every
second, reads the timestamps the geo-sync processes wrote afterwards, and runs
rsync before starting the secondary (round 1) and after stopping it (round 2), so
neither tool's idle processes sit on the other's clock.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import ARRAY, Engine, Text, and_, cast, func, select, text

from bench.data import seeded_bytes
from bench.harness import RunningSecondary, running_secondary, served_primary_with_artifacts
from bench.peers import debian_tool
from bench.report import add_output_argument, append_section
from geo_sync.db import write_transaction
from geo_sync.primary.publish import Change, validate_change
from geo_sync.tracking import row_counts
from geo_sync.tracking.models import WorkerRow
from replicators.type_map import REPLICATORS
from tests.sites import free_port, wait_for_port

THREADS = 4
#: Rows per worker message at most (the scheduler sends fewer when few are due), as in
#: bench.small_blobs.
BATCH = 250
#: Changes per publishing statement.
PUBLISH_PAGE = 10_000
SAMPLE_SECONDS = 0.5
POLL_SECONDS = 1.0
MIB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")


def artifact_path(n: int) -> str:
    """100 artifacts to a job directory, as bench.data.artifact_set lays them out."""
    return f"job-{n // 100:04d}/artifact-{n:06d}.bin"


def write_artifacts(root: Path, numbers: list[int], size: int, generation: int
                    ) -> list[Change]:
    """Write artifact ``n`` for every n in ``numbers`` (seeded bytes of this
    ``generation``, through a temp file renamed into place as a CI job would) and
    return the "created" changes that publish them, checksums taken from the bytes."""
    changes = []
    made: set[Path] = set()
    for n in numbers:
        path = artifact_path(n)
        target = root / path
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        data = seeded_bytes(n + 10_000_019 * generation, size)
        temp = target.with_name(f".{target.name}.new")
        temp.write_bytes(data)
        temp.rename(target)
        changes.append(Change("artifact", "created", path, size=size,
                              checksum=hashlib.sha256(data).hexdigest()))
    return changes


_BULK_PUBLISH = text(
    "SELECT count(geo_publish(u.t, u.e, u.p, NULL, u.s, u.c, NULL)) FROM unnest("
    "CAST(:t AS text[]), CAST(:e AS text[]), CAST(:p AS text[]), CAST(:s AS bigint[]), "
    "CAST(:c AS text[])) AS u(t, e, p, s, c)")


def publish_bulk(engine: Engine, changes: list[Change], *, page: int = PUBLISH_PAGE,
                 one_transaction: bool = False) -> None:
    """Publish ``changes`` (validated first) through ``geo_publish()``, one statement per
    ``page``: a transaction per page, or one for them all (the clock of the incremental
    round starts at its commit)."""
    for change in changes:
        validate_change(change)
    pages = [changes[i:i + page] for i in range(0, len(changes), page)]

    def run(conn: object, chunk: list[Change]) -> None:
        conn.execute(_BULK_PUBLISH, {  # type: ignore[attr-defined]
            "t": [c.replicable_type for c in chunk], "e": [c.event for c in chunk],
            "p": [c.path for c in chunk], "s": [c.size for c in chunk],
            "c": [c.checksum for c in chunk]})

    if one_transaction:
        with write_transaction(engine) as conn:
            for chunk in pages:
                run(conn, chunk)
        return
    for chunk in pages:
        with write_transaction(engine) as conn:
            run(conn, chunk)


# -- every process of each tool: peak RSS and CPU, from /proc ------------------------

def _proc_table() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command name, CPU seconds) of every process."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(entry.name)] = (int(fields[1]), name,
                                  (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return table


def _hwm_kib(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


@dataclass
class ProcessSample:
    role: str
    name: str
    peak_kib: int = 0
    cpu_start: float | None = None
    cpu_seconds: float = 0.0


@dataclass
class Sampler:
    """Every SAMPLE_SECONDS, the peak RSS and CPU time of each process under a watched
    root pid, by role. ``reset`` starts a round: peaks are reset in the kernel
    (``clear_refs`` 5) and CPU counted from then."""

    roots: dict[str, set[int]] = field(default_factory=dict)
    seen: dict[int, ProcessSample] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def watch(self, role: str, pid: int) -> None:
        with self._lock:
            self.roots.setdefault(role, set()).add(pid)
        self.sample()

    def unwatch(self, role: str) -> None:
        self.sample()
        with self._lock:
            self.roots.pop(role, None)

    def reset(self) -> None:
        with self._lock:
            for pid in self.seen:
                with suppress(OSError):
                    Path(f"/proc/{pid}/clear_refs").write_text("5")
            self.seen = {}
        self.sample()

    def record(self, role: str, pid: int, name: str, cpu: float) -> None:
        """Add the CPU the kernel reported for a child reaped with wait4 (it includes its
        own reaped children's), so a process that ended between two samples is still
        counted. Not its ru_maxrss: that keeps the forking Python process's peak across
        exec, so a peak seen by no sample stays unknown ("?")."""
        with self._lock:
            sample = self.seen.setdefault(pid, ProcessSample(role, name, cpu_start=0.0))
            sample.cpu_seconds = max(sample.cpu_seconds, cpu)

    def sample(self) -> None:
        table = _proc_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        with self._lock:
            for role, pids in self.roots.items():
                todo = [pid for pid in pids if pid in table]
                while todo:
                    pid = todo.pop()
                    todo.extend(children.get(pid, []))
                    hwm = _hwm_kib(pid)
                    if hwm is None:
                        continue
                    sample = self.seen.setdefault(pid, ProcessSample(role, table[pid][1]))
                    sample.peak_kib = max(sample.peak_kib, hwm)
                    if sample.cpu_start is None:
                        sample.cpu_start = table[pid][2]
                    sample.cpu_seconds = table[pid][2] - sample.cpu_start

    def by_role(self, *roles: str) -> tuple[str, str]:
        """("role: peak MiB of each process; ...", "role CPU s; ...") for ``roles``."""
        self.sample()
        memory, cpu = [], []
        with self._lock:
            for role in roles:
                found = sorted((pid, s) for pid, s in self.seen.items() if s.role == role)
                if not found:
                    continue
                peaks = "/".join(f"{s.peak_kib / 1024:.0f}" if s.peak_kib else "?"
                                 for _, s in found)
                memory.append(f"{role} ({len(found)}): {peaks}")
                cpu.append(f"{role} {sum(s.cpu_seconds for _, s in found):.1f}")
        return "; ".join(memory), "; ".join(cpu)

    def run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.sample()

    @contextmanager
    def running(self) -> Iterator[Sampler]:
        thread = threading.Thread(target=self.run, name="rss-sampler", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()


# -- the tools ------------------------------------------------------------------------

@dataclass
class Row:
    round: str
    tool: str
    seconds: float
    items: int
    memory: str
    cpu: str


def _digests(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``root`` (hidden temp files too: a
    copy must hold nothing the primary does not)."""
    found = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory, name)
            found[path.relative_to(root).as_posix()] = hashlib.sha256(
                path.read_bytes()).hexdigest()
    return found


def _same(expected: dict[str, str], copy: Path, who: str) -> None:
    found = _digests(copy)
    if found != expected:
        wrong = sorted(set(found.items()) ^ set(expected.items()))[:3]
        raise SystemExit(f"{who} did not make {copy} equal to the primary "
                         f"({len(wrong)}+ differences, e.g. {wrong})")


def time_rsync(sampler: Sampler, source: Path, dest: Path, scratch: Path,
               extra: list[str]) -> tuple[float, str, str]:
    """Seconds of `rsync -a [extra]` from a daemon serving ``source`` into ``dest``
    (the daemon's start-up is off the clock), with its processes' memory and CPU."""
    rsync = debian_tool("rsync")
    port = free_port()
    conf = scratch / "rsyncd.conf"
    conf.write_text(f"use chroot = no\n[artifacts]\npath = {source}\nread only = yes\n"
                    "uid = root\ngid = root\n")
    sampler.reset()
    daemon = subprocess.Popen([rsync, "--daemon", "--no-detach", f"--config={conf}",
                               f"--port={port}", "--address=127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, daemon)
        sampler.watch("rsync daemon", daemon.pid)
        started = time.monotonic()
        client = subprocess.Popen([rsync, "-a", *extra, f"rsync://127.0.0.1:{port}/artifacts/",
                                   f"{dest}/"], stdout=subprocess.DEVNULL)
        sampler.watch("rsync client", client.pid)
        # The sampler thread keeps reading VmHWM, which only grows; wait4 gives the
        # client's CPU even if it ended before a sample.
        _, status, usage = os.wait4(client.pid, 0)
        seconds = time.monotonic() - started
        client.returncode = os.waitstatus_to_exitcode(status)
        sampler.record("rsync client", client.pid, "rsync", usage.ru_utime + usage.ru_stime)
        if client.returncode != 0:
            raise SystemExit(f"rsync {' '.join(extra)} exited with {client.returncode}")
        memory, cpu = sampler.by_role("rsync daemon", "rsync client")
    finally:
        sampler.unwatch("rsync client")
        sampler.unwatch("rsync daemon")
        daemon.terminate()
        daemon.wait()
    return seconds, memory, cpu


def _tuning(batch: int) -> dict[str, object]:
    return {"batch_size": batch, "scheduler_interval_seconds": 0.2,
            "concurrency": {"artifact": 4000, "repository": 8, "job_log": 100},
            "reverify_after_seconds": 86400.0}


RSYNC = "rsync -a from an rsync daemon"
RSYNC_FSYNC = "rsync -a --fsync from an rsync daemon (like for like: durable)"
GEO_ROLES = ("primary serve", "secondary run", "worker")


def _wait_until(condition: Callable[[], bool]) -> None:
    while not condition():
        time.sleep(POLL_SECONDS)


def geo_initial(secondary: RunningSecondary, sampler: Sampler, items: int) -> float:
    """Workers started and idle, then `secondary run` on the full catalog: seconds from
    its backfill's first registry row to the last item synced (timestamps the geo-sync
    processes wrote, read once they are done)."""
    registry = REPLICATORS["artifact"].registry_table
    secondary.start_workers(1, THREADS)
    sampler.watch("worker", secondary.processes[-1].pid)
    _wait_until(lambda: secondary.count(WorkerRow, WorkerRow.kind == "worker") >= 1)
    sampler.reset()
    secondary.spawn("secondary", "run")
    sampler.watch("secondary run", secondary.processes[-1].pid)
    # From the registry's row counts (a few delta rows, as status reads them): at
    # 1,000,000 rows even a count by state took 0.4-0.65 s a poll, on the same cores.
    table = registry.__tablename__

    def done() -> bool:
        with secondary.site.engine.connect() as conn:
            by_state = row_counts.counts(conn, table)
        unsynced = sum(n for (state, _v), n in by_state.items() if state != "synced")
        return unsynced == 0 and sum(by_state.values()) >= items

    _wait_until(done)
    with secondary.site.engine.connect() as conn:
        first, last = conn.execute(select(func.min(registry.created_at),
                                          func.max(registry.last_synced_at))).one()
    assert first is not None and last is not None, "every item synced, yet no timestamps"
    return float((last - first).total_seconds())


def geo_incremental(primary_engine: Engine, secondary: RunningSecondary,
                    changes: list[Change]) -> float:
    """Seconds from the commit publishing ``changes`` to the last of them synced, with
    everything running and idle."""
    registry = REPLICATORS["artifact"].registry_table
    time.sleep(2.0)  # the cursor's long-poll and the scheduler's passes settle
    publish_bulk(primary_engine, changes, one_transaction=True)
    started = datetime.now(UTC)
    wanted = {c.path: c.checksum for c in changes}
    # Only the changed rows, found by their unique record_id: no scan of the table.
    changed = registry.record_id == func.any(cast(list(wanted), ARRAY(Text)))
    _wait_until(lambda: secondary.count(registry, and_(
        changed, registry.last_synced_at >= started)) >= len(changes))
    with secondary.site.engine.connect() as conn:
        last = conn.execute(select(func.max(registry.last_synced_at))).scalar_one()
        synced = conn.execute(select(registry.path, registry.expected_checksum).where(
            registry.last_synced_at >= started)).all()
        pending = conn.execute(select(func.count()).select_from(registry).where(
            registry.state != "synced")).scalar_one()
    stale = [path for path, checksum in wanted.items() if dict(synced).get(path) != checksum]
    if stale or pending:
        raise SystemExit(f"geo-sync: {len(stale)} changed items not synced with their new "
                         f"checksum, {pending} rows not synced")
    assert last is not None, "every item synced, yet none has a last_synced_at"
    return float((last - started).total_seconds())


def _table(rows: list[Row]) -> str:
    rsync = {row.round: row.seconds for row in rows if row.tool.startswith(RSYNC)}
    table = ["| tool | round | seconds | items/s | vs rsync daemon, same round | "
             "peak RSS per process, MiB | CPU s per role |",
             "|---|---|---|---|---|---|---|"]
    table += [f"| {row.tool} | {row.round} | {row.seconds:.2f} | {row.items / row.seconds:.1f}"
              f" | {rsync[row.round] / row.seconds:.2f}x | {row.memory} | {row.cpu} |"
              for row in rows]
    return "\n".join(table)


def _progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000,
                        help="artifacts on the primary (full size: 1000000)")
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--changed-percent", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=BATCH,
                        help="registry rows per worker message, at most")
    add_output_argument(parser)
    args = parser.parse_args()
    load_before = os.getloadavg()
    changed = sorted(random.Random(11).sample(  # noqa: S311 - reproducible, not secret
        range(args.items), max(1, round(args.items * args.changed_percent / 100))))
    rows: list[Row] = []
    sampler = Sampler()
    with served_primary_with_artifacts({}, published=False) as primary, \
            tempfile.TemporaryDirectory() as tmp, sampler.running():
        assert primary.process is not None
        sampler.watch("primary serve", primary.process.pid)
        source = primary.storage("artifacts")
        scratch = Path(tmp)
        made = time.monotonic()
        publish_bulk(primary.engine, write_artifacts(source, list(range(args.items)),
                                                     args.size, 0))
        made = time.monotonic() - made
        _progress(f"{args.items} artifacts written and published in {made:.1f} s")
        expected = _digests(source)
        plain, durable = scratch / "rsync", scratch / "rsync-fsync"
        for dest, extra, name in ((plain, [], RSYNC), (durable, ["--fsync"], RSYNC_FSYNC)):
            seconds, memory, cpu = time_rsync(sampler, source, dest, scratch, extra)
            _same(expected, dest, name)
            rows.append(Row("initial", name, seconds, args.items, memory, cpu))
            _progress(f"initial, {name}: {seconds:.1f} s")
        geo = f"geo-sync, 1 worker process x {THREADS} threads, at most {args.batch} per message"
        with running_secondary(primary, start_run=False, **_tuning(args.batch)) as secondary:
            seconds = geo_initial(secondary, sampler, args.items)
            memory, cpu = sampler.by_role(*GEO_ROLES)
            _same(expected, secondary.site.mirror("artifacts"), "geo-sync")
            rows.insert(0, Row("initial", f"{geo}: backfill from the catalog and sync",
                               seconds, args.items, memory, cpu))
            _progress(f"initial, geo-sync: {seconds:.1f} s")
            updates = write_artifacts(source, changed, args.size, 1)
            expected = _digests(source)
            sampler.reset()
            seconds = geo_incremental(primary.engine, secondary, updates)
            memory, cpu = sampler.by_role(*GEO_ROLES)
            _same(expected, secondary.site.mirror("artifacts"), "geo-sync")
            rows.append(Row("incremental", f"{geo}: from publishing the changes to the "
                            "last synced", seconds, len(changed), memory, cpu))
            _progress(f"incremental, geo-sync: {seconds:.1f} s")
        for dest, extra, name in ((plain, [], RSYNC), (durable, ["--fsync"], RSYNC_FSYNC)):
            seconds, memory, cpu = time_rsync(sampler, source, dest, scratch, extra)
            _same(expected, dest, name)
            rows.append(Row("incremental", f"{name}, re-run over the whole tree", seconds,
                            len(changed), memory, cpu))
            _progress(f"incremental, {name}: {seconds:.1f} s")
        load = "/".join(f"{a:.1f}" for a in load_before)
        load_after = "/".join(f"{a:.1f}" for a in os.getloadavg())
        table = _table(rows)
        print(table)
        append_section(
            args.output, f"Scale: {args.items:,} artifacts of {args.size} bytes, then "
            f"{len(changed):,} changed", "bench.scale",
            f"loopback, PostgreSQL + Redis, {args.items:,} artifacts written and published in "
            f"{made:.0f} s (off the clock), every copy compared with the primary after each "
            f"round, load average {load} before and {load_after} after (1/5/15 min)",
            table)


if __name__ == "__main__":
    main()
