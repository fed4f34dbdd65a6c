"""The (type, event) pairs the primary accepts are the registered data types' events,
read by both publish paths from one table that a type's migration fills in one call."""

from __future__ import annotations

from typing import ClassVar

import pytest
from sqlalchemy import Engine, text

from geo_sync.db import write_transaction
from geo_sync.errors import InvalidInput
from geo_sync.primary.data_types import (
    accept_data_type,
    accepted_events,
    registered_events,
    unaccepted_events,
    withdraw_data_type,
)
from geo_sync.primary.publish import Change, publish
from geo_sync.tracking.models import Registry, registry_model
from replicators.blob import BlobReplicator
from replicators.type_map import REPLICATORS


class GadgetReplicator(BlobReplicator):
    """A data type registered only by these tests."""

    name: ClassVar[str] = "gadget"
    events: ClassVar[tuple[str, ...]] = ("created", "appended", "deleted")
    storage_dir: ClassVar[str] = "gadgets"
    registry_table: ClassVar[Registry] = registry_model(name)


def test_a_migrated_primary_accepts_exactly_the_registered_types_events(
    primary_engine: Engine,
) -> None:
    with primary_engine.connect() as conn:
        assert accepted_events(conn) == registered_events()
        assert unaccepted_events(conn) == frozenset()


def test_a_registered_type_whose_migration_has_not_run_is_refused_then_accepted(
    primary_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(REPLICATORS, GadgetReplicator.name, GadgetReplicator)
    change = Change("gadget", "created", "g/1.bin")
    with primary_engine.connect() as conn:
        assert unaccepted_events(conn) == registered_events([GadgetReplicator])
        with (pytest.raises(InvalidInput, match="unknown event created for type gadget"),
              conn.begin_nested()):
            publish(conn, change)
        accept_data_type(conn, GadgetReplicator)
        assert unaccepted_events(conn) == frozenset()
        assert publish(conn, change) > 0
        conn.rollback()


def test_the_sql_function_follows_the_table_without_being_recreated(pg_engine: Engine) -> None:
    call = text("SELECT geo_publish('gadget', 'appended', 'g/1.bin')")
    with write_transaction(pg_engine) as conn:
        accept_data_type(conn, GadgetReplicator)
        assert conn.execute(call).scalar_one() > 0
    with write_transaction(pg_engine) as conn:
        withdraw_data_type(conn, "gadget")
    with pg_engine.connect() as conn, pytest.raises(Exception, match="unknown event appended"):
        conn.execute(call)


def test_accepting_a_type_again_follows_its_class_and_leaves_other_types_alone(
    primary_engine: Engine,
) -> None:
    class Narrower(GadgetReplicator):
        events: ClassVar[tuple[str, ...]] = ("created",)

    with primary_engine.connect() as conn:
        before = accepted_events(conn)
        accept_data_type(conn, GadgetReplicator)
        accept_data_type(conn, GadgetReplicator)
        assert accepted_events(conn) == before | registered_events([GadgetReplicator])
        accept_data_type(conn, Narrower)
        assert accepted_events(conn) == before | {("gadget", "created")}
        withdraw_data_type(conn, "gadget")
        assert accepted_events(conn) == before
        conn.rollback()
