"""Publishing: one rule set in Python and in geo_publish(); a path has one owner;
a delete removes exactly one catalogued item."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.exc import DBAPIError

from geo_sync.db import is_postgres, write_transaction
from geo_sync.errors import InvalidInput, NotFound
from geo_sync.primary.models import CatalogItem, Event
from geo_sync.primary.publish import Change, publish, validate_change
from tests.hostile.strategies import hostile_text

SHA = "b" * 64
FIXTURE_SETTINGS = settings(max_examples=300, deadline=None,
                            suppress_health_check=[HealthCheck.function_scoped_fixture])


def _sql(conn: Connection, change: Change) -> int:
    return int(conn.execute(
        text("SELECT geo_publish(:t, :e, :p, :r, :s, :c, :o)"),
        {"t": change.replicable_type, "e": change.event, "p": change.path,
         "r": change.record_id, "s": change.size, "c": change.checksum, "o": change.old_path},
    ).scalar_one())


def _counts(conn: Connection) -> tuple[int, int]:
    return (conn.execute(select(func.count()).select_from(Event)).scalar_one(),
            conn.execute(select(func.count()).select_from(CatalogItem)).scalar_one())


def _python_verdict(change: Change) -> bool:
    try:
        validate_change(change)
    except InvalidInput:
        return False
    return True


def _sql_verdict(conn: Connection, change: Change) -> bool:
    """False if geo_publish() refuses the arguments (22023); True if it accepts them
    (including 'no such item to rename', which is about the catalog, not the rules)."""
    try:
        with conn.begin_nested():
            _sql(conn, change)
    except DBAPIError as exc:
        sqlstate = getattr(exc.orig, "sqlstate", None)
        assert sqlstate in ("22023", "P0002"), exc
        return sqlstate != "22023"
    return True


_checksums = st.one_of(st.none(), st.sampled_from(
    [SHA, SHA + "\n", "\n" + SHA, SHA.upper(), SHA[:-1], SHA + "0", " " + SHA, "g" * 64]))
_sizes = st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1))
_no_nul = hostile_text.filter(lambda s: "\x00" not in s and "\ud800" not in s)


@st.composite
def _changes(draw: st.DrawFn) -> Change:
    kind = draw(st.sampled_from(["artifact", "job_log", "repository"]))
    event = draw(st.sampled_from(["created", "renamed", "appended", "bogus"]))
    path = draw(_no_nul)
    if kind == "repository" and draw(st.booleans()):
        path += ".git"
    old = draw(st.one_of(st.none(), _no_nul.map(lambda p: p + ".git")))
    record = draw(st.one_of(st.none(), _no_nul))
    return Change(kind, event, path, record_id=record, size=draw(_sizes),
                  checksum=draw(_checksums), old_path=old)


@FIXTURE_SETTINGS
@given(change=_changes())
def test_python_and_the_sql_function_give_every_hostile_call_the_same_verdict(
    pg_engine: Engine, change: Change
) -> None:
    with pg_engine.connect() as conn:
        assert _python_verdict(change) == _sql_verdict(conn, change), change
        conn.rollback()


@pytest.mark.parametrize("path", ["a\x85b", "a\x9fb", "a\x80", ".geo-sync-tmp-x",
                                  "d/.geo-sync-tmp-partial", "e\ud800f"])
def test_c1_controls_reserved_names_and_non_utf8_are_refused_on_both_backends(
    primary_engine: Engine, path: str
) -> None:
    with write_transaction(primary_engine) as conn:
        with pytest.raises(InvalidInput):
            publish(conn, Change("artifact", "created", path))
        assert _counts(conn) == (0, 0)


def test_the_old_path_of_a_rename_must_name_a_repository_in_both_rule_sets(
    pg_engine: Engine,
) -> None:
    change = Change("repository", "renamed", "b.git", old_path="plain-dir")
    with pg_engine.connect() as conn:
        assert _python_verdict(change) is False
        assert _sql_verdict(conn, change) is False


@pytest.mark.parametrize("checksum", [SHA + "\n", SHA + "\r\n", SHA + " "])
def test_a_checksum_with_anything_after_it_is_refused(
    primary_engine: Engine, checksum: str
) -> None:
    with write_transaction(primary_engine) as conn, pytest.raises(InvalidInput, match="checksum"):
        publish(conn, Change("artifact", "created", "a.bin", checksum=checksum))


@pytest.mark.parametrize("size", [2**63, 2**64 + 1, 10**40])
def test_a_size_beyond_64_bits_is_refused_naming_the_field(
    primary_engine: Engine, size: int
) -> None:
    with write_transaction(primary_engine) as conn, pytest.raises(InvalidInput, match="size"):
        publish(conn, Change("artifact", "created", "a.bin", size=size))


# -- a path belongs to one record at a time -----------------------------------------


def _refusal(engine: Engine, via: str, *changes: Change) -> tuple[str, str]:
    """Publish ``changes``; the last must be refused. Returns (sqlstate, message)."""
    with engine.connect() as conn:
        for change in changes[:-1]:
            publish(conn, change)
        if via == "sql":
            with pytest.raises(DBAPIError) as caught:
                _sql(conn, changes[-1])
            diag: Any = getattr(caught.value.orig, "diag", None)
            conn.rollback()
            return (str(getattr(caught.value.orig, "sqlstate", "")),
                    str(diag.message_primary).removeprefix("geo_publish: "))
        with pytest.raises(InvalidInput) as refused:
            publish(conn, changes[-1])
        conn.rollback()
        return "22023", refused.value.message


COLLISIONS: dict[str, tuple[tuple[str, str], tuple[Change, ...]]] = {
    "new record at an occupied path": (("r1", "r2"), (
        Change("artifact", "created", "x/a.bin", record_id="r1"),
        Change("artifact", "created", "x/a.bin", record_id="r2"),
    )),
    "rename onto an occupied path": (("r1", "r2"), (
        Change("repository", "created", "g/a.git", record_id="r1"),
        Change("repository", "created", "g/b.git", record_id="r2"),
        Change("repository", "renamed", "g/a.git", record_id="r2"),
    )),
    "rename by old path onto an occupied path": (("r1", "r2"), (
        Change("repository", "created", "g/a.git", record_id="r1"),
        Change("repository", "created", "g/b.git", record_id="r2"),
        Change("repository", "renamed", "g/a.git", old_path="g/b.git"),
    )),
    "record id defaulting to the path of a record held elsewhere": (("j/1.log", "j/2.log"), (
        Change("job_log", "created", "j/2.log", record_id="j/1.log"),
        Change("job_log", "created", "j/1.log"),
    )),
}


@pytest.mark.parametrize("why", list(COLLISIONS))
def test_a_path_another_record_holds_is_refused_naming_both_records_on_both_backends(
    primary_engine: Engine, why: str
) -> None:
    names, changes = COLLISIONS[why]
    sqlstate, message = _refusal(primary_engine, "python", *changes)
    assert sqlstate == "22023"
    assert all(name in message for name in names), message
    if is_postgres(primary_engine):
        assert _refusal(primary_engine, "sql", *changes) == (sqlstate, message)
    with primary_engine.connect() as conn:
        assert _counts(conn) == (0, 0)


def test_the_cli_refuses_a_collision_with_one_line_naming_both_records(primary: Any) -> None:
    primary.cli("primary", "publish", "artifact", "created", "--path", "c.bin",
                "--record-id", "first", "--no-inspect")
    result = primary.cli("primary", "publish", "artifact", "created", "--path", "c.bin",
                         "--record-id", "second", "--no-inspect", check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "first" in result.stderr and "second" in result.stderr, result.stderr


# -- deletes -----------------------------------------------------------------------


def test_a_delete_of_an_item_the_catalog_does_not_hold_is_refused(
    primary_engine: Engine,
) -> None:
    with write_transaction(primary_engine) as conn:
        publish(conn, Change("artifact", "created", "dir/a.bin"))
        before = _counts(conn)
        for change in (Change("artifact", "deleted", "dir"),
                       Change("artifact", "deleted", "never.bin"),
                       Change("artifact", "deleted", "dir/a.bin", record_id="other")):
            with pytest.raises(NotFound):
                publish(conn, change)
        assert _counts(conn) == before


def test_a_delete_naming_a_record_at_another_path_is_refused(primary_engine: Engine) -> None:
    with write_transaction(primary_engine) as conn:
        publish(conn, Change("artifact", "created", "dir/a.bin", record_id="r1"))
        with pytest.raises(InvalidInput, match=r"r1 is at dir/a\.bin, not dir"):
            publish(conn, Change("artifact", "deleted", "dir", record_id="r1"))
        publish(conn, Change("artifact", "deleted", "dir/a.bin", record_id="r1"))
        assert _counts(conn) == (2, 0)


def test_the_sql_function_refuses_a_delete_of_nothing_with_p0002(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        with pytest.raises(DBAPIError) as caught:
            _sql(conn, Change("artifact", "deleted", "nothing/here"))
        assert getattr(caught.value.orig, "sqlstate", None) == "P0002"


def test_a_racing_publish_at_the_same_path_ends_in_the_refusal_not_a_loop(
    pg_engine: Engine,
) -> None:
    outcome: dict[str, BaseException | int] = {}
    first = pg_engine.connect()
    first.begin()
    publish(first, Change("artifact", "created", "race.bin", record_id="r1"))

    def second() -> None:
        with pg_engine.connect() as conn:
            try:
                outcome["second"] = publish(conn, Change("artifact", "created", "race.bin",
                                                         record_id="r2"))
                conn.commit()
            except BaseException as exc:  # handed to the test thread
                outcome["second"] = exc

    racer = threading.Thread(target=second)
    racer.start()
    racer.join(timeout=1)  # give it time to block on the first's uncommitted row
    first.commit()
    first.close()
    racer.join(timeout=60)
    assert not racer.is_alive(), "the second publish never ended"
    refused = outcome["second"]
    assert isinstance(refused, InvalidInput), refused
    assert "r1" in refused.message and "r2" in refused.message
