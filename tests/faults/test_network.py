"""Network faults between the sites, driven through Toxiproxy (toxiproxy-python): the
link slowed, stalled, cut, reset, sliced, or the primary unreachable for a while."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deployment import wait_for
from tests.faults.cells import begin, partial_transfer, pending, shows, unreachable
from tests.faults.rig import Rig, fault_rig
from tests.faults.toxiproxy_api import ToxiproxyApi

# Cells run one after another on one xdist worker (make test): each starts a primary, a
# secondary's daemons and private services, and two at once on two cores starve both.
pytestmark = pytest.mark.xdist_group("faults")


@pytest.fixture
def rig(tmp_path: Path, toxiproxy_server: ToxiproxyApi) -> Iterator[Rig]:
    with fault_rig(tmp_path, toxiproxy_server) as built:
        yield built


def test_latency_with_jitter_slows_the_link_and_the_mirror_converges(rig: Rig) -> None:
    begin(rig)
    rig.add_toxic(type="latency", attributes={"latency": 400, "jitter": 200})
    rig.add_toxic(type="latency", stream="upstream", attributes={"latency": 100})
    rounds = itertools.count(1)
    rig.workload.round(next(rounds))
    rig.wait_status(pending, "the work still in flight over the slow link",
                    more=lambda: rig.workload.round(next(rounds)))
    rig.remove_toxics()
    rig.converge()


def test_a_slow_first_clone_of_a_larger_repository_completes(rig: Rig) -> None:
    rig.workload.initial(repositories=0, artifacts=1, logs=1)
    rig.workload.create_repository("big/monorepo.git", commits=50)
    # 4 MiB that does not compress: about 10 s at 400 KB/s, several leases long.
    work = rig.workload.scratch / "worktrees" / "big__monorepo.git"
    (work / "assets.bin").write_bytes(random.Random(1).randbytes(4 * 1024 * 1024))
    rig.workload.push("big/monorepo.git")
    rig.add_toxic(type="bandwidth", attributes={"rate": 400})
    rig.deployment.start()
    rig.wait_status(pending, "the repository's first clone in progress")
    rig.converge()  # under the toxic: a slow link must still finish


def test_a_slow_large_artifact_arrives_whole(rig: Rig) -> None:
    begin(rig)
    rig.add_toxic(type="bandwidth", attributes={"rate": 1000})
    rig.workload.upload_artifact("big/slow.bin", 6 * 1024 * 1024)
    wait_for(lambda: partial_transfer(rig), "the slow transfer to start", 120)
    more = itertools.count(1)
    rig.wait_status(pending, "the artifact still in transfer", more=lambda: rig.workload
                    .upload_artifact(f"big/slow-{next(more)}.bin", 6 * 1024 * 1024))
    rig.converge()


def test_a_stall_longer_than_the_http_timeout_is_survived(rig: Rig) -> None:
    begin(rig)
    rig.add_toxic(type="timeout", attributes={"timeout": 8000})
    rig.workload.round(1)
    rig.wait_status(lambda s: unreachable(s) or shows("timeout", "timed out")(s),
                    "the stalled link")
    rig.remove_toxics()
    rig.converge()


def test_a_connection_reset_mid_response_is_retried(rig: Rig) -> None:
    begin(rig)
    rig.add_toxic(type="bandwidth", attributes={"rate": 500})
    rig.workload.upload_artifact("big/reset.bin", 4 * 1024 * 1024)
    wait_for(lambda: partial_transfer(rig), "the transfer to start", 60)
    rig.add_toxic(type="reset_peer", attributes={"timeout": 0})
    rig.wait_status(lambda s: unreachable(s) or shows("reset", "transfer", "failed")(s),
                    "the reset transfer")
    rig.remove_toxics()
    rig.converge()


def test_connections_cut_after_a_few_kilobytes_are_retried(rig: Rig) -> None:
    begin(rig)
    rig.add_toxic(type="limit_data", attributes={"bytes": 20_000})
    rig.workload.upload_artifact("big/cut.bin", 512 * 1024)
    rig.workload.round(1)
    rig.wait_status(lambda s: unreachable(s) or shows("transfer", "incomplete", "closed",
                                                      "failed")(s), "the cut transfers")
    rig.remove_toxics()
    rig.converge()


def test_data_sliced_into_small_delayed_packets_arrives_whole(rig: Rig) -> None:
    begin(rig)
    # About 2 ms per 1 KB slice: a 4 MiB artifact takes several seconds.
    rig.add_toxic(type="slicer", attributes={"average_size": 1000, "size_variation": 500,
                                             "delay": 2000})
    rig.workload.upload_artifact("big/sliced.bin", 4 * 1024 * 1024)
    rounds = itertools.count(1)
    rig.workload.round(next(rounds))
    rig.wait_status(pending, "the sliced transfers in flight",
                    more=lambda: rig.workload.round(next(rounds)))
    rig.converge()  # slicing is not an error: it must converge with the toxic on


def test_the_primary_unreachable_longer_than_the_retry_cap_is_survived(rig: Rig) -> None:
    begin(rig)
    rig.proxy.disable()
    rig.workload.round(1)
    rig.wait_status(unreachable, "the primary unreachable")
    time.sleep(3 * 2.0)  # longer than retry_cap_seconds (2 s): backoff reaches its cap
    rig.proxy.enable()
    rig.converge()


def test_a_primary_answering_503_for_a_while_is_survived(
        rig: Rig, toxiproxy_server: ToxiproxyApi) -> None:
    if not toxiproxy_server.ours:
        pytest.skip("http_error is our server's extension; Toxiproxy has no 5xx toxic")
    begin(rig)
    rig.add_toxic(type="http_error", stream="upstream", attributes={"status_code": 503})
    rig.workload.round(1)
    rig.wait_status(lambda s: unreachable(s) or shows("503")(s), "the primary's 503s")
    rig.remove_toxics()
    rig.converge()
