"""The event feed delivers every committed event exactly once, never before commit."""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, insert, text

from geo_sync.db import is_postgres, write_transaction
from geo_sync.errors import InvalidCursor
from geo_sync.primary.feed import PostgresFeed, Snapshot, SqliteFeed, feed_for
from geo_sync.primary.models import Event
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


_JSON_SCALARS = (st.none() | st.booleans() | st.integers(-2**53, 2**53)
                 | st.floats(allow_nan=False, allow_infinity=False)
                 | st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                                  blacklist_characters="\x00")))
_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                       blacklist_characters="\x00"), min_size=1, max_size=40)
_EVENT_ROWS = st.lists(st.fixed_dictionaries({
    "replicable_type": st.sampled_from(["artifact", "job_log", "repository"]),
    "event": st.sampled_from(["created", "updated", "deleted", "renamed"]),
    "record_id": _TEXT,
    "path": _TEXT,
    "payload": st.none() | st.dictionaries(
        _TEXT, st.recursive(_JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(_TEXT, inner, max_size=3), max_leaves=8),
        max_size=4),
    "created_at": st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                               timezones=st.just(UTC)),
}), min_size=0, max_size=12)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_EVENT_ROWS, limit=st.integers(1, 5))
def test_the_json_page_is_the_page(primary_engine: Engine, rows: list[dict[str, Any]],
                                   limit: int) -> None:
    """``read_json`` (what GET /events sends; PostgreSQL writes the JSON itself) says
    what ``read`` says, page by page, for any text, payload and time."""
    feed = feed_for(primary_engine.dialect)
    with primary_engine.connect() as conn:
        start = feed.head(conn)
    with write_transaction(primary_engine) as conn:
        for row in rows:
            txid = (text("pg_current_xact_id()::text::bigint") if is_postgres(primary_engine)
                    else None)
            conn.execute(insert(Event).values(txid=txid, **row))
    objects, documents = start, start
    read: list[dict[str, Any]] = []
    sent: list[dict[str, Any]] = []
    # One snapshot for both reads: transaction ids are the whole server's, so two
    # snapshots taken a moment apart differ while other databases are written.
    fixed = {"isolation_level": "REPEATABLE READ"} if is_postgres(primary_engine) else {}
    with primary_engine.connect().execution_options(**fixed) as conn:
        while True:
            page = feed.read(conn, objects, limit)
            body = json.loads(feed.read_json(conn, documents, limit).body())
            assert (body["cursor"], body["more"]) == (page.cursor, page.more)
            read.extend(event.to_json() for event in page.events)
            sent.extend(body["events"])
            objects = documents = page.cursor
            if not page.more:
                break
    assert len(read) == len(sent) == len(rows)
    for mine, theirs in zip(read, sent, strict=True):
        assert datetime.fromisoformat(theirs.pop("created_at")) == \
            datetime.fromisoformat(mine.pop("created_at"))
        assert theirs == mine
