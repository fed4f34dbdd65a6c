"""`geo-sync drill`: rehearse a failover on a running pair, changing nothing unless
asked (``planned`` turns the primary's maintenance mode on for the catch-up, and off
again). Reports the recovery point now, the catch-up time, the promotion's blockers
and an estimated recovery time; ``ready`` only if this site could take over now with
nothing lost."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from geo_sync.db import make_engine, utcnow
from geo_sync.errors import GeoSyncError
from geo_sync.failover import rpo
from geo_sync.files import write_atomically
from geo_sync.migrate import TRACKING
from geo_sync.secondary.client import PrimaryClient
from geo_sync.settings import SecondarySettings
from geo_sync.tracking import epoch_row
from geo_sync.tracking.models import CursorRow
from geo_sync.tracking.states import SyncState
from replicators.type_map import REPLICATORS

POLL = 0.5
#: Seconds assumed for `primary serve` to start answering (measured by bench/failover.py).
SERVE_START_SECONDS = 2.0


@dataclass
class Drill:
    """A drill's findings."""

    planned: bool
    started_at: datetime
    rpo_now: dict[str, Any]
    blockers: list[str]
    catch_up_seconds: float | None = None
    catch_up_error: str | None = None
    rpo_after: dict[str, Any] | None = None
    catalog_read_seconds: float = 0.0
    epoch: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        """Could this site take over now with RPO 0?"""
        final = self.rpo_after or self.rpo_now
        return bool(final.get("zero")) and not self.blockers

    @property
    def estimated_rto_seconds(self) -> float:
        catch_up = self.catch_up_seconds or 0.0
        # Promotion = drain + fence (one request) + build the catalog (a read of every
        # row and a write of it: about twice the read) + start serving.
        return round(catch_up + 2 * self.catalog_read_seconds + SERVE_START_SECONDS, 3)

    def to_json(self) -> dict[str, Any]:
        return {"planned": self.planned, "started_at": self.started_at.isoformat(),
                "ready": self.ready, "epoch_followed": self.epoch,
                "rpo_now": self.rpo_now, "rpo_after_catch_up": self.rpo_after,
                "catch_up_seconds": self.catch_up_seconds,
                "catch_up_error": self.catch_up_error, "blockers": self.blockers,
                "estimated_rto_seconds": self.estimated_rto_seconds,
                "estimate": {"catalog_read_seconds": self.catalog_read_seconds,
                             "serve_start_seconds": SERVE_START_SECONDS},
                "notes": self.notes}


def _read_catalog(engine: Engine) -> float:
    """Time a read of what promotion would put in the catalog."""
    started = time.monotonic()
    with engine.connect() as conn:
        for replicator in REPLICATORS.values():
            model = replicator.registry_table
            for _ in conn.execute(select(model.record_id, model.path, model.expected_size,
                                         model.expected_checksum).where(
                    model.tombstone.is_(False), model.state == SyncState.SYNCED.value)):
                pass
    return round(time.monotonic() - started, 3)


def _reached(engine: Engine, client: PrimaryClient, head_id: int | None,
             head_at: datetime) -> bool:
    """Has this site applied event ``head_id`` (or every event, if it took its items from
    a backfill instead) and done every change up to ``head_at``?"""
    with engine.connect() as conn:
        last = conn.execute(select(CursorRow.last_event_id).where(CursorRow.id == 1)
                            ).scalar()
    if head_id is not None and (last or 0) < head_id \
            and rpo.events_behind(engine, client)[0] != 0:
        return False
    with engine.connect() as conn:
        for replicator in REPLICATORS.values():
            model = replicator.registry_table
            behind = conn.execute(select(func.count()).where(
                model.change_committed_at <= head_at, rpo.not_done(model))).scalar_one()
            if behind:
                return False
    return True


def _catch_up(engine: Engine, client: PrimaryClient, planned: bool, timeout: float
              ) -> tuple[float, dict[str, Any] | None]:
    started = time.monotonic()
    deadline = started + timeout
    if planned:
        while True:
            now = rpo.measure(engine, client, listed=20)
            pushes = int((client.status().get("site") or {}).get("pending_pushes") or 0)
            if now.zero and not pushes:
                return round(time.monotonic() - started, 3), now.to_json()
            if time.monotonic() > deadline:
                raise GeoSyncError(f"not caught up after {timeout:g} s")
            time.sleep(POLL)
    status = client.status()
    head_id = status.get("last_event_id")
    head_at = utcnow()
    while not _reached(engine, client, head_id, head_at):
        if time.monotonic() > deadline:
            raise GeoSyncError(f"event {head_id} not reached after {timeout:g} s")
        time.sleep(POLL)
    return round(time.monotonic() - started, 3), None


def drill(settings: SecondarySettings, config_dir: Path, *, planned: bool,
          timeout: float = 600.0) -> Drill:
    """Run a drill; see the module's docstring."""
    engine = make_engine(settings.database_url)
    TRACKING.require_current(engine)
    with engine.connect() as conn:
        followed = epoch_row.read(conn).epoch
    client = PrimaryClient(settings, epoch_floor=followed)
    try:
        now = rpo.measure(engine, client)
        result = Drill(planned, utcnow(), now.to_json(), [], epoch=followed)
        result.catalog_read_seconds = _read_catalog(engine)
        if now.primary_reachable:
            maintenance_set = False
            try:
                if planned:
                    client.maintenance(True, reason="failover drill (planned catch-up)")
                    maintenance_set = True
                result.catch_up_seconds, result.rpo_after = _catch_up(
                    engine, client, planned, timeout)
            except GeoSyncError as exc:
                result.catch_up_error = str(exc)
            finally:
                if maintenance_set:
                    try:
                        client.maintenance(False)
                    except GeoSyncError as exc:
                        result.notes.append(f"could not turn maintenance off again: {exc} "
                                            "(run `geo-sync primary maintenance off` there)")
        else:
            result.catch_up_error = f"the primary does not answer: {now.primary_error}"
        final = rpo.measure(engine, None, listed=0) if result.rpo_after else now
        if result.rpo_after is not None:
            final = rpo.Rpo(True, 0, False, final.last_event_id, final.last_event_at,
                            final.types)
        result.blockers = rpo.blockers(engine, config_dir, rpo=final)
        return result
    finally:
        client.close()
        engine.dispose()


def write_report(result: Drill, config_dir: Path, target: Path | None = None) -> Path:
    """Keep the drill's report for the audit trail: ``target``, or
    ``drills/drill-<time>.json`` next to the secondary's config. Returns where it went."""
    stamp = result.started_at.strftime("%Y%m%dT%H%M%SZ")
    target = target or config_dir / "drills" / f"drill-{stamp}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, json.dumps(result.to_json(), indent=2) + "\n", mode=0o644)
    return target
