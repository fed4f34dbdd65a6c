"""Publishing: the Python API and the geo_publish() SQL function follow one set of rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.exc import DBAPIError

from geo_sync.db import is_postgres, write_transaction
from geo_sync.errors import InvalidInput, NotFound
from geo_sync.primary.models import CatalogItem, Event
from geo_sync.primary.publish import Change, publish
from replicators.type_map import REPLICATORS

SHA = "a" * 64

HOSTILE: list[tuple[str, Change]] = [
    ("parent traversal", Change("artifact", "created", "../etc/passwd")),
    ("traversal inside", Change("artifact", "created", "a/../../b")),
    ("absolute path", Change("artifact", "created", "/etc/passwd")),
    ("empty path", Change("artifact", "created", "")),
    ("dot component", Change("artifact", "created", "a/./b")),
    ("double slash", Change("artifact", "created", "a//b")),
    ("trailing slash", Change("artifact", "created", "a/b/")),
    ("control character", Change("artifact", "created", "a\nb")),
    ("backslash", Change("artifact", "created", "a\\..\\b")),
    ("huge path", Change("artifact", "created", "a/" * 3000)),
    ("huge component", Change("artifact", "created", "x" * 300)),
    ("repository without .git", Change("repository", "created", "group/project")),
    ("bare .git name", Change("repository", "created", "group/.git")),
    ("unknown type", Change("wiki", "created", "a")),
    ("event of another type", Change("artifact", "appended", "a")),
    ("negative size", Change("artifact", "created", "a", size=-1)),
    ("bad checksum", Change("artifact", "created", "a", checksum="XYZ")),
    ("huge record id", Change("artifact", "created", "a", record_id="r" * 300)),
    ("old path on create", Change("artifact", "created", "a", old_path="b")),
    ("rename without source", Change("repository", "renamed", "a.git")),
    ("hostile old path", Change("repository", "renamed", "a.git", old_path="../b.git")),
]


def _counts(conn: Connection) -> tuple[int, int]:
    return (
        conn.execute(select(func.count()).select_from(Event)).scalar_one(),
        conn.execute(select(func.count()).select_from(CatalogItem)).scalar_one(),
    )


def _via_sql_function(conn: Connection, change: Change) -> int:
    return int(conn.execute(
        text("SELECT geo_publish(:t, :e, :p, :r, :s, :c, :o)"),
        {"t": change.replicable_type, "e": change.event, "p": change.path,
         "r": change.record_id, "s": change.size, "c": change.checksum, "o": change.old_path},
    ).scalar_one())


@pytest.mark.parametrize(("why", "change"), HOSTILE, ids=[why for why, _ in HOSTILE])
def test_hostile_publish_calls_are_refused_without_writing_anything(
    primary_engine: Engine, why: str, change: Change
) -> None:
    with write_transaction(primary_engine) as conn:
        before = _counts(conn)
        with pytest.raises(InvalidInput):
            publish(conn, change)
        assert _counts(conn) == before


@pytest.mark.parametrize(("why", "change"), HOSTILE, ids=[why for why, _ in HOSTILE])
def test_the_sql_function_refuses_the_same_hostile_calls(
    pg_engine: Engine, why: str, change: Change
) -> None:
    with pg_engine.connect() as conn:
        with pytest.raises(DBAPIError) as caught:
            _via_sql_function(conn, change)
        assert "geo_publish" in str(caught.value.orig)
        conn.rollback()
        assert _counts(conn) == (0, 0)


def test_the_sql_function_accepts_exactly_the_events_the_replicators_declare(
    pg_engine: Engine,
) -> None:
    declared = {(name, event) for name, cls in REPLICATORS.items() for event in cls.events}
    accepted = set()
    for name in [*REPLICATORS, "wiki"]:
        for event in ["created", "updated", "renamed", "deleted", "appended", "archived", "x"]:
            path = "p.git" if name == "repository" else "p"
            old = "p.git" if event == "renamed" else None
            with pg_engine.connect() as conn:
                try:
                    if old or event == "deleted":
                        _via_sql_function(conn, Change(name, "created", path))
                    _via_sql_function(conn, Change(name, event, path, old_path=old))
                    accepted.add((name, event))
                except DBAPIError:
                    pass
                conn.rollback()
    assert accepted == declared


Publisher = Callable[[Connection, Change], Any]


def _publishers(engine: Engine) -> list[Publisher]:
    if is_postgres(engine):
        return [publish, _via_sql_function]
    return [publish]


def _catalog(conn: Connection) -> dict[str, tuple[str, int | None, str | None]]:
    rows = conn.execute(select(CatalogItem.record_id, CatalogItem.path, CatalogItem.size,
                               CatalogItem.checksum)).all()
    return {row.record_id: (row.path, row.size, row.checksum) for row in rows}


def _events(conn: Connection) -> list[tuple[str, str, str, dict[str, Any]]]:
    rows = conn.execute(select(Event.event, Event.record_id, Event.path, Event.payload)
                        .order_by(Event.id)).all()
    return [(r.event, r.record_id, r.path, r.payload) for r in rows]


def test_a_repository_lifecycle_updates_the_catalog_and_logs_each_event(
    primary_engine: Engine,
) -> None:
    for publisher in _publishers(primary_engine):
        with write_transaction(primary_engine) as conn:
            publisher(conn, Change("repository", "created", "g/p.git", record_id="42"))
            publisher(conn, Change("repository", "updated", "g/p.git", record_id="42",
                                   checksum=SHA, size=10))
            assert _catalog(conn) == {"42": ("g/p.git", 10, SHA)}
            publisher(conn, Change("repository", "renamed", "g/q.git", record_id="42"))
            assert _catalog(conn) == {"42": ("g/q.git", 10, SHA)}
            publisher(conn, Change("repository", "updated", "g/q.git", record_id="42"))
            assert _catalog(conn) == {"42": ("g/q.git", None, None)}, "stale checksum kept"
            publisher(conn, Change("repository", "deleted", "g/q.git", record_id="42"))
            assert _catalog(conn) == {}
            assert _events(conn) == [
                ("created", "42", "g/p.git", {}),
                ("updated", "42", "g/p.git", {"size": 10, "checksum": SHA}),
                ("renamed", "42", "g/q.git", {"old_path": "g/p.git"}),
                ("updated", "42", "g/q.git", {}),
                ("deleted", "42", "g/q.git", {}),
            ]
            conn.rollback()


def test_items_without_a_record_id_are_keyed_by_path(primary_engine: Engine) -> None:
    for publisher in _publishers(primary_engine):
        with write_transaction(primary_engine) as conn:
            publisher(conn, Change("job_log", "created", "j/1.log", size=5))
            publisher(conn, Change("job_log", "appended", "j/1.log", size=9))
            publisher(conn, Change("job_log", "archived", "j/1.log", size=9, checksum=SHA))
            assert _catalog(conn) == {"j/1.log": ("j/1.log", 9, SHA)}
            publisher(conn, Change("job_log", "deleted", "j/1.log"))
            assert [e[:3] for e in _events(conn)][-1:] == [("deleted", "j/1.log", "j/1.log")]
            conn.rollback()


def test_renaming_something_unknown_or_moving_without_rename_is_refused(
    primary_engine: Engine,
) -> None:
    with write_transaction(primary_engine) as conn:
        with pytest.raises(NotFound):
            publish(conn, Change("repository", "renamed", "b.git", old_path="a.git"))
        publish(conn, Change("repository", "created", "a.git", record_id="7"))
        with pytest.raises(InvalidInput, match="publish renamed"):
            publish(conn, Change("repository", "updated", "elsewhere.git", record_id="7"))
        assert _catalog(conn) == {"7": ("a.git", None, None)}


def test_an_event_rolled_back_with_its_transaction_never_existed(primary_engine: Engine) -> None:
    with primary_engine.connect() as conn:
        trans = conn.begin()
        publish(conn, Change("artifact", "created", "x.bin"))
        trans.rollback()
        assert _counts(conn) == (0, 0)
