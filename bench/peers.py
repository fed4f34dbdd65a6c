"""The tools geo-sync is measured against, installed by the harness itself.

grokmirror comes from PyPI into a virtualenv of its own (outside the project's,
so the peer's dependencies never leak into geo-sync's); rsync and rclone come
from Debian's packages. Each is installed once and then found again.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

GROKMIRROR = "grokmirror==2.0.12"
# grokmirror imports `packaging` without declaring it (seen with 2.0.12).
GROKMIRROR_EXTRA = ("packaging",)
PEERS_HOME = Path(os.environ.get("GEO_SYNC_BENCH_PEERS", Path.home() / ".cache/geo-sync-bench"))


class PeerUnavailable(RuntimeError):
    """A peer could not be installed; the message says what to do."""


def _run(*args: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True, check=False,
                            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if result.returncode != 0:
        raise PeerUnavailable(f"`{' '.join(args)}` failed ({result.returncode}):\n"
                              f"{result.stderr.strip()[-2000:]}")


@contextmanager
def _installing() -> Iterator[None]:
    """One installer at a time, across processes: benchmarks run side by side (the
    suite's workers, two engineers) would otherwise clear each other's virtualenv or
    fight over dpkg's lock."""
    PEERS_HOME.mkdir(parents=True, exist_ok=True)
    with (PEERS_HOME / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@cache
def grokmirror_bin() -> Path:
    """The bin/ directory of a virtualenv holding grokmirror (created on first use)."""
    venv = PEERS_HOME / "grokmirror"
    bin_dir = venv / "bin"
    ready = venv / ".installed"  # written last: a venv cut short is made again
    if ready.exists():
        return bin_dir
    with _installing():
        if not ready.exists():
            print(f"installing {GROKMIRROR} into {venv}", file=sys.stderr, flush=True)
            _run(sys.executable, "-m", "venv", "--clear", str(venv))
            _run(str(bin_dir / "python"), "-m", "pip", "install", "--quiet", GROKMIRROR,
                 *GROKMIRROR_EXTRA)
            ready.touch()
    return bin_dir


@cache
def _apt_updated() -> None:
    _run("apt-get", "update", "-q")


def debian_tool(command: str, package: str | None = None) -> str:
    """The path of ``command``, installing its Debian package first if it is missing."""
    found = shutil.which(command)
    if found:
        return found
    if os.geteuid() != 0:
        raise PeerUnavailable(f"{command} is not installed and installing it needs root: "
                              f"run `sudo apt-get install {package or command}` first")
    with _installing():
        if shutil.which(command) is None:
            print(f"installing {package or command} from Debian's packages", file=sys.stderr,
                  flush=True)
            _apt_updated()
            _run("apt-get", "install", "-y", "-q", "--no-install-recommends",
                 package or command)
    found = shutil.which(command)
    if found is None:
        raise PeerUnavailable(f"installed {package or command} but {command} is not on PATH")
    return found


def grok_pull_setup(repositories: Path, site: str, mirror: Path, scratch: Path,
                    threads: int, **pull: object) -> Path:
    """Make the origin's manifest of ``repositories`` with grok-manifest and write a
    grok-pull config mirroring ``site`` into ``mirror`` (created); return the config.
    ``pull`` adds settings to its [pull] section (refresh, socket, ...)."""
    bin_dir = grokmirror_bin()
    manifest = scratch / "origin-manifest.js.gz"
    subprocess.run([str(bin_dir / "grok-manifest"), "-m", str(manifest), "-t",
                    str(repositories)], check=True)
    mirror.mkdir(parents=True)
    config = scratch / "grok-pull.conf"
    extra = "".join(f"{key} = {value}\n" for key, value in pull.items())
    config.write_text(f"""[core]
toplevel = {mirror}
manifest = {mirror}/manifest.js.gz
log = {scratch}/grok-pull.log
objstore = {mirror}/objstore
[remote]
site = {site}
manifest = file://{manifest}
[pull]
pull_threads = {threads}
{extra}""")
    return config
