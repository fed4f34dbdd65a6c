"""The dramatiq broker, the one process-wide global, set up here and nowhere else.

``setup`` picks the broker (Redis in production, an in-process StubBroker in
embedded mode) and declares the actor on it explicitly, so nothing depends on
import order. Worker processes also install their Runtime here, which the actor
hands to ``tasks.sync_items``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from geo_sync.secondary import tasks
from geo_sync.secondary.runtime import Runtime
from geo_sync.settings import SecondarySettings
from verification import verifier

ACTOR = "geo_sync_items"
#: dramatiq's idle consumer backs off up to its worker_timeout (1000 ms by default)
#: before looking at the queue again: a message sent to an idle worker waited up to a
#: second, most of a push's lag to the mirror. 100 ms costs an idle worker about 20
#: Redis round trips a second.
IDLE_POLL_MS = 100
VERIFY_ACTOR = "geo_verify_items"
# A batch holds its rows by lease; dramatiq's own retries would only duplicate ours.
ACTOR_OPTIONS: dict[str, Any] = {"max_retries": 0, "time_limit": 6 * 3600 * 1000}

_runtime: Runtime | None = None


def _installed() -> Runtime:
    if _runtime is None:
        raise RuntimeError("worker runtime not installed; call bootstrap.install_runtime")
    return _runtime


def _run_batch(type_name: str, ids: list[int]) -> None:
    tasks.sync_items(_installed(), type_name, ids)


def _verify_batch(type_name: str, ids: list[int]) -> None:
    verifier.verify_items(_installed(), type_name, ids)


@dataclass(frozen=True)
class Messaging:
    """The broker and the one actor geo-sync sends to."""

    broker: dramatiq.Broker
    actor: dramatiq.Actor[[str, list[int]], None]
    verify_actor: dramatiq.Actor[[str, list[int]], None]

    def send(self, type_name: str, ids: list[int]) -> None:
        self.actor.send(type_name, ids)

    def send_verify(self, type_name: str, ids: list[int]) -> None:
        self.verify_actor.send(type_name, ids)


def setup(settings: SecondarySettings) -> Messaging:
    """Create the broker for ``settings`` and declare the actor on it."""
    broker: dramatiq.Broker
    if settings.broker_url == "embedded":
        broker = StubBroker()
        broker.emit_after("process_boot")
    else:
        broker = RedisBroker(  # type: ignore[no-untyped-call]
            url=settings.broker_url, namespace=f"{settings.queue_name}-dramatiq")
    dramatiq.set_broker(broker)
    actor = dramatiq.actor(broker=broker, actor_name=ACTOR,
                           queue_name=settings.queue_name,
                           **ACTOR_OPTIONS)(_run_batch)
    verify_actor = dramatiq.actor(broker=broker, actor_name=VERIFY_ACTOR,
                                  queue_name=settings.queue_name,
                                  **ACTOR_OPTIONS)(_verify_batch)
    return Messaging(broker, actor, verify_actor)


def install_runtime(runtime: Runtime) -> None:
    """Make ``runtime`` the one the actor uses in this process."""
    global _runtime  # noqa: PLW0603 - the worker process's single runtime, by design
    _runtime = runtime
