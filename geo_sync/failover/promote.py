"""`geo-sync promote`: make this secondary the primary, planned or forced.

Planned (the primary answers): maintenance on there, wait until this site has applied
every event and synced and verified every item (RPO 0), fence the old primary at the
next epoch, build the catalog from the tracking DB, write the primary's config.
Forced (``force``): skip what needs the old primary and promote with what is here,
listing what may be lost. Both print the recovery point and the time taken.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from geo_sync.db import make_engine, write_transaction
from geo_sync.errors import ConfigError, GeoSyncError, InvalidInput
from geo_sync.failover import rpo
from geo_sync.failover.catalog import CatalogBuilt, build_catalog, prepare_database
from geo_sync.files import write_atomically
from geo_sync.logging import get_logger
from geo_sync.migrate import TRACKING
from geo_sync.primary import fencing
from geo_sync.secondary import leader
from geo_sync.secondary.client import PrimaryClient
from geo_sync.settings import PrimarySettings, SecondarySettings, load_settings, validate_section
from geo_sync.toml_out import dumps
from geo_sync.tracking import epoch_row
from geo_sync.tracking.models import Lease

log = get_logger("promote")
PRIMARY_CONFIG = "primary.toml"
DRAIN_POLL = 0.5

Say = Callable[[str], None]


@dataclass
class Promotion:
    """What a promotion did and measured."""

    planned: bool
    epoch: int
    previous_epoch: int | None
    config: Path
    url: str
    rpo: dict[str, Any]
    catalog: CatalogBuilt
    seconds: dict[str, float] = field(default_factory=dict)
    secondaries: list[str] = field(default_factory=list)
    fenced: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def rto_seconds(self) -> float:
        return round(sum(self.seconds.values()), 3)

    def to_json(self) -> dict[str, Any]:
        return {"planned": self.planned, "epoch": self.epoch,
                "previous_epoch": self.previous_epoch, "config": str(self.config),
                "url": self.url, "rpo": self.rpo, "catalog": self.catalog.to_json(),
                "seconds": self.seconds, "rto_seconds": self.rto_seconds,
                "old_primary_fenced": self.fenced,
                "secondaries_to_register": self.secondaries, "notes": self.notes}


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"--listen must be HOST:PORT, got {listen!r}")
    return host, int(port)


def _primary_config(config_dir: Path, settings: SecondarySettings, database_url: str,
                    listen: tuple[str, int]) -> tuple[Path, str]:
    """The new primary's config text (checked), and where it goes."""
    section = {"database_url": database_url, "storage_root": str(settings.mirror_root),
               "listen_host": listen[0], "listen_port": listen[1],
               "event_retention_seconds": 7 * 86400}
    validate_section(PrimarySettings, section)
    return config_dir / PRIMARY_CONFIG, dumps(
        {"role": "primary", "primary": section, "log": {"level": "info", "format": "json"}})


def _drain(engine: Engine, client: PrimaryClient, timeout: float, say: Say) -> rpo.Rpo:
    """Wait until nothing would be lost (the primary is in maintenance meanwhile)."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        now = rpo.measure(engine, client, listed=20)
        pushes = int((client.status().get("site") or {}).get("pending_pushes") or 0)
        if now.zero and not pushes:
            return now
        line = (f"draining: {now.events_behind} event(s), {now.items} item(s) "
                f"({now.bytes} bytes), {pushes} push(es) to publish")
        if line != last:
            say(line)
            last = line
        if time.monotonic() > deadline:
            raise GeoSyncError(
                f"not drained after {timeout:g} s: {line.removeprefix('draining: ')}",
                hint="is `secondary run` (and its workers) running here? `geo-sync status` "
                "shows what is stuck; the primary's maintenance mode was turned off again")
        time.sleep(DRAIN_POLL)


def cursor_alive(engine: Engine) -> bool:
    from sqlalchemy import select  # noqa: PLC0415 - one query

    from geo_sync.db import utcnow  # noqa: PLC0415
    with engine.connect() as conn:
        row = conn.execute(select(Lease.holder, Lease.lease_until)
                           .where(Lease.name == leader.CURSOR_LEASE)).first()
    return bool(row and row.holder and row.lease_until and row.lease_until > utcnow())


@dataclass
class _Handover:
    """The first half of a promotion: the recovery point and the epoch to take."""

    final: rpo.Rpo
    epoch: int
    previous: int | None = None
    names: list[str] = field(default_factory=list)
    fenced: bool = False
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _planned(tracking: Engine, client: PrimaryClient, settings: SecondarySettings,
             config_dir: Path, url: str, floor: int, drain_timeout: float,
             say: Say) -> _Handover:
    started = time.monotonic()
    stops = [b for b in rpo.blockers(tracking, config_dir,
                                     rpo=rpo.measure(tracking, None, listed=0))
             if b.startswith("selective") or "not writable" in b]
    if stops:
        raise GeoSyncError(f"cannot promote: {'; '.join(stops)}",
                           hint="fix it, or promote with --force and accept the loss")
    site = dict(client.status().get("site") or {})
    previous = int(site.get("epoch") or 1)
    say(f"primary at {settings.primary_url} answers at epoch {previous}: turning "
        "maintenance mode on")
    client.maintenance(True, reason=f"planned failover to {url}")
    try:
        final = _drain(tracking, client, drain_timeout, say)
    except BaseException:
        try:
            client.maintenance(False)
        except GeoSyncError as exc:
            log.warning("maintenance_not_turned_off", error=str(exc))
        raise
    drained = time.monotonic()
    epoch = max(previous, floor) + 1
    answer = client.fence(url, epoch)
    say(f"old primary fenced: it refuses writes and names {url}")
    return _Handover(final, epoch, previous,
                     [str(n) for n in answer.get("secondaries") or [] if str(n) != settings.name],
                     fenced=True,
                     seconds={"drain": round(drained - started, 3),
                              "fence": round(time.monotonic() - drained, 3)})


def _forced(tracking: Engine, client: PrimaryClient, url: str, floor: int) -> _Handover:
    started = time.monotonic()
    handover = _Handover(rpo.measure(tracking, None), max(floor, 1) + 1)
    try:
        client.fence(url, handover.epoch)
        handover.fenced = True
        handover.notes.append("the old primary answered and was fenced")
    except GeoSyncError as exc:
        handover.notes.append(
            f"the old primary could not be fenced ({exc.message}): `primary serve` here "
            f"keeps trying until it answers (status shows \"old primary not yet fenced\"); "
            f"if it comes back it refuses writes from its start (unclean shutdown) and "
            f"fences itself as soon as a secondary that followed epoch {handover.epoch} "
            f"reaches it; to be sure, run `geo-sync primary demote --new-primary {url}` "
            "there before you start it")
    handover.seconds["assess"] = round(time.monotonic() - started, 3)
    return handover


def promote(settings: SecondarySettings, config_dir: Path, *, force: bool, url: str,
            listen: tuple[str, int], database_url: str | None = None,
            drain_timeout: float = 600.0, say: Say = lambda _line: None) -> Promotion:
    """Make this site the primary; see the module's docstring. Raises before changing
    anything here if a blocker stands (unless ``force``)."""
    database_url = database_url or f"sqlite:///{config_dir / 'primary.db'}"
    config, text = _primary_config(config_dir, settings, database_url, listen)
    if config.exists():
        raise ConfigError(f"{config} already exists: this site was promoted before",
                          hint="remove it (and its database) to promote again")
    tracking = make_engine(settings.database_url)
    TRACKING.require_current(tracking)
    with tracking.connect() as conn:
        followed = epoch_row.read(conn)
    if followed.promoted_at is not None:
        raise ConfigError(f"this site was already promoted at {followed.promoted_at}",
                          hint=f"serve it with `geo-sync --config {config} primary serve`")
    client = PrimaryClient(settings, epoch_floor=followed.epoch)
    try:
        handover = (_forced(tracking, client, url, followed.epoch) if force else
                    _planned(tracking, client, settings, config_dir, url, followed.epoch,
                             drain_timeout, say))
        mark = time.monotonic()
        primary_engine = prepare_database(database_url)
        try:
            built = build_catalog(tracking, primary_engine, handover.epoch)
            if not handover.fenced:
                with write_transaction(primary_engine) as conn:
                    fencing.record_target(
                        conn, url=settings.primary_url, epoch=handover.epoch,
                        new_primary_url=url, caller_name=settings.name,
                        caller_secret=settings.secret, ca_bundle=settings.primary_ca_bundle)
        finally:
            primary_engine.dispose()
        write_atomically(config, text)
        load_settings(config).require_primary()
        with write_transaction(tracking) as conn:
            epoch_row.mark_promoted(conn, handover.epoch, url)
        handover.seconds["catalog_and_config"] = round(time.monotonic() - mark, 3)
        if cursor_alive(tracking):
            handover.notes.append("`secondary run` still runs here: stop it and this site's "
                                  "`geo-sync worker` processes (it refuses to start again)")
        return Promotion(planned=not force, epoch=handover.epoch,
                         previous_epoch=handover.previous, config=config, url=url,
                         rpo=handover.final.to_json(), catalog=built,
                         seconds=handover.seconds, secondaries=handover.names,
                         fenced=handover.fenced, notes=handover.notes)
    finally:
        client.close()
        tracking.dispose()
