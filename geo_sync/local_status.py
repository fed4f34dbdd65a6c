"""`geo-sync status` and `geo-sync check` answered by the daemon running on this machine.

A `status` process spends about a second importing SQLAlchemy, pydantic, psycopg and
httpx before its first query (docs/benchmarks.md, "Status at scale"), where the
queries themselves take 0.04 s at a million registry rows. `secondary run` has all of
that loaded, so it answers both commands on a Unix socket: it computes the report (or
the checks) with the same code the command runs (``geo_sync.cli.main.site_status``,
``geo_sync.cli.check.check_answer``), from the config file as it is now, and sends it
with its exit code as one JSON document. The command asks there first and computes
the answer itself when nothing answers (no daemon, a stale socket, another user's
daemon, no reply in time).

The socket is named after the config file's absolute path, in a directory only this
user may enter: ``$XDG_RUNTIME_DIR/geo-sync``, else /run/geo-sync (systemd's
RuntimeDirectory= for the unit), else ``/tmp/geo-sync-<uid>``. A directory that is not
ours and private is not used. The command imports this module before anything else, so
it needs only the standard library (and the logging set-up the command has anyway).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import socketserver
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from geo_sync.logging import get_logger
from geo_sync.paths import CONFIG_ENV

log = get_logger("local_status")
#: How long the command waits for the daemon to take the request (a line, at once: a
#: stopped or wedged daemon does not, though the kernel accepts the connection), and
#: then for its answer (it checks the primary, whose requests have their own timeout),
#: before computing the answer itself.
ACCEPT_TIMEOUT = 2.0
REPLY_TIMEOUT = 45.0
#: The line the daemon sends when it takes a request, before computing the answer.
TAKEN = b"taken\n"
#: What the daemon answers: `geo-sync status` and `geo-sync check`.
COMMANDS = ("status", "check")
#: The largest request line read: ``<command> <environment key>``.
MAX_REQUEST = 128


#: The directory systemd makes for the unit (config/systemd: RuntimeDirectory=), used
#: when it exists: the unit's /tmp is its own (PrivateTmp=), invisible to a command.
SYSTEMD_RUNTIME_DIR = Path("/run/geo-sync")


#: sun_path's size on Linux, and the length of our sockets' names.
SOCKET_PATH_MAX = 108
_NAME_LENGTH = 24 + len(".sock")


def runtime_dirs() -> list[Path]:
    """Where the socket may be, in order: ``$XDG_RUNTIME_DIR/geo-sync``, /run/geo-sync,
    ``/tmp/geo-sync-<uid>`` (one whose socket path would be too long is passed over)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    return [*([Path(base) / "geo-sync"] if base else []), SYSTEMD_RUNTIME_DIR,
            Path(tempfile.gettempdir()) / f"geo-sync-{os.getuid()}"]


def _private(directory: Path) -> bool:
    """Whether ``directory`` is a directory of this user's that no one else may enter,
    short enough for a socket path (108 bytes on Linux, the final NUL included)."""
    if len(os.fsencode(directory)) + 1 + _NAME_LENGTH >= SOCKET_PATH_MAX:
        return False
    try:
        info = directory.lstat()
    except OSError:
        return False
    return (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
            and not info.st_mode & 0o077)


def runtime_dir(*, create: bool) -> Path | None:
    """The first of ``runtime_dirs()`` that is private to this user (made, but for
    /run/geo-sync, when ``create``); None when there is none."""
    for directory in runtime_dirs():
        if create and directory != SYSTEMD_RUNTIME_DIR:
            try:
                directory.mkdir(mode=0o700, exist_ok=True)
            except OSError:
                continue
        if _private(directory):
            return directory
    return None


def environment_key() -> str:
    """A digest of this process's GEO_SYNC_* variables (but the config file's): they
    override the config file, so a daemon whose overrides differ from the command's
    would report on different settings. It answers only a command whose key is its own."""
    overrides = sorted((name, value) for name, value in os.environ.items()
                       if name.startswith("GEO_SYNC_") and name != CONFIG_ENV)
    return hashlib.sha256(json.dumps(overrides).encode("utf-8", "surrogateescape")
                          ).hexdigest()[:32]


def _request(command: str) -> bytes:
    return f"{command} {environment_key()}\n".encode()


def socket_name(config_path: Path) -> str:
    """The socket's file name for the daemon started with ``config_path``."""
    key = str(config_path.resolve()).encode("utf-8", "surrogateescape")
    return hashlib.sha256(key).hexdigest()[:_NAME_LENGTH - 5] + ".sock"


def ask(config_path: Path, command: str = "status", timeout: float = REPLY_TIMEOUT
        ) -> dict[str, Any] | None:
    """What the daemon for ``config_path`` answers ``command`` with, or None when none
    answers (the command's environment may name a runtime directory the daemon's did
    not: each private one is tried)."""
    for directory in filter(_private, runtime_dirs()):
        answer = _ask(directory / socket_name(config_path), _request(command), timeout)
        if answer is not None:
            return answer
    return None


def _ask(path: Path, request: bytes, timeout: float) -> dict[str, Any] | None:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(min(timeout, ACCEPT_TIMEOUT))
            conn.connect(str(path))
            conn.sendall(request)
            reply = bytearray()
            while len(reply) < len(TAKEN):
                if not (chunk := conn.recv(len(TAKEN) - len(reply))):
                    break
                reply += chunk
            if reply != TAKEN:
                return None  # refused (its reason is all it sent), or cut short
            conn.settimeout(timeout)
            reply.clear()
            while chunk := conn.recv(1 << 16):
                reply += chunk
        answer = json.loads(reply)
    except (OSError, ValueError):  # none there, stale, refused, timed out, cut short
        return None
    return answer if isinstance(answer, dict) and "error" not in answer else None


class _Handler(socketserver.StreamRequestHandler):
    server: _Server
    #: A client that sends nothing (or stops reading) is dropped after this long.
    timeout = 10.0

    def handle(self) -> None:
        command = self.server.expected.get(self.rfile.readline(MAX_REQUEST))
        if command is None:
            # Another request, or a command whose GEO_SYNC_* overrides differ from ours.
            self.wfile.write(b'{"error": "not answered: the request or its settings differ"}')
            return
        self.wfile.write(TAKEN)  # unbuffered: the command knows at once we are alive
        try:
            answer = self.server.answer(command)
        except Exception as exc:  # the command computes the report itself, and says why
            log.warning("status_not_answered", error=repr(exc),
                        hint="the command computed its answer itself")
            answer = {"error": repr(exc)}
        self.wfile.write(json.dumps(answer).encode())


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, answer: Callable[[str], dict[str, Any]]) -> None:
        self.answer = answer
        #: The request lines answered (with our own environment key), to their command.
        self.expected = {_request(command): command for command in COMMANDS}
        super().__init__(path, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away or went quiet: a JSON line, not socketserver's traceback.
        log.info("status_request_dropped", hint="the client stopped waiting, or sent no "
                 f"request within {_Handler.timeout:.0f} s")


class StatusSocket:
    """Answers `status` and `check` for the daemon started with ``config_path``:
    ``answer(command)`` is the document sent (it must not have an ``error`` key)."""

    def __init__(self, config_path: Path, answer: Callable[[str], dict[str, Any]]) -> None:
        self.config_path = config_path
        self.answer = answer
        self._server: _Server | None = None
        self._inode: int | None = None

    def start(self, spawn: Callable[[str, Callable[[], None]], object]) -> bool:
        """Bind the socket and answer on a thread ``spawn`` starts (the daemon's guarded
        threads: if that loop dies, so does the process). False (logged) when it cannot
        be bound: `status` and `check` then compute their answers themselves, as
        without a daemon."""
        directory = runtime_dir(create=True)
        if directory is None:
            log.warning("status_socket_not_served", hint="no private runtime directory "
                        f"({', '.join(map(str, runtime_dirs()))}): `geo-sync status` and "
                        "`check` compute their answers themselves")
            return False
        path = directory / socket_name(self.config_path)
        if ask(self.config_path, timeout=5.0) is not None:
            log.info("status_socket_not_served", socket=str(path),
                     hint="another `secondary run` with this config answers on it")
            return False
        path.unlink(missing_ok=True)  # a stale one, from a process that was killed
        try:
            server = _Server(str(path), self.answer)
        except OSError as exc:
            log.warning("status_socket_not_served", socket=str(path), error=str(exc),
                        hint="`geo-sync status` and `check` compute their answers themselves")
            return False
        self._server, self._inode = server, path.stat().st_ino
        spawn("geo-sync-status", lambda: server.serve_forever(poll_interval=0.5))
        return True

    def close(self) -> None:
        """Stop answering and remove the socket (unless another daemon replaced it)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        path = Path(server.server_address)  # type: ignore[arg-type]
        try:
            if path.stat().st_ino == self._inode:
                path.unlink()
        except OSError:
            pass
