"""The event feed delivers every committed event exactly once, never before commit."""

from __future__ import annotations

import random
import threading
import time

import pytest
from sqlalchemy import Engine

from geo_sync.db import is_postgres, write_transaction
from geo_sync.errors import InvalidCursor
from geo_sync.primary.feed import PostgresFeed, Snapshot, SqliteFeed, feed_for
from geo_sync.primary.publish import Change, publish

WRITERS = 10


def _artifact(path: str) -> Change:
    return Change("artifact", "created", path, size=1)


def test_concurrent_writers_committing_out_of_order_lose_and_repeat_nothing(
    primary_engine: Engine,
) -> None:
    postgres = is_postgres(primary_engine)
    transactions_per_writer = 25 if postgres else 6
    feed = feed_for(primary_engine.dialect)
    lock = threading.Lock()
    commit_started: set[str] = set()
    committed: set[str] = set()
    rolled_back: set[str] = set()
    commit_order: list[list[int]] = []  # event ids per transaction, in commit order
    violations: list[str] = []
    received: list[str] = []
    writers_done = threading.Event()
    barrier = threading.Barrier(WRITERS)

    def writer(number: int) -> None:
        rng = random.Random(number)
        barrier.wait()
        for tx in range(transactions_per_writer):
            paths = [f"w{number}/t{tx}/e{k}.bin" for k in range(rng.randint(1, 3))]
            with primary_engine.connect() as plain:
                conn = plain.execution_options(geo_sync_write=True)
                trans = conn.begin()
                ids = [publish(conn, _artifact(p)) for p in paths]
                time.sleep(rng.uniform(0, 0.04 if postgres else 0.005))
                if rng.random() < 0.15:
                    trans.rollback()
                    with lock:
                        rolled_back.update(paths)
                    continue
                with lock:
                    commit_started.update(paths)
                trans.commit()
                with lock:
                    committed.update(paths)
                    commit_order.append(ids)

    def reader() -> None:
        cursor = feed.start()
        with primary_engine.connect() as conn:
            while True:
                finished = writers_done.is_set()
                page = feed.read(conn, cursor, limit=7)
                conn.commit()
                with lock:
                    for event in page.events:
                        if event.path not in commit_started:
                            violations.append(f"{event.path} arrived before its commit")
                        received.append(event.path)
                cursor = page.cursor
                if finished and not page.events and not page.more:
                    return
                if not page.events:
                    time.sleep(0.002)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    consumer = threading.Thread(target=reader)
    consumer.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writers_done.set()
    consumer.join(timeout=120)

    assert not consumer.is_alive()
    assert violations == []
    assert len(received) == len(set(received)), "an event was delivered twice"
    assert set(received) == committed
    assert not (set(received) & rolled_back)
    if postgres:
        # The hazard was really exercised: some transaction committed after a
        # transaction holding a higher event id.
        flat = [(min(ids), position) for position, ids in enumerate(commit_order)]
        assert any(
            later_id < earlier_id
            for (earlier_id, pos_a) in flat
            for (later_id, pos_b) in flat
            if pos_b > pos_a
        )


def test_a_transaction_still_open_holds_back_nothing_and_arrives_when_it_commits(
    pg_engine: Engine,
) -> None:
    feed = PostgresFeed()
    with pg_engine.connect() as reader:
        cursor = feed.head(reader)
        reader.commit()
    slow = pg_engine.connect()
    slow_tx = slow.begin()
    publish(slow, _artifact("slow.bin"))  # lower id, commits last
    with write_transaction(pg_engine) as fast:
        publish(fast, _artifact("fast.bin"))
    with pg_engine.connect() as reader:
        page = feed.read(reader, cursor, limit=100)
        assert [e.path for e in page.events] == ["fast.bin"]
        slow_tx.commit()
        slow.close()
        page = feed.read(reader, page.cursor, limit=100)
        assert [e.path for e in page.events] == ["slow.bin"]
        assert feed.read(reader, page.cursor, limit=100).events == []


def test_pages_of_one_batch_walk_every_event_once(primary_engine: Engine) -> None:
    feed = feed_for(primary_engine.dialect)
    with write_transaction(primary_engine) as conn:
        for n in range(10):
            publish(conn, _artifact(f"a{n}.bin"))
    seen: list[str] = []
    cursor = feed.start()
    with primary_engine.connect() as conn:
        while True:
            page = feed.read(conn, cursor, limit=3)
            seen.extend(e.path for e in page.events)
            cursor = page.cursor
            if not page.more:
                break
    assert seen == [f"a{n}.bin" for n in range(10)]


@pytest.mark.parametrize(
    "cursor",
    ["", "garbage", "pg1;5:3:;;0", "pg1;1:9:12;;0", "pg1;1:1:;;x", "sq1;-1", "sq1;1;2"],
)
def test_malformed_cursors_are_refused_by_name(cursor: str) -> None:
    for feed in (PostgresFeed(), SqliteFeed()):
        with pytest.raises(InvalidCursor):
            feed.validate(cursor)


def test_snapshot_text_round_trips() -> None:
    assert str(Snapshot.parse("10:20:11,15")) == "10:20:11,15"
    assert str(Snapshot.parse("10:10:")) == "10:10:"
