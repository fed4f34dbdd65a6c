"""The mirror's disk full, the sites' clocks apart beyond the JWT leeway."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from replicators.type_map import REPLICATORS
from tests.faults.cells import begin, shows
from tests.faults.rig import fault_rig, start_primary
from tests.faults.toxiproxy_api import ToxiproxyApi
from tests.services import service_missing

# Cells run one after another on one xdist worker (make test): each starts a primary, a
# secondary's daemons and private services, and two at once on two cores starve both.
pytestmark = pytest.mark.xdist_group("faults")

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
SKEW = "-300s"  # the primary's clock five minutes behind: far beyond the 10 s leeway


def _mount(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[list[Path]]:
    """Where the mirror's size-limited tmpfs is mounted (filled in by the rig)."""
    mounted: list[Path] = []
    yield mounted
    for path in mounted:
        _mount(["umount", "-l", str(path)])


def test_a_full_disk_on_the_mirror_is_named_and_survived(
        tmp_path: Path, toxiproxy_server: ToxiproxyApi, small_disk: list[Path]) -> None:
    def mount_small_disk(mirror: Path) -> None:
        result = _mount(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mirror)])
        if result.returncode != 0:
            pytest.skip(f"cannot mount a size-limited tmpfs here: {result.stderr.strip()}")
        small_disk.append(mirror)
        for replicator in REPLICATORS.values():
            (mirror / replicator.storage_dir).mkdir(parents=True, exist_ok=True)

    with fault_rig(tmp_path, toxiproxy_server, before_start=mount_small_disk) as rig:
        begin(rig)
        rig.workload.upload_artifact("big/too-big.bin", 16 * 1024 * 1024)
        rig.workload.round(1)
        rig.wait_status(
            lambda s: shows("No space left")(s) and s["waiting_for"].get("storage", 0) > 0,
            "the full disk at site level (waiting_for storage) and why (No space left)")
        mirror = rig.secondary.settings.mirror_root
        assert _mount(["mount", "-o", "remount,size=96m", str(mirror)]).returncode == 0
        rig.converge()


def test_clocks_apart_beyond_the_jwt_leeway_are_named_and_survived(
        tmp_path: Path, toxiproxy_server: ToxiproxyApi) -> None:
    if not LIBFAKETIME.exists() or shutil.which("faketime") is None:
        service_missing("libfaketime (Debian package faketime)",
                        FileNotFoundError(str(LIBFAKETIME)))
    with fault_rig(tmp_path, toxiproxy_server) as rig:
        begin(rig)
        # The primary's clock goes back: every token the secondary signs is "from the
        # future" there. (libfaketime shifts every clock of that process alike.)
        rig.restart_primary({"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": SKEW})
        rig.workload.round(1)
        rig.wait_status(shows("token", "iat", "not yet valid", "401", "403"),
                        "the tokens refused for the clock skew")
        time.sleep(2.0)
        rig.primary.stop()  # the clock is fixed
        start_primary(rig.primary)
        rig.converge()
