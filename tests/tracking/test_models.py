"""Every registered data type has its registry table at the tracking schema's head, with
the columns and indexes of its model; a new type's table is one helper call away."""

from __future__ import annotations

from sqlalchemy import Engine, inspect

from geo_sync.tracking.models import registry_model
from geo_sync.tracking.registry_tables import create_registry_table, drop_registry_table
from replicators.type_map import REPLICATORS


def _columns(engine: Engine, table: str) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns(table)}


def test_each_registered_type_has_a_table_with_its_models_columns(
    tracking_engine: Engine,
) -> None:
    for replicator in REPLICATORS.values():
        table = replicator.registry_table.__tablename__  # type: ignore[attr-defined]
        model_columns = {c.name for c in replicator.registry_table.__table__.columns}  # type: ignore[attr-defined]
        assert model_columns <= _columns(tracking_engine, table), replicator.name


def test_a_new_types_table_is_created_and_dropped_by_one_call(tracking_engine: Engine) -> None:
    model = registry_model("gizmo")
    assert registry_model("gizmo") is model
    create_registry_table(tracking_engine, "gizmo")
    assert _columns(tracking_engine, "geo_gizmo_registry") == {
        c.name for c in model.__table__.columns}  # type: ignore[attr-defined]
    indexes = {i["name"] for i in inspect(tracking_engine).get_indexes("geo_gizmo_registry")}
    assert "ix_geo_gizmo_registry_state_id" in indexes
    drop_registry_table(tracking_engine, "gizmo")
    assert "geo_gizmo_registry" not in inspect(tracking_engine).get_table_names()
