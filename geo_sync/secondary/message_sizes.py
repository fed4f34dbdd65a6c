"""How many registry rows go in one worker message.

A message is worked through by one thread, start to end (claim, transfer, durable
writes, one registry update). A large message saves per-message costs (a claim, a
blob-batch request, two syncs, a registry update), which is what a backlog needs;
but a trickle of work in large messages sits on one thread while the others idle
(200 changed artifacts in 250-row messages: one message, one thread). So the rows
due in a pass are spread over at least as many messages as there are worker
threads, never more rows than the type's batch size per message.

Measured (docs/benchmarks.md, "Scale"): two messages per thread instead of one
halved the messages of a backfill (which hands out about 1,000 rows a pass) and
made the initial round of 20,000 artifacts slower, hence one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence


def rows_per_message(due: int, batch_size: int, threads: int) -> int:
    """Rows per message for ``due`` rows: ``batch_size`` for a backlog (a full message
    for every thread), fewer for a trickle so that every thread gets some, at least one."""
    return max(1, min(batch_size, due // max(1, threads)))


def messages(ids: Sequence[int], batch_size: int, threads: int) -> Iterator[list[int]]:
    """``ids`` cut into messages of ``rows_per_message`` rows, in order."""
    size = rows_per_message(len(ids), batch_size, threads)
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])
