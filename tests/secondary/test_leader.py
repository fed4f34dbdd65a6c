"""The log cursor's lease: one holder at a time, renewed by it, taken over once it
lapses or is released."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select, update

from geo_sync.db import utcnow, write_transaction
from geo_sync.secondary import leader
from geo_sync.tracking.models import Lease


def _holder(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(Lease.holder).where(
            Lease.name == leader.CURSOR_LEASE)).scalar()


def test_a_free_lease_is_taken_and_a_second_holder_waits(tracking_engine: Engine) -> None:
    assert leader.acquire(tracking_engine, "a", ttl=60)
    assert not leader.acquire(tracking_engine, "b", ttl=60)
    assert leader.acquire(tracking_engine, "a", ttl=60), "the holder renews"
    assert _holder(tracking_engine) == "a"


def test_a_released_lease_is_taken_at_once(tracking_engine: Engine) -> None:
    assert leader.acquire(tracking_engine, "a", ttl=60)
    leader.release(tracking_engine, "b")  # not b's to release: nothing happens
    assert _holder(tracking_engine) == "a"
    leader.release(tracking_engine, "a")
    assert leader.acquire(tracking_engine, "b", ttl=60)
    assert _holder(tracking_engine) == "b"


def test_a_lapsed_lease_goes_to_the_standby(tracking_engine: Engine) -> None:
    assert leader.acquire(tracking_engine, "a", ttl=60)
    with write_transaction(tracking_engine) as conn:  # a died a minute ago
        conn.execute(update(Lease).where(Lease.name == leader.CURSOR_LEASE)
                     .values(lease_until=utcnow() - timedelta(minutes=1)))
    assert leader.acquire(tracking_engine, "b", ttl=60)
    assert not leader.acquire(tracking_engine, "a", ttl=60), "the old holder lost it"


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from(["acquire", "release"]),
                                st.sampled_from(["a", "b", "c"])), max_size=12))
def test_whatever_the_order_at_most_the_last_winner_holds_it(
        tracking_engine: Engine, steps: list[tuple[str, str]]) -> None:
    leader.release(tracking_engine, _holder(tracking_engine) or "nobody")
    holder: str | None = None
    for action, who in steps:
        if action == "acquire":
            won = leader.acquire(tracking_engine, who, ttl=60)
            assert won == (holder in (None, who))
            if won:
                holder = who
        else:
            leader.release(tracking_engine, who)
            if holder == who:
                holder = None
        assert _holder(tracking_engine) == holder
