"""A primary that was not shut down cleanly refuses writes until the secondaries that
were following it confirm its epoch (or an operator does): it may have been replaced
by a forced promotion while it was down. Both backends: the trigger and the Python
check."""

from __future__ import annotations

import json
import signal
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, update

from geo_sync.db import make_engine, utcnow, write_transaction
from geo_sync.errors import SiteReadOnly
from geo_sync.migrate import PRIMARY
from geo_sync.primary import fencing, secondaries, site_state
from geo_sync.primary.models import Secondary
from geo_sync.primary.publish import Change, publish
from tests.sites import PrimarySite, free_port

UNCLEAN = "unclean shutdown: waiting for epoch confirmation"


def _change(path: str) -> Change:
    return Change("artifact", "created", path, size=1, checksum="0" * 64)


def _seen(engine: Engine, **ago: float) -> None:
    """Register secondaries last seen this many seconds ago."""
    with write_transaction(engine) as conn:
        for name, seconds in ago.items():
            secondaries.add_secondary(conn, name)
            conn.execute(update(Secondary).where(Secondary.name == name).values(
                last_seen_at=utcnow() - timedelta(seconds=seconds)))


def _begin(engine: Engine) -> tuple[bool, site_state.SiteState]:
    with write_transaction(engine) as conn:
        return site_state.begin_serving(conn)


def test_an_unclean_start_waits_for_each_secondary_that_was_following(
        primary_engine: Engine) -> None:
    # s1 and s2 were following; "gone" went silent a day before the crash.
    _seen(primary_engine, s1=5, s2=200, gone=86400)
    assert _begin(primary_engine)[0] is False  # the first start
    unclean, state = _begin(primary_engine)  # serving_since was left set: a crash
    assert unclean and state.awaiting_confirmation == ("s1", "s2") and not state.writable
    with pytest.raises(SiteReadOnly, match=rf"{UNCLEAN} \(epoch 1, from secondary s1, s2\)"), \
            write_transaction(primary_engine) as conn:
        publish(conn, _change("a.zip"))
    with write_transaction(primary_engine) as conn:
        assert site_state.confirm_epoch(conn, "s1").awaiting_confirmation == ("s2",)
        secondaries.set_enabled(conn, "s2", False)  # disabled: nobody to wait for
    with write_transaction(primary_engine) as conn:
        assert site_state.read_state(conn).writable
        assert publish(conn, _change("a.zip")) > 0
        site_state.end_serving(conn)
    assert _begin(primary_engine)[0] is False  # a clean stop before


def test_an_unclean_start_nobody_followed_takes_writes_and_the_operator_can_confirm(
        primary_engine: Engine) -> None:
    with write_transaction(primary_engine) as conn:
        secondaries.add_secondary(conn, "never")  # registered, never connected
    _begin(primary_engine)
    unclean, state = _begin(primary_engine)
    assert unclean and state.writable
    _seen(primary_engine, s1=1)
    _, state = _begin(primary_engine)
    assert state.awaiting_confirmation == ("s1",)
    with write_transaction(primary_engine) as conn:
        assert site_state.confirm_epoch(conn, None).writable
        assert publish(conn, _change("b.zip")) > 0


def _crash_and_restart(primary: PrimarySite) -> None:
    assert primary.process is not None
    primary.process.send_signal(signal.SIGKILL)
    primary.process.wait()
    primary.start()


def test_a_killed_primary_refuses_writes_until_its_secondary_reaches_it_at_its_epoch(
        primary: PrimarySite) -> None:
    storage = primary.settings.storage_root
    for name in ("x.zip", "y.zip", "z.zip"):
        (storage / "artifacts" / name).write_bytes(b"x")
    with primary.client() as client:  # s1 follows this primary
        assert client.get("/events/head", headers=primary.headers()).status_code == 200
    _crash_and_restart(primary)

    refused = primary.cli("primary", "publish", "artifact", "created", "--path", "x.zip",
                          check=False)
    assert refused.returncode == 1 and UNCLEAN in refused.stderr and "s1" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert UNCLEAN in (storage / site_state.READ_ONLY_MARKER).read_text()  # pushes too
    assert "UNCONFIRMED" in primary.cli("status", check=False).stdout
    checked = primary.cli("check", check=False)
    assert checked.returncode == 2 and UNCLEAN in checked.stdout, checked.stdout
    with primary.client() as client:
        # Reads go on. A request without an epoch confirms nothing; one at a lower
        # epoch is no fence, and a fence must come from a higher epoch.
        assert client.get("/events/head", headers=primary.headers()).status_code == 200
        stale = client.post("/fence", json={"new_primary_url": "http://x:1", "epoch": 1},
                            headers=primary.headers())
        assert stale.status_code == 400 and "not above" in stale.json()["message"]
        assert primary.cli("primary", "publish", "artifact", "created", "--path", "x.zip",
                           check=False).returncode == 1
        confirmed = client.get("/events/head", headers={**primary.headers(),
                                                         "X-Geo-Epoch": "1"})
        assert confirmed.status_code == 200
    assert primary.cli("primary", "publish", "artifact", "created", "--path",
                       "x.zip").returncode == 0
    assert not (storage / site_state.READ_ONLY_MARKER).exists()

    # A clean stop: the next start takes writes at once. Then a crash the operator
    # settles with `maintenance off` (they know nobody was promoted).
    primary.stop()
    primary.start()
    assert primary.cli("primary", "publish", "artifact", "created", "--path",
                       "y.zip").returncode == 0
    _crash_and_restart(primary)
    off = primary.cli("primary", "maintenance", "off")
    assert "confirmed by the operator" in off.stdout and "taking writes" in off.stdout
    assert primary.cli("primary", "publish", "artifact", "created", "--path",
                       "z.zip").returncode == 0


def test_the_promoted_site_fences_the_old_primary_once_it_answers(
        primary: PrimarySite, tmp_path: Path) -> None:
    """The fence loop's pass, against a real old primary (the one served here) and one
    that does not answer; the new primary's database on SQLite."""
    new = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    PRIMARY.upgrade(new)
    with write_transaction(new) as conn:
        site_state.set_epoch(conn, 2)
        for url in (f"http://127.0.0.1:{free_port()}", primary.url):
            fencing.record_target(conn, url=url, epoch=2, new_primary_url="http://new:1",
                                  caller_name=primary.secondary,
                                  caller_secret=primary.secret, ca_bundle=None)
    assert fencing.fence_pass(new) == 1
    with new.connect() as conn:
        [left] = fencing.unfenced(conn)
    assert left["attempts"] == 1 and left["last_error"].startswith("unreachable")
    assert "secret" not in json.dumps(left) and primary.secret not in json.dumps(left)
    with primary.client() as client:
        refused = client.get("/events/head", headers=primary.headers())
    assert refused.status_code == 409 and refused.headers["x-geo-new-primary"] == "http://new:1"
    assert fencing.fence_pass(new) == 1  # the fenced one is not tried again
    with new.connect() as conn:
        assert fencing.unfenced(conn)[0]["attempts"] == 2
    new.dispose()
