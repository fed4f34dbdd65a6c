"""Message sizes: a trickle is spread over every worker thread, a backlog goes in
full batches, and no row is lost, repeated or reordered on the way."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from geo_sync.secondary.message_sizes import messages


@given(due=st.integers(0, 5000), batch=st.integers(1, 1000), threads=st.integers(1, 64))
def test_messages_carry_every_due_row_once_in_order_and_never_more_than_a_batch(
    due: int, batch: int, threads: int,
) -> None:
    ids = list(range(100, 100 + due))
    sent = list(messages(ids, batch, threads))
    assert [i for message in sent for i in message] == ids
    assert all(1 <= len(message) <= batch for message in sent)


@given(due=st.integers(1, 5000), batch=st.integers(1, 1000), threads=st.integers(1, 64))
def test_every_thread_gets_work_while_rows_last_and_a_backlog_goes_in_full_batches(
    due: int, batch: int, threads: int,
) -> None:
    sent = list(messages(list(range(due)), batch, threads))
    assert len(sent) >= min(due, threads)
    if due >= batch * threads:
        assert all(len(message) == batch for message in sent[:-1])


def test_a_one_percent_round_of_20000_goes_to_four_threads_instead_of_one() -> None:
    assert [len(m) for m in messages(list(range(200)), 250, 4)] == [50] * 4
