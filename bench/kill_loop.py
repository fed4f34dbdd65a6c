"""A seeded random loop of SIGKILLs across every process of a deployment during a CI
workload, then the fault matrix's checks: the mirror equals the primary, no copy seen at
a final path was one the primary never published, no temp file is left.

    python -m bench.kill_loop [--seed N] [--kills 100]

The seed is printed first; the same seed replays the same victims and pauses.

A SIGKILLed `primary serve` restarts unclean: the site refuses writes until the
secondary that follows it confirms its epoch on its next poll. The CI site's publishing
retries such a refusal, as a CI system's job would (``refused_writes`` counts them);
any other refusal, or one that outlasts ``CONFIRM_WAIT_SECONDS``, stops the workload.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from geo_sync.errors import SiteReadOnly
from geo_sync.primary.publish import Change
from geo_sync.primary.site_state import UNCONFIRMED_REASON
from geo_sync.workload import Publisher
from tests.faults.rig import Rig, fault_rig, kill_primary, start_primary
from tests.faults.toxiproxy_api import toxiproxy_api

VICTIMS = ("secondary run", "geo-sync worker", "primary serve")
#: How long a write refused after an unclean restart is retried: the follower's next
#: poll confirms the epoch, unless it is itself being restarted.
CONFIRM_WAIT_SECONDS = 120.0


def _retrying(publish: Publisher, counts: Counter[str]) -> Publisher:
    """``publish``, retrying while the site waits for its epoch to be confirmed."""
    def retry(change: Change) -> None:
        deadline = time.monotonic() + CONFIRM_WAIT_SECONDS
        while True:
            try:
                publish(change)
                return
            except SiteReadOnly as exc:
                if UNCONFIRMED_REASON not in str(exc) or time.monotonic() > deadline:
                    raise
                counts["refused_writes"] += 1
                time.sleep(0.2)
    return retry


def _drive(rig: Rig, stop: threading.Event, rng: random.Random,
           errors: list[BaseException]) -> None:
    """The CI site: rounds of everyday changes and uploads until ``stop``."""
    number = 3  # rounds 1 and 2 rename and delete a repository once, before the loop
    try:
        while not stop.wait(rng.uniform(0.1, 0.6)):
            rig.workload.round(number)
            rig.workload.upload_artifact(f"loop/{number}/big.bin",
                                         rng.randint(64, 2048) * 1024)
            number += 1
    except BaseException as exc:  # the loop reports it: a workload that stopped is a bug
        errors.append(exc)


def _kill(rig: Rig, victim: str) -> None:
    if victim == "primary serve":
        kill_primary(rig.primary)
        start_primary(rig.primary)
    elif victim == "secondary run":
        rig.deployment.kill("run")
        rig.deployment.start_run()
    else:
        rig.deployment.kill("workers")
        rig.deployment.start_workers()


def kill_loop(seed: int, kills: int, directory: Path) -> dict[str, object]:
    rng = random.Random(seed)  # noqa: S311 - a replayable fault schedule, not secrets
    counts: Counter[str] = Counter()
    with toxiproxy_api() as api, fault_rig(directory, api) as rig:
        rig.workload.initial(repositories=3, artifacts=6, logs=3)
        rig.workload.round(1)
        rig.workload.round(2)
        refusals: Counter[str] = Counter()
        rig.workload.publish = _retrying(rig.workload.publish, refusals)
        rig.deployment.start()
        stop = threading.Event()
        errors: list[BaseException] = []
        driver = threading.Thread(target=_drive, daemon=True,
                                  args=(rig, stop, random.Random(seed + 1), errors))  # noqa: S311
        driver.start()
        try:
            for n in range(kills):
                time.sleep(rng.uniform(0.2, 2.0))
                victim = rng.choice(VICTIMS)
                _kill(rig, victim)
                counts[victim] += 1
                print(f"kill {n + 1}/{kills}: {victim}", flush=True)
        finally:
            stop.set()
            driver.join(timeout=60)
        if errors:
            raise AssertionError(f"the workload stopped: {errors[0]!r}")
        took = rig.converge()
        return {"kills": dict(counts), "changes": rig.workload.changes,
                "refused_writes": refusals["refused_writes"],
                "converge_seconds": round(took, 1), "samples": rig.checker.samples}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=None,
                        help="replay a run (default: a new random seed, printed)")
    parser.add_argument("--kills", type=int, default=100)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    print(f"kill loop seed {seed} ({args.kills} kills); replay: "
          f"python -m bench.kill_loop --seed {seed} --kills {args.kills}", flush=True)
    with tempfile.TemporaryDirectory(prefix="geo-kill-loop-") as tmp:
        try:
            result = kill_loop(seed, args.kills, Path(tmp))
        except AssertionError as exc:
            print(f"kill loop seed {seed} FAILED: {exc}", flush=True)
            return 1
    print(f"kill loop seed {seed}: converged after {args.kills} kills {result}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
