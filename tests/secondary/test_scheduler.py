"""The scheduler's passes, driven with ``run_once`` against real databases and a real
primary: the temp-file janitor, retries after a site-wide failure, and re-verification
of copies whose primary checksum came late."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import event, select, update

from geo_sync.db import is_postgres, utcnow, write_transaction
from geo_sync.paths import TEMP_PREFIX
from geo_sync.primary import checksummer
from geo_sync.primary.publish import Change, publish
from geo_sync.secondary import bootstrap, tasks
from geo_sync.secondary.cursor import LogCursor
from geo_sync.secondary.runtime import Runtime, open_runtime
from geo_sync.secondary.scheduler import Scheduler
from geo_sync.secondary.status import secondary_status
from geo_sync.tracking import event_rows, sync_rows
from geo_sync.tracking.states import SyncState
from replicators.artifact import ArtifactRegistry, ArtifactReplicator
from replicators.repository import RepositoryRegistry
from tests.deployment import wait_for
from tests.services import temporary_database
from tests.sites import PrimarySite, SecondarySite, primary_site, secondary_site
from verification import verifier

HOUR_AGO = time.time() - 3600


@pytest.fixture
def runtime(secondary: SecondarySite) -> Iterator[Runtime]:
    rt = open_runtime(secondary.settings)
    yield rt
    rt.close()


def drain(messaging: bootstrap.Messaging, runtime: Runtime) -> int:
    """Do in this thread the work the scheduler sent (what a worker would do)."""
    broker = messaging.broker
    assert isinstance(broker, StubBroker)
    done = 0
    for queue in list(broker.queues.values()):
        while not queue.empty():
            message = dramatiq.Message.decode(queue.get_nowait())
            work = (tasks.sync_items if message.actor_name == bootstrap.ACTOR
                    else verifier.verify_items)
            work(runtime, *message.args)
            done += 1
    return done


def _age(path: Path) -> None:
    os.utime(path, (HOUR_AGO, HOUR_AGO))


# -- the temp-file janitor ----------------------------------------------------------

def test_the_janitor_keeps_a_slow_first_clone_while_its_lease_lives(
    runtime: Runtime,
) -> None:
    repos = runtime.settings.mirror_root / "repositories"
    with write_transaction(runtime.engine) as conn:
        event_rows.note_changes(conn, RepositoryRegistry, [event_rows.NetChange(
            "r1", "group/big.git", tombstone=False, size=None, checksum=None)])
        ids = conn.execute(select(RepositoryRegistry.id)).scalars().all()
        [item] = sync_rows.claim(conn, RepositoryRegistry, ids, "w1", lease_seconds=600)
    # libgit2 writes packs into the staging directory without touching its mtime.
    staging = repos / "group" / f"{TEMP_PREFIX}big.git-0123abcd"
    (staging / "objects" / "pack").mkdir(parents=True)
    (staging / "objects" / "pack" / "tmp_pack_x").write_bytes(b"p" * 1024)
    _age(staging)
    abandoned = repos / "other" / f"{TEMP_PREFIX}gone.git-feedbeef"
    abandoned.mkdir(parents=True)
    _age(abandoned)
    messaging = bootstrap.setup(runtime.settings)

    Scheduler(runtime, messaging).run_once()
    assert staging.exists(), "the janitor deleted a clone whose worker still holds the lease"
    assert not abandoned.exists(), "the janitor did not run (or kept an ownerless leftover)"

    with write_transaction(runtime.engine) as conn:  # the worker died: its lease ran out
        conn.execute(update(RepositoryRegistry).where(RepositoryRegistry.id == item.id)
                     .values(lease_until=utcnow() - timedelta(seconds=1)))
    Scheduler(runtime, messaging).run_once()
    assert not staging.exists(), "a leftover whose lease ran out was kept"


# -- a copy verified before the primary had its checksum -----------------------------

@pytest.fixture(params=["sqlite", "postgres"])
def late_checksums(request: pytest.FixtureRequest, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch
                   ) -> Iterator[tuple[PrimarySite, SecondarySite]]:
    """A served primary whose own checksummer does not run (the test takes checksums
    when it wants them), and its secondary, on one backend."""
    with ExitStack() as stack:
        postgres = request.param == "postgres"
        primary_url = stack.enter_context(temporary_database()) if postgres else None
        monkeypatch.setenv("GEO_SYNC_PRIMARY__CHECKSUM_INTERVAL_SECONDS", "86400")
        primary = stack.enter_context(primary_site(tmp_path / "primary", primary_url))
        monkeypatch.delenv("GEO_SYNC_PRIMARY__CHECKSUM_INTERVAL_SECONDS")
        url = stack.enter_context(temporary_database("geo_tracking")) if postgres else None
        secondary = secondary_site(tmp_path / "secondary", primary, url)
        stack.callback(secondary.engine.dispose)
        yield primary, secondary


def _verification_state(runtime: Runtime, path: str) -> str:
    with runtime.engine.connect() as conn:
        return str(conn.execute(select(ArtifactRegistry.verification_state)
                                .where(ArtifactRegistry.path == path)).scalar_one())


def test_a_copy_verified_before_the_primary_had_a_checksum_is_verified_soon_after(
    late_checksums: tuple[PrimarySite, SecondarySite],
) -> None:
    primary, secondary = late_checksums
    blob = primary.storage("artifacts") / "p/1.bin"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"artifact" * 100)
    with write_transaction(primary.engine) as conn:
        publish(conn, Change("artifact", "created", "p/1.bin", size=800))  # no checksum yet
    runtime = open_runtime(secondary.settings)
    try:
        messaging = bootstrap.setup(runtime.settings)
        scheduler, cursor = Scheduler(runtime, messaging), LogCursor(runtime)
        cursor.run_once(wait=0)

        def settled(state: str) -> bool:
            scheduler.run_once()
            drain(messaging, runtime)
            return _verification_state(runtime, "p/1.bin") == state

        wait_for(lambda: settled("disabled"), "the first verification, without a checksum")
        checksummer.run_once(primary.engine, primary.settings.storage_root, 86400.0)
        wait_for(lambda: settled("succeeded"),
                 "verification once the primary has its checksum (not a week later)")
    finally:
        runtime.close()


# -- a recovered dependency is noticed within seconds ----------------------------------

def _state(runtime: Runtime, path: str) -> tuple[str, str | None]:
    with runtime.engine.connect() as conn:
        row = conn.execute(select(ArtifactRegistry.state, ArtifactRegistry.blocked_on)
                           .where(ArtifactRegistry.path == path)).one()
    return row.state, row.blocked_on


def _probed(scheduler: Scheduler) -> set[str]:
    scheduler.run_once()
    return scheduler.dependencies_down


def _as_if_backed_off_for_an_hour(runtime: Runtime) -> None:
    """What a long outage leaves: every failed row's retry an hour away."""
    with write_transaction(runtime.engine) as conn:
        conn.execute(update(ArtifactRegistry).where(ArtifactRegistry.state == "failed")
                     .values(retry_at=utcnow() + timedelta(hours=1)))


def _publish_blob(primary: PrimarySite, path: str, data: bytes | None) -> None:
    if data is not None:
        blob = primary.storage("artifacts") / path
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
    with write_transaction(primary.engine) as conn:
        publish(conn, Change("artifact", "created", path, size=len(data or b"")))


def test_rows_failed_while_the_primary_was_down_are_retried_once_it_answers(
    primary: PrimarySite, runtime: Runtime
) -> None:
    _publish_blob(primary, "ok/a.bin", b"a" * 4096)
    _publish_blob(primary, "gone/b.bin", None)  # its own failure: missing on the primary
    messaging = bootstrap.setup(runtime.settings)
    scheduler, cursor = Scheduler(runtime, messaging), LogCursor(runtime)
    cursor.run_once(wait=0)
    scheduler.run_once()
    drain(messaging, runtime)
    assert _state(runtime, "gone/b.bin")[0] == "failed"
    with write_transaction(runtime.engine) as conn:  # a.bin to be fetched again
        sync_rows.resync(conn, ArtifactRegistry, ArtifactRegistry.path == "ok/a.bin")
    primary.stop()
    scheduler.run_once()
    drain(messaging, runtime)
    assert _state(runtime, "ok/a.bin") == ("failed", "primary")
    assert _state(runtime, "gone/b.bin") == ("failed", None)
    assert secondary_status(runtime.engine, None, "s1")["waiting_for"] == {"primary": 1}
    _as_if_backed_off_for_an_hour(runtime)
    wait_for(lambda: "primary" in _probed(scheduler), "the probe to see the primary down")
    primary.start()

    def synced() -> bool:
        scheduler.run_once()
        drain(messaging, runtime)
        return _state(runtime, "ok/a.bin")[0] == "synced"

    wait_for(synced, "the blocked row to be retried once the primary answers", timeout=60)
    assert secondary_status(runtime.engine, None, "s1")["waiting_for"] == {}
    assert _state(runtime, "gone/b.bin") == ("failed", None), (
        "an item's own failure lost its backoff when the primary came back")


@pytest.fixture
def small_disk(runtime: Runtime) -> Iterator[Path]:
    """The mirror's artifact storage on a 1 MiB tmpfs (root may mount; else skip)."""
    target = runtime.settings.mirror_root / "artifacts"
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): no disk-full test")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_rows_failed_on_a_full_disk_are_retried_once_space_is_freed(
    primary: PrimarySite, runtime: Runtime, small_disk: Path
) -> None:
    filler = small_disk / "filler"
    with filler.open("wb") as handle, pytest.raises(OSError):
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
            os.fsync(handle.fileno())
    _publish_blob(primary, "big/a.bin", b"a" * 200_000)
    messaging = bootstrap.setup(runtime.settings)
    scheduler, cursor = Scheduler(runtime, messaging), LogCursor(runtime)
    cursor.run_once(wait=0)
    scheduler.run_once()
    drain(messaging, runtime)
    assert _state(runtime, "big/a.bin") == ("failed", "storage")
    assert secondary_status(runtime.engine, None, "s1")["waiting_for"] == {"storage": 1}
    _as_if_backed_off_for_an_hour(runtime)
    wait_for(lambda: "storage" in _probed(scheduler), "the probe to see the disk full")
    filler.unlink()

    def synced() -> bool:
        scheduler.run_once()
        drain(messaging, runtime)
        return _state(runtime, "big/a.bin")[0] == "synced"

    wait_for(synced, "the row to be retried once space is freed", timeout=60)


def test_a_failure_that_only_looks_site_wide_keeps_its_own_backoff(
    primary: PrimarySite, runtime: Runtime
) -> None:
    # The primary answers throughout, so a row marked blocked (a reset transfer of
    # this one item, say) is not retried on every probe: that would be a hot loop.
    _publish_blob(primary, "ok/a.bin", b"a" * 4096)
    messaging = bootstrap.setup(runtime.settings)
    scheduler, cursor = Scheduler(runtime, messaging), LogCursor(runtime)
    cursor.run_once(wait=0)
    with write_transaction(runtime.engine) as conn:
        conn.execute(update(ArtifactRegistry).values(
            state="failed", blocked_on="primary", retry_at=utcnow() + timedelta(hours=1)))
    deadline = time.monotonic() + 3 * runtime.settings.recovery_probe_seconds
    while time.monotonic() < deadline:
        assert scheduler.run_once().unblocked == 0
        time.sleep(0.2)
    assert _state(runtime, "ok/a.bin") == ("failed", "primary")


# -- sending sync work ----------------------------------------------------------------


def _messages(messaging: bootstrap.Messaging) -> list[tuple[str, str, list[int]]]:
    """The messages the scheduler sent (actor, type, ids), taken off the in-process queue."""
    broker = messaging.broker
    assert isinstance(broker, StubBroker)
    sent = []
    for queue in list(broker.queues.values()):
        while not queue.empty():
            message = dramatiq.Message.decode(queue.get_nowait())
            sent.append((message.actor_name, message.args[0], list(message.args[1])))
    return sent


def _sent(messaging: bootstrap.Messaging) -> list[tuple[str, list[int]]]:
    """The sync messages the scheduler sent, taken off the in-process queue."""
    return [(kind, ids) for actor, kind, ids in _messages(messaging)
            if actor == bootstrap.ACTOR]


def _pending_artifacts(runtime: Runtime, count: int) -> list[int]:
    with write_transaction(runtime.engine) as conn:
        sync_rows.insert_ignore(conn, ArtifactRegistry, [
            sync_rows.new_row(f"r{n}", f"p/{n}.zip") for n in range(count)])
        return list(conn.execute(select(ArtifactRegistry.id).order_by(ArtifactRegistry.id))
                    .scalars())


def test_pending_rows_go_out_in_batches_never_more_in_flight_than_the_types_limit(
    runtime: Runtime,
) -> None:
    tuned = dataclasses.replace(runtime, settings=runtime.settings.model_copy(
        update={"concurrency": {"*": 5}, "batch_size": {"*": 2}, "worker_threads": 1}))
    ids = _pending_artifacts(tuned, 8)
    messaging = bootstrap.setup(tuned.settings)
    scheduler = Scheduler(tuned, messaging)
    first = scheduler.run_once()
    sent = _sent(messaging)
    kind = ArtifactReplicator.name
    assert first.enqueued[kind] == 5
    assert [len(batch) for _, batch in sent] == [2, 2, 1]
    assert [i for _, batch in sent for i in batch] == ids[:5]
    assert scheduler.run_once().enqueued[kind] == 0, "sent again while still in flight"
    assert _sent(messaging) == []


def test_a_trickle_is_spread_over_the_worker_threads_and_a_backlog_goes_in_full_batches(
    runtime: Runtime,
) -> None:
    tuned = dataclasses.replace(runtime, settings=runtime.settings.model_copy(
        update={"concurrency": {"*": 10}, "batch_size": {"*": 25}, "worker_threads": 4}))
    ids = _pending_artifacts(tuned, 300)
    messaging = bootstrap.setup(tuned.settings)
    scheduler = Scheduler(tuned, messaging)
    scheduler.run_once()
    trickle = _sent(messaging)
    assert [len(batch) for _, batch in trickle] == [2] * 5, "10 rows on 1 of 4 threads"
    backlog = dataclasses.replace(runtime, settings=runtime.settings.model_copy(
        update={"concurrency": {"*": 1000}, "batch_size": {"*": 25}, "worker_threads": 4}))
    Scheduler(backlog, messaging).run_once()
    sent = _sent(messaging)
    assert [len(batch) for _, batch in sent] == [25] * 11 + [15]
    assert [i for _, batch in trickle + sent for i in batch] == ids


def test_a_lease_that_ran_out_puts_its_row_back_and_it_is_sent_again(
    runtime: Runtime,
) -> None:
    (row_id,) = _pending_artifacts(runtime, 1)
    with write_transaction(runtime.engine) as conn:
        sync_rows.claim(conn, ArtifactRegistry, [row_id], "a-dead-worker", 60)
        conn.execute(update(ArtifactRegistry).values(
            lease_until=utcnow() - timedelta(seconds=1)))
    messaging = bootstrap.setup(runtime.settings)
    result = Scheduler(runtime, messaging).run_once()
    assert result.expired == 1
    assert [batch for _, batch in _sent(messaging)] == [[row_id]]
    with runtime.engine.connect() as conn:
        state, holder = conn.execute(select(ArtifactRegistry.state,
                                            ArtifactRegistry.claimed_by)).one()
    assert (state, holder) == (SyncState.PENDING, None)


def test_a_pass_with_nothing_to_do_costs_one_query_whatever_the_number_of_types(
    runtime: Runtime,
) -> None:
    """The counts the triggers keep say which steps have rows to act on: idle types
    (and idle steps of a busy one) cost no statement. The first pass also runs the
    janitor and the dependency probe, which keep their own intervals."""
    scheduler = Scheduler(runtime, bootstrap.setup(runtime.settings))
    scheduler.run_once()
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement not in ("BEGIN", "BEGIN IMMEDIATE", "COMMIT"):  # SQLite's own
            statements.append(statement)

    event.listen(runtime.engine, "before_cursor_execute", record)
    try:
        scheduler.run_once()
        assert len(statements) == 1, statements
        (row_id,) = _pending_artifacts(runtime, 1)
        statements.clear()
        messaging = bootstrap.setup(runtime.settings)
        Scheduler(runtime, messaging).run_once()
    finally:
        event.remove(runtime.engine, "before_cursor_execute", record)
    assert [batch for _, batch in _sent(messaging)] == [[row_id]]


def test_a_busy_pass_is_three_statements_on_postgresql_whatever_the_number_of_types(
    runtime: Runtime,
) -> None:
    """The counts, then the sync work and the verification work of every type with work,
    one statement each (``pass_work``); SQLite runs the per-type steps instead. The
    work handed out is the same either way."""
    messaging = bootstrap.setup(runtime.settings)
    scheduler = Scheduler(runtime, messaging)
    scheduler.run_once()  # the janitor and the probe, which keep their own intervals
    expected: dict[tuple[str, str], list[int]] = {}
    with write_transaction(runtime.engine) as conn:
        for kind, model in (("artifact", ArtifactRegistry), ("repository", RepositoryRegistry)):
            sync_rows.insert_ignore(conn, model, [
                sync_rows.new_row(f"r{n}", f"p/{n}") for n in range(4)])
            ids = sorted(conn.execute(select(model.id)).scalars())
            conn.execute(update(model).where(model.id.in_(ids[:2]))
                         .values(state=SyncState.SYNCED))
            expected[(bootstrap.VERIFY_ACTOR, kind)] = ids[:2]
            expected[(bootstrap.ACTOR, kind)] = ids[2:]
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    event.listen(runtime.engine, "before_cursor_execute", record)
    try:
        scheduler.run_once()
    finally:
        event.remove(runtime.engine, "before_cursor_execute", record)
    sent: dict[tuple[str, str], list[int]] = {}
    for actor, kind, ids in _messages(messaging):
        sent.setdefault((actor, kind), []).extend(ids)
    assert sent == expected
    if is_postgres(runtime.engine):
        plan_mode = [s for s in statements if s.endswith("plan_cache_mode")
                     or "plan_cache_mode =" in s]
        assert len(statements) - len(plan_mode) == 3, statements
        assert [s.split()[0] for s in plan_mode] == ["SET", "RESET"], statements
