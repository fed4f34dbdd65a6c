"""Rows per (sync state, verification state) of each registry, kept by the database.

Counting a million-row registry takes a full scan (0.1 s or more each, and status,
/metrics and the scheduler's pacing all want counts). Instead, triggers on every
registry table write the change each statement makes to the counts into
``geo_registry_counts``, in the statement's own transaction: the counts are exactly
as consistent as the rows, whoever changes them (cursor, workers, verifiers, an
operator's SQL), and no code path can forget to update them.

The triggers only ever INSERT deltas, never UPDATE a shared counter row: writers
updating one counter row per state would queue behind each other's transactions
and could deadlock (one locks "pending" then "synced", another the reverse).
``fold`` (the scheduler, every pass) sums the deltas into one row per key with a
DELETE … RETURNING, which takes exactly the rows it removes, so deltas committed
meanwhile are kept for the next fold. A reader sums what is there: a few rows.

PostgreSQL: statement-level triggers over transition tables (one grouped INSERT per
statement, whatever its size). SQLite: row-level triggers (one writer at a time).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, func, insert, select

from geo_sync.db import is_postgres, write_transaction
from geo_sync.tracking.models import RegistryCount

TABLE = "geo_registry_counts"

_PG_FUNCTIONS = {
    "insert": """
        INSERT INTO geo_registry_counts (registry_table, state, verification_state, rows)
        SELECT TG_TABLE_NAME, state, verification_state, count(*) FROM new_rows
        GROUP BY state, verification_state""",
    "update": """
        INSERT INTO geo_registry_counts (registry_table, state, verification_state, rows)
        SELECT TG_TABLE_NAME, state, verification_state, sum(n) FROM (
            SELECT state, verification_state, -1 AS n FROM old_rows
            UNION ALL SELECT state, verification_state, 1 FROM new_rows) AS changed
        GROUP BY state, verification_state HAVING sum(n) <> 0""",
    "delete": """
        INSERT INTO geo_registry_counts (registry_table, state, verification_state, rows)
        SELECT TG_TABLE_NAME, state, verification_state, -count(*) FROM old_rows
        GROUP BY state, verification_state""",
}
_PG_TRANSITIONS = {"insert": "NEW TABLE AS new_rows",
                   "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
                   "delete": "OLD TABLE AS old_rows"}


def _pg_function(op: str) -> str:
    return f"geo_count_registry_{op}"


def create_functions(conn: Connection) -> None:
    """The PostgreSQL trigger functions, shared by every registry (once per database)."""
    if not is_postgres(conn.dialect):
        return
    for op, body in _PG_FUNCTIONS.items():
        conn.exec_driver_sql(
            f"CREATE OR REPLACE FUNCTION {_pg_function(op)}() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$ BEGIN {body}; RETURN NULL; END $$")


def drop_functions(conn: Connection) -> None:
    if is_postgres(conn.dialect):
        for op in _PG_FUNCTIONS:
            conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {_pg_function(op)}()")


def trigger_names(table: str) -> list[str]:
    return [f"geo_count_{table}_{op}" for op in _PG_FUNCTIONS]


def install(conn: Connection, table: str) -> None:
    """Count ``table``'s rows as they are now and keep counting them with triggers.
    Run in the transaction that creates or migrates the table, so no change is missed."""
    for name in trigger_names(table):
        _drop_trigger(conn, name, table)
    if is_postgres(conn.dialect):
        create_functions(conn)
        for op, name in zip(_PG_FUNCTIONS, trigger_names(table), strict=True):
            conn.exec_driver_sql(
                f"CREATE TRIGGER {name} AFTER {op.upper()} ON {table} "
                f"REFERENCING {_PG_TRANSITIONS[op]} FOR EACH STATEMENT "
                f"EXECUTE FUNCTION {_pg_function(op)}()")
    else:
        row = "INSERT INTO geo_registry_counts (registry_table, state, verification_state, rows) "
        insert_, update_, delete_ = trigger_names(table)
        conn.exec_driver_sql(
            f"CREATE TRIGGER {insert_} AFTER INSERT ON {table} BEGIN {row}"
            f"VALUES ('{table}', NEW.state, NEW.verification_state, 1); END")
        conn.exec_driver_sql(
            f"CREATE TRIGGER {update_} AFTER UPDATE OF state, verification_state ON {table} "
            "WHEN OLD.state IS NOT NEW.state OR "
            f"OLD.verification_state IS NOT NEW.verification_state BEGIN {row}"
            f"VALUES ('{table}', OLD.state, OLD.verification_state, -1), "
            f"('{table}', NEW.state, NEW.verification_state, 1); END")
        conn.exec_driver_sql(
            f"CREATE TRIGGER {delete_} AFTER DELETE ON {table} BEGIN {row}"
            f"VALUES ('{table}', OLD.state, OLD.verification_state, -1); END")
    conn.execute(delete(RegistryCount).where(RegistryCount.registry_table == table))
    # ``table`` is one of ours (geo_<type>_registry), never input.
    conn.exec_driver_sql(
        f"INSERT INTO {TABLE} (registry_table, state, verification_state, rows) "  # noqa: S608
        f"SELECT '{table}', state, verification_state, count(*) FROM {table} "
        "GROUP BY state, verification_state")


def uninstall(conn: Connection, table: str) -> None:
    for name in trigger_names(table):
        _drop_trigger(conn, name, table)
    conn.execute(delete(RegistryCount).where(RegistryCount.registry_table == table))


def _drop_trigger(conn: Connection, name: str, table: str) -> None:
    on = f" ON {table}" if is_postgres(conn.dialect) else ""
    conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}{on}")


def counts(conn: Connection, table: str) -> Counter[tuple[str, str]]:
    """(sync state, verification state) -> rows of registry ``table``, as of this
    transaction's snapshot."""
    return Counter({(state, verification): int(rows) for state, verification, rows in conn.execute(
        select(RegistryCount.state, RegistryCount.verification_state,
               func.sum(RegistryCount.rows))
        .where(RegistryCount.registry_table == table)
        .group_by(RegistryCount.state, RegistryCount.verification_state)).all()})


@dataclass(frozen=True)
class Snapshot:
    """Every registry's counts, read in one statement (the scheduler's pass starts
    with it), and how many delta rows hold them (what ``fold`` would fold)."""

    counts: dict[str, Counter[tuple[str, str]]]
    deltas: int

    def of(self, table: str) -> Counter[tuple[str, str]]:
        return self.counts.get(table, Counter())


def snapshot(conn: Connection) -> Snapshot:
    """(sync state, verification state) -> rows of every registry, as of this
    transaction's snapshot."""
    counts: dict[str, Counter[tuple[str, str]]] = {}
    deltas = 0
    for table, state, verification, rows, held_in in conn.execute(
            select(RegistryCount.registry_table, RegistryCount.state,
                   RegistryCount.verification_state, func.sum(RegistryCount.rows),
                   func.count())
            .group_by(RegistryCount.registry_table, RegistryCount.state,
                      RegistryCount.verification_state)).all():
        counts.setdefault(table, Counter())[(state, verification)] = int(rows)
        deltas += int(held_in)
    return Snapshot(counts, deltas)


def fold(bind: Engine | Connection, *, over: int = 0, waiting: int | None = None) -> int:
    """Sum the deltas into one row per key if there are more than ``over`` rows (the
    scheduler waits for a few hundred: a fold is a write and a commit); return how
    many rows were folded. ``waiting``: how many there are, if the caller has just
    counted them (``snapshot``)."""
    if isinstance(bind, Engine):
        if waiting is None:
            with bind.connect() as conn:
                waiting = conn.execute(
                    select(func.count()).select_from(RegistryCount)).scalar_one()
        if waiting <= over:
            return 0
        with write_transaction(bind) as conn:
            return fold(conn)
    taken = bind.execute(delete(RegistryCount).returning(
        RegistryCount.registry_table, RegistryCount.state, RegistryCount.verification_state,
        RegistryCount.rows)).all()
    totals: Counter[tuple[str, str, str]] = Counter()
    for registry, state, verification, rows in taken:
        totals[(registry, state, verification)] += rows
    kept = [{"registry_table": r, "state": s, "verification_state": v, "rows": n}
            for (r, s, v), n in sorted(totals.items()) if n]
    if kept:
        bind.execute(insert(RegistryCount), kept)
    return len(taken)
