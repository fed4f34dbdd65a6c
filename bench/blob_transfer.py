"""One large artifact: geo-sync (a real worker process: stream, hash while
streaming, fsync, check, rename) against `curl` to a file followed by a hash of
it, with `sha256sum` and with `openssl dgst -sha256` (SHA-NI, the same code as
hashlib: so hashing while streaming is not credited to a faster hash), all
reading the same Geo API endpoint in the same run.

    .venv/bin/python -m bench.blob_transfer [--size-mib 1024] [--output docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from bench.data import write_seeded_file
from bench.harness import served_primary_with_artifacts, time_worker_sync
from bench.report import add_output_argument, append_section, peer_table
from geo_sync.secondary.client import PrimaryClient
from geo_sync.settings import SecondarySettings
from geo_sync.tracking.sync_rows import Claimed
from replicators.artifact import ArtifactReplicator
from replicators.base import SyncContext
from tests.sites import PrimarySite

CHUNK = 1024 * 1024


def _replicator_sync(primary: PrimarySite, mirror: Path) -> float:
    """The transfer path alone: ArtifactReplicator.sync, timed in this process."""
    settings = SecondarySettings(name=primary.secondary, secret=primary.secret,
                                 primary_url=primary.url, database_url="sqlite:///unused",
                                 mirror_root=mirror)
    client = PrimaryClient(settings)
    item = Claimed(1, "big/artifact.bin", "big/artifact.bin", None, 1, False, None, None)
    started = time.monotonic()
    ArtifactReplicator.sync(SyncContext(client, mirror), item)
    elapsed = time.monotonic() - started
    client.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    add_output_argument(parser)
    args = parser.parse_args()

    def write(path: Path) -> None:
        write_seeded_file(path, 1, args.size_mib)

    with served_primary_with_artifacts({"big/artifact.bin": write}) as primary, \
            tempfile.TemporaryDirectory() as tmp:
        ours = time_worker_sync(primary, batch_size=1, threads=1)
        in_process = _replicator_sync(primary, Path(tmp) / "mirror")
        peers = [(f"curl -o file, then {' '.join(hasher)}",
                  _curl_then(primary, Path(tmp) / f"curl{n}.bin", hasher))
                 for n, hasher in enumerate((["sha256sum"], ["openssl", "dgst", "-sha256"]))]
    rows = [("geo-sync worker (stream + sha256 + fsync + rename)", ours),
            ("geo-sync replicator in-process (stream + sha256 + fsync + rename)", in_process),
            *peers]
    table = peer_table(rows, args.size_mib * CHUNK / 1e9, "GB")
    print(table)
    append_section(args.output, f"One {args.size_mib} MiB artifact", "bench.blob_transfer",
                   "loopback, PostgreSQL + Redis, one worker process with one thread, "
                   "started before the clock", table)


def _curl_then(primary: PrimarySite, out: Path, hasher: list[str]) -> float:
    """Seconds for `curl -o` of the artifact and then ``hasher`` over the file."""
    started = time.monotonic()
    subprocess.run(["curl", "-sSf", "-H", f"Authorization: Bearer {primary.token()}",
                    "-o", str(out), f"{primary.api}/blobs/artifact/big/artifact.bin"],
                   check=True)
    subprocess.run([*hasher, str(out)], check=True, capture_output=True)
    elapsed = time.monotonic() - started
    out.unlink()
    return elapsed


if __name__ == "__main__":
    main()
