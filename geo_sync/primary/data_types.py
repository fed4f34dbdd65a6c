"""Which (type, event) pairs the primary accepts, derived from the data types' classes.

The pairs live in the primary DB's ``geo_accepted_events`` table, which both publish
paths consult: the ``geo_publish()`` SQL function (CI systems in other languages call
it, so it cannot import Python) and the portable path in ``publish.py``. Adding a data
type therefore never re-creates the SQL function: its primary migration runs one call,

    accept_data_type(op.get_bind(), WidgetReplicator)

and the table says what the class says. ``unaccepted_events`` names the registered
pairs a database lacks (a type whose migration was not run).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, delete, insert, select

from geo_sync.primary.models import AcceptedEvent
from geo_sync.primary.publish_rules import refuse
from replicators.base import DataType
from replicators.type_map import REPLICATORS

Pair = tuple[str, str]


def registered_events(replicators: Iterable[type[DataType]] | None = None) -> frozenset[Pair]:
    """Every (type, event) pair the registered data types declare."""
    chosen = REPLICATORS.values() if replicators is None else replicators
    return frozenset((cls.name, event) for cls in chosen for event in cls.events)


def accepted_events(conn: Connection) -> frozenset[Pair]:
    """The pairs this primary database accepts."""
    rows = conn.execute(select(AcceptedEvent.replicable_type, AcceptedEvent.event))
    return frozenset((str(kind), str(event)) for kind, event in rows)


def accept_data_type(bind: Connection, replicator: type[DataType]) -> None:
    """Make the accepted pairs of ``replicator``'s type exactly its declared events: the
    one step a primary migration for a new (or changed) data type runs. Idempotent."""
    wanted = registered_events([replicator])
    have = {pair for pair in accepted_events(bind) if pair[0] == replicator.name}
    for kind, event in sorted(wanted - have):
        bind.execute(insert(AcceptedEvent).values(replicable_type=kind, event=event))
    for _, event in sorted(have - wanted):
        bind.execute(delete(AcceptedEvent).where(AcceptedEvent.replicable_type == replicator.name,
                                                 AcceptedEvent.event == event))


def withdraw_data_type(bind: Connection, type_name: str) -> None:
    """Accept no event of ``type_name`` any more (a migration's downgrade)."""
    bind.execute(delete(AcceptedEvent).where(AcceptedEvent.replicable_type == type_name))


def unaccepted_events(conn: Connection) -> frozenset[Pair]:
    """Registered pairs this database does not accept: a data type whose primary
    migration has not run (or was never written)."""
    return registered_events() - accepted_events(conn)


def require_accepted(conn: Connection, type_name: str, event: str) -> None:
    """Refuse a pair the database does not accept, as geo_publish() does. Only reached
    for a registered pair (``validate_change`` runs first): the type's migration is missing."""
    found = conn.execute(select(AcceptedEvent.event).where(
        AcceptedEvent.replicable_type == type_name, AcceptedEvent.event == event)).first()
    if found is None:
        raise refuse("unknown_event", event=event, type=type_name)
