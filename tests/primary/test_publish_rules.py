"""Publishing's refusals are written once: the portable path raises them and the SQL
function is rendered from them, so both say the same words with the same SQLSTATE."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from geo_sync.primary.publish_rules import (
    REFUSALS,
    SQL_PREFIX,
    from_sqlstate,
    raise_sql,
    refuse,
)
from geo_sync.primary.publish_sql import publish_function_sql

_fields = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=20)


@pytest.mark.parametrize("name", list(REFUSALS))
def test_the_sql_function_raises_every_refusal_in_the_rule_table(name: str) -> None:
    template = REFUSALS[name].template
    sql_text = re.sub(r"\{\w+\}", "%", template).replace("'", "''")
    assert f"'{SQL_PREFIX}{sql_text}'" in publish_function_sql()
    assert f"ERRCODE = '{REFUSALS[name].sqlstate}'" in raise_sql(
        name, **{field: "x" for field in re.findall(r"\{(\w+)\}", template)})


@given(name=st.sampled_from(list(REFUSALS)), value=_fields)
def test_a_refusal_read_back_from_the_sql_function_is_the_error_the_portable_path_raises(
    name: str, value: str
) -> None:
    fields = {field: value for field in re.findall(r"\{(\w+)\}", REFUSALS[name].template)}
    ours = refuse(name, **fields)
    theirs = from_sqlstate(REFUSALS[name].sqlstate, SQL_PREFIX + ours.message)
    assert theirs is not None
    assert (type(theirs), theirs.message, theirs.hint) == (type(ours), ours.message, ours.hint)


def test_an_sqlstate_that_is_not_publishings_is_left_to_the_caller() -> None:
    assert from_sqlstate("23505", "duplicate key") is None
    assert from_sqlstate(None, "connection lost") is None


def test_the_installed_function_is_the_rendered_one(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        installed = conn.execute(text(
            "SELECT prosrc FROM pg_proc WHERE proname = 'geo_publish'")).scalar_one()
    assert installed.strip() in publish_function_sql()


def test_the_installed_function_plans_each_call_with_its_arguments(pg_engine: Engine) -> None:
    # A generic plan scans the whole catalog per call (its lookup is a CASE over record
    # id and path), which made a bulk publish in one session quadratic.
    with pg_engine.connect() as conn:
        config = conn.execute(text(
            "SELECT proconfig FROM pg_proc WHERE proname = 'geo_publish'")).scalar_one()
    assert config == ["plan_cache_mode=force_custom_plan"]
