"""Looking at a secondary's surroundings for `check`, `status` and the metrics: the
primary (reachable? does it accept us? its clock), the broker's queue, the mirror's disk.

Each probe returns what it found as data; none raises for the condition it probes.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from geo_sync.db import utcnow
from geo_sync.errors import AuthError, GeoSyncError, TransientError
from geo_sync.secondary.client import PrimaryClient
from geo_sync.settings import SecondarySettings


@dataclass(frozen=True)
class PrimaryView:
    """One authenticated round trip to the primary's /status, and what it told us."""

    reachable: bool
    #: The primary answered but refused our name or secret (401).
    refused: bool = False
    error: str | None = None
    hint: str | None = None
    report: dict[str, Any] | None = None
    #: The primary's clock minus ours, seconds.
    skew_seconds: float | None = None

    def mine(self, name: str) -> dict[str, Any]:
        """The primary's view of secondary ``name`` ({} if it does not list it)."""
        for peer in (self.report or {}).get("secondaries", []):
            if peer.get("name") == name:
                return dict(peer)
        return {}


def probe_primary(client: PrimaryClient) -> PrimaryView:
    try:
        report, skew = client.status_and_skew()
    except AuthError as exc:
        return PrimaryView(reachable=True, refused=True, error=exc.message, hint=exc.hint)
    except TransientError as exc:
        return PrimaryView(reachable=False, error=exc.message, hint=exc.hint)
    except GeoSyncError as exc:  # a 404 (wrong URL path) or another refusal
        return PrimaryView(reachable=True, error=exc.message, hint=exc.hint or (
            "check primary_url: it must be the primary's base URL, without /api/geo/v1"))
    except ValueError as exc:  # not JSON: something else answers at that URL
        return PrimaryView(reachable=True, error=f"the primary's answer is not JSON: {exc}",
                           hint="check that primary_url points at `geo-sync primary serve`")
    return PrimaryView(reachable=True, report=report, skew_seconds=skew)


def queue_depth(settings: SecondarySettings) -> int | None:
    """Messages waiting in the Redis queue; None in embedded mode (no separate queue)."""
    if settings.broker_url == "embedded":
        return None
    import redis  # noqa: PLC0415 - only a Redis broker needs it, not every status

    client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=5,
                                  socket_timeout=5)
    try:
        # dramatiq's Redis broker keeps a queue's waiting message ids in this list.
        return int(client.llen(f"{settings.queue_name}-dramatiq:{settings.queue_name}"))
    finally:
        client.close()


@dataclass(frozen=True)
class DiskSpace:
    free_bytes: int
    total_bytes: int

    @property
    def free_percent(self) -> float:
        return 100.0 * self.free_bytes / self.total_bytes if self.total_bytes else 0.0


def disk_space(path: Path) -> DiskSpace:
    usage = shutil.disk_usage(path)
    return DiskSpace(usage.free, usage.total)


@dataclass(frozen=True)
class Lag:
    """How far this secondary is behind its primary's event log."""

    events: int | None
    seconds: float | None


def lag(view: PrimaryView, name: str, last_event_at: datetime | None) -> Lag:
    """Events the primary holds that we have not acknowledged, and the age of the last
    event we processed while any are pending (0 when caught up; None when unknown)."""
    if view.report is None:
        return Lag(None, None)
    pending = view.mine(name).get("pending_events")
    if not isinstance(pending, int):
        return Lag(None, None)
    if pending == 0:
        return Lag(0, 0.0)
    if last_event_at is None:
        return Lag(pending, None)
    return Lag(pending, max(0.0, (utcnow() - last_event_at).total_seconds()))
