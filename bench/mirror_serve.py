"""The mirror server (`geo-sync secondary serve`) against Debian's nginx serving the
same mirror directory in the same run: files as static files (sendfile), git through
fcgiwrap + `git http-backend` (the standard deployment). Four loads: parallel
clones of one repository, one large artifact, many 16 KiB artifacts one after
another over one keep-alive connection, and the same files over ``--parallel``
keep-alive connections at once (runners side by side). geo-sync runs as deployed
(before a verified copy is served, the primary is asked what is pending beyond this
secondary's cursor: one ask shared by concurrent requests, read-after-write) with
one process and with ``--processes``, and with ``confirm_with_primary = false``
(the tracking DB alone decides).

    .venv/bin/python -m bench.mirror_serve [--repo-mib 100] [--clones 8] \\
        [--big-mib 1024] [--small 10000] [--parallel 8] [--processes 2] [--json] \\
        [--output docs/benchmarks.md]

The sites are embedded (SQLite) and the mirror is filled by the real replication
path (sync and verification) before any clock starts.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from bench.data import artifact_set, seeded_bytes, write_seeded_file
from bench.gitdata import history_stream
from bench.peers import debian_tool
from bench.report import add_output_argument, append_section
from geo_sync.db import write_transaction
from geo_sync.primary.publish import Change, publish
from geo_sync.secondary.cursor import LogCursor
from geo_sync.secondary.runtime import open_runtime
from replicators.artifact import ArtifactReplicator
from replicators.repository import RepositoryReplicator
from tests.secondary.mirror.world import MirrorServer, replicate
from tests.sites import PrimarySite, SecondarySite, free_port, primary_site, secondary_site

MIB = 1024 * 1024
SMALL = 16 * 1024
REPO = "bench/big.git"
BIG = "big/artifact.bin"
#: Downloads of the large artifact per server; the fastest counts (see time_big).
BIG_RUNS = 5

NGINX_CONF = """
user root;
worker_processes 2;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  keepalive_timeout 60;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{port};
    location /artifacts/ {{ alias {mirror}/artifacts/; }}
    location ~ ^/git(/.*)$ {{
      client_max_body_size 0;
      fastcgi_buffering off;
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME /usr/lib/git-core/git-http-backend;
      fastcgi_param GIT_PROJECT_ROOT {mirror}/repositories;
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param PATH_INFO $1;
      fastcgi_param GIT_PROTOCOL $http_git_protocol;
      fastcgi_param GIT_CONFIG_COUNT 1;
      fastcgi_param GIT_CONFIG_KEY_0 uploadpack.allowFilter;
      fastcgi_param GIT_CONFIG_VALUE_0 true;
      fastcgi_pass unix:{tmp}/fcgiwrap.sock;
    }}
  }}
}}
"""


def big_repository(path: Path, mib: int) -> None:
    """A bare repository of about ``mib`` MiB packed: 200 commits of text history and
    a commit of incompressible files (1 MiB each), repacked into one pack."""
    stream = bytearray(history_stream(7, 200))
    marks = []
    for n in range(mib):
        mark = 900_000 + n
        stream += b"blob\nmark :%d\ndata %d\n" % (mark, MIB) + seeded_bytes(n, MIB) + b"\n"
        marks.append(mark)
    stream += (b"commit refs/heads/main\nauthor Dev <dev@example.com> 1700200000 +0000\n"
               b"committer Dev <dev@example.com> 1700200000 +0000\ndata 6\nassets\n")
    stream += b"".join(b"M 100644 :%d assets/blob-%04d.bin\n" % (m, i)
                       for i, m in enumerate(marks)) + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    subprocess.run(["git", "fast-import", "--quiet"], cwd=path, check=True,
                   input=bytes(stream))
    subprocess.run(["git", "repack", "-adq"], cwd=path, check=True)


def fill_primary(primary: PrimarySite, args: argparse.Namespace) -> list[str]:
    """The data on the primary, published; the small artifacts' paths."""
    big_repository(primary.storage(RepositoryReplicator.storage_dir) / REPO, args.repo_mib)
    root = primary.storage(ArtifactReplicator.storage_dir)
    (root / BIG).parent.mkdir(parents=True, exist_ok=True)
    write_seeded_file(root / BIG, 3, args.big_mib)
    small = artifact_set(args.small, SMALL)
    for path, write in small.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        write(root / path)
    with write_transaction(primary.engine) as conn:
        publish(conn, Change(RepositoryReplicator.name, "created", REPO))
        for path in [BIG, *small]:
            data = (root / path).read_bytes() if path != BIG else None
            digest = hashlib.sha256(data).hexdigest() if data is not None else _sha(root / BIG)
            publish(conn, Change(ArtifactReplicator.name, "created", path,
                                 size=(root / path).stat().st_size, checksum=digest))
    return list(small)


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def fill_mirror(secondary: SecondarySite) -> None:
    """Replicate and verify everything, as `secondary run` would (clock not started)."""
    runtime = open_runtime(secondary.settings)
    try:
        LogCursor(runtime).run_once(wait=0)
        replicate(runtime, ArtifactReplicator.name)
        replicate(runtime, RepositoryReplicator.name)
    finally:
        runtime.close()


@contextmanager
def nginx(mirror: Path, tmp: Path) -> Iterator[str]:
    """nginx + fcgiwrap over ``mirror``; yields the base URL."""
    nginx_bin = debian_tool("nginx")
    fcgiwrap_bin = debian_tool("fcgiwrap")
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, mirror=mirror))
    socket_path = tmp / "fcgiwrap.sock"
    # Its own session: fcgiwrap's children outlive a terminated parent, so the whole
    # group is stopped at the end.
    fcgi = subprocess.Popen([fcgiwrap_bin, "-c", "8", "-s", f"unix:{socket_path}"],
                            start_new_session=True)
    server = subprocess.Popen([nginx_bin, "-c", str(conf), "-p", str(tmp)])
    try:
        deadline = time.monotonic() + 30
        while not socket_path.exists() or subprocess.run(
                ["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/"],
                check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx or fcgiwrap did not start: "
                                   f"{(tmp / 'nginx-error.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=15)
        os.killpg(fcgi.pid, signal.SIGTERM)
        fcgi.wait(timeout=15)


def time_clones(base: str, clones: int, scratch: Path, auth: list[str]) -> float:
    """Seconds for ``clones`` parallel `git clone --bare` of the repository."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}

    def clone(n: int) -> None:
        target = scratch / f"clone-{n}"
        subprocess.run(["git", *auth, "clone", "-q", "--bare", f"{base}/git/{REPO}",
                        str(target)], check=True, env=env, timeout=1800)

    started = time.monotonic()
    with ThreadPoolExecutor(clones) as pool:
        list(pool.map(clone, range(clones)))
    elapsed = time.monotonic() - started
    subprocess.run(["rm", "-rf", *(str(scratch / f"clone-{n}") for n in range(clones))],
                   check=True)
    return elapsed


def time_big(base: str, auth: list[str], mirror: Path) -> float:
    """The best of ``BIG_RUNS`` downloads: one takes well under a second from the page
    cache, so a single run measures whatever else the two cores did meanwhile."""
    # The file in the page cache for every server alike: the first one measured would
    # otherwise pay for reading it from disk.
    subprocess.run(["cat", str(mirror / ArtifactReplicator.storage_dir / BIG)],
                   stdout=subprocess.DEVNULL, check=True)
    runs = []
    for _ in range(BIG_RUNS):
        started = time.monotonic()
        subprocess.run(["curl", "-sSf", *auth, "-o", "/dev/null",
                        f"{base}/artifacts/{BIG}"], check=True, timeout=1800)
        runs.append(time.monotonic() - started)
    return min(runs)


def time_small(base: str, paths: list[str], scratch: Path, auth: list[str]) -> float:
    """Seconds for every small artifact, one after another over one keep-alive
    connection (one curl with every URL), or side by side with ``-Z``."""
    config = scratch / "urls.curl"
    config.write_text("".join(f'url = "{base}/artifacts/{p}"\noutput = "/dev/null"\n'
                              for p in paths))
    started = time.monotonic()
    subprocess.run(["curl", "-sSf", *auth, "-K", str(config)], check=True, timeout=3600)
    return time.monotonic() - started


def measure(base: str, args: argparse.Namespace, paths: list[str], scratch: Path,
            token: str | None, mirror: Path) -> dict[str, float]:
    git_auth = ["-c", f"http.extraHeader=Authorization: Bearer {token}"] if token else []
    curl_auth = ["-H", f"Authorization: Bearer {token}"] if token else []
    # Off the clock, for every server alike: a first clone and a few files, so that no
    # load pays for a process's first request (a new process imports on first use,
    # opens its database, connects to the primary).
    time_clones(base, 2, scratch, git_auth)
    time_small(base, paths[:100], scratch, [*curl_auth, "-Z", "--parallel-max", "4"])
    return {"git": time_clones(base, args.clones, scratch, git_auth),
            "big": time_big(base, curl_auth, mirror),
            "small": time_small(base, paths, scratch, curl_auth),
            "parallel": time_small(base, paths, scratch,
                                   [*curl_auth, "-Z", "--parallel-max", str(args.parallel)])}


def table(results: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    loads = [("git", f"{args.clones} parallel clones of a {args.repo_mib} MiB repository",
              args.clones, "clones"),
             ("big", f"one {args.big_mib} MiB artifact", args.big_mib * MIB / 1e9, "GB"),
             ("small", f"{args.small:,} x 16 KiB artifacts, one keep-alive connection",
              args.small, "requests"),
             ("parallel", f"{args.small:,} x 16 KiB artifacts, {args.parallel} keep-alive "
              "connections", args.small, "requests")]
    nginx_name = "nginx + fcgiwrap (Debian)"
    lines = ["| tool | load | seconds | rate/s | vs nginx |", "|---|---|---|---|---|"]
    for key, load, count, unit in loads:
        for tool, figures in results.items():
            seconds = figures[key]
            ratio = results[nginx_name][key] / seconds
            lines.append(f"| {tool} | {load} | {seconds:.2f} | {count / seconds:,.2f} "
                         f"{unit} | {ratio:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo-mib", type=int, default=100)
    parser.add_argument("--clones", type=int, default=8)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--parallel", type=int, default=8,
                        help="connections for the second small-file load")
    parser.add_argument("--processes", type=int, default=2,
                        help="`secondary serve --processes` of the multi-process runs")
    add_output_argument(parser)
    args = parser.parse_args()
    debian_tool("nginx")
    debian_tool("fcgiwrap")
    with tempfile.TemporaryDirectory() as tmp_name, \
            primary_site(Path(tmp_name) / "primary", None) as primary:
        tmp = Path(tmp_name)
        paths = fill_primary(primary, args)
        secondary = secondary_site(tmp / "secondary", primary, None)
        fill_mirror(secondary)
        scratch = tmp / "scratch"
        scratch.mkdir()
        results: dict[str, dict[str, float]] = {}
        nginx_tmp = tmp / "nginx"
        nginx_tmp.mkdir()
        with nginx(secondary.settings.mirror_root, nginx_tmp) as base:
            results["nginx + fcgiwrap (Debian)"] = measure(
                base, args, paths, scratch, None, secondary.settings.mirror_root)
        many = {"GEO_SYNC_SECONDARY__MIRROR__PROCESSES": str(args.processes)}
        for name, env in (
                ("geo-sync secondary serve, 1 process (as deployed: shared ask to the "
                 "primary)", {}),
                (f"geo-sync secondary serve, {args.processes} processes (as deployed)",
                 many),
                (f"geo-sync secondary serve, {args.processes} processes, "
                 "confirm_with_primary = false",
                 {**many, "GEO_SYNC_SECONDARY__MIRROR__CONFIRM_WITH_PRIMARY": "false"})):
            server = MirrorServer(secondary, free_port(), env=env)
            server.token = secondary.cli("secondary", "add-reader",
                                         f"bench{server.port}").stdout.strip()
            server.start()
            try:
                results[name] = measure(server.url, args, paths, scratch, server.token,
                                        secondary.settings.mirror_root)
            finally:
                server.stop()
        secondary.engine.dispose()
    text = table(results, args)
    print(text)
    append_section(args.output, "The mirror server against nginx", "bench.mirror_serve",
                   "loopback, embedded sites (SQLite), `secondary serve` (1 and "
                   f"{args.processes} processes) against nginx (2 workers) + fcgiwrap "
                   "(8 children) over the same directory, readers authenticated on "
                   "geo-sync only; the machine was shared with other engineers' work "
                   "while this ran (loaded: compare ratios, not absolute figures)", text)


if __name__ == "__main__":
    main()
