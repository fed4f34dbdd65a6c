"""Services restarted under a running secondary: its Redis (the queue lost), its
tracking PostgreSQL, and the primary's PostgreSQL; private instances only."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults.cells import begin, pending, shows, unreachable
from tests.faults.rig import fault_rig
from tests.faults.toxiproxy_api import ToxiproxyApi

# Cells run one after another on one xdist worker (make test): each starts a primary, a
# secondary's daemons and private services, and two at once on two cores starve both.
pytestmark = pytest.mark.xdist_group("faults")

OUTAGE = 4.0  # seconds a service stays down: longer than the retry cap of 2 s


def test_redis_restarted_with_its_queue_lost_is_survived(
        tmp_path: Path, toxiproxy_server: ToxiproxyApi) -> None:
    with fault_rig(tmp_path, toxiproxy_server) as rig:
        begin(rig)
        rig.add_toxic(type="bandwidth", attributes={"rate": 1000})
        rig.workload.upload_artifact("big/queued.bin", 3 * 1024 * 1024)
        rig.workload.round(1)
        rig.redis.stop()  # --save '': whatever was queued is gone
        rig.wait_status(pending, "the work whose messages were lost")
        time.sleep(OUTAGE)
        rig.redis.start()
        rig.remove_toxics()
        rig.converge()


def test_the_tracking_database_restarted_is_survived(
        tmp_path: Path, toxiproxy_server: ToxiproxyApi) -> None:
    with fault_rig(tmp_path, toxiproxy_server, private_tracking=True) as rig:
        begin(rig)
        rig.workload.round(1)
        assert rig.tracking_pg is not None
        rig.tracking_pg.stop()
        rig.wait_status(shows("connection", "database", "refused"),
                        "the tracking database unreachable")
        time.sleep(OUTAGE)
        rig.tracking_pg.start()
        rig.workload.round(2)
        rig.converge()


def test_the_primarys_database_restarted_is_survived(
        tmp_path: Path, toxiproxy_server: ToxiproxyApi) -> None:
    with fault_rig(tmp_path, toxiproxy_server, private_primary_db=True) as rig:
        begin(rig)
        rig.workload.round(1)
        assert rig.primary_pg is not None
        rig.primary_pg.stop()
        rig.wait_status(lambda s: unreachable(s) or shows("500", "503", "database")(s),
                        "the primary failing without its database")
        time.sleep(OUTAGE)
        rig.primary_pg.start()
        rig.workload.round(2)
        rig.converge()
