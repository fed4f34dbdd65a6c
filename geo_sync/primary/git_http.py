"""Git smart HTTP, upload-pack only, by running ``git http-backend`` as a CGI.

The request body is streamed into the backend while its output is streamed
back, so neither a large negotiation nor a large pack is held in memory.
Receive-pack is refused: secondaries and CI runners only ever read.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from geo_sync.errors import InvalidInput, MissingOnPrimary
from geo_sync.files import CHUNK
from geo_sync.logging import get_logger
from geo_sync.paths import resolve_inside
from replicators.registry import git_original
from replicators.repository import is_bare_repository

log = get_logger("git_http")

_INFO_REFS = "/info/refs"
_UPLOAD_PACK = "/git-upload-pack"
_RECEIVE_PACK = "/git-receive-pack"


class CgiOutputResponse(Response):
    """Streams a CGI's output without ever calling ``receive``.

    Starlette's StreamingResponse listens for disconnects by calling ``receive``
    itself (for ASGI servers below spec 2.4, uvicorn among them). The request
    body belongs to the task feeding it to the CGI; when the listener won the
    race for the one ``http.request`` message, the feeder waited forever and the
    fetch stalled until the client timed out.
    """

    def __init__(self, status_code: int, headers: dict[str, str],
                 body: AsyncIterator[bytes]) -> None:
        self.status_code = status_code
        self.background = None
        self.init_headers(headers)
        self._body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        async for chunk in self._body:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _refuse_push() -> Response:
    return JSONResponse(
        {
            "error": "read_only",
            "message": "the Geo API serves git read-only; pushes are refused",
            "hint": "push to the primary's own git server",
        },
        status_code=403,
    )


def _split(rest: str, method: str, service: str | None) -> tuple[str, str] | Response:
    if rest.endswith(_RECEIVE_PACK) or service == "git-receive-pack":
        return _refuse_push()
    if rest.endswith(_INFO_REFS) and method == "GET":
        if service != "git-upload-pack":
            raise InvalidInput("only the smart protocol is served: ?service=git-upload-pack")
        return rest[: -len(_INFO_REFS)], _INFO_REFS
    if rest.endswith(_UPLOAD_PACK) and method == "POST":
        return rest[: -len(_UPLOAD_PACK)], _UPLOAD_PACK
    raise InvalidInput(f"not a git smart-HTTP upload-pack request: {method} {rest[:200]}")


async def serve_git(request: Request, repositories_root: Path, caller: str) -> Response:
    """Handle ``/git/<repo>.git/info/refs`` and ``/git/<repo>.git/git-upload-pack``."""
    parts = _split(request.path_params["rest"], request.method,
                   request.query_params.get("service"))
    if isinstance(parts, Response):
        return parts
    repo, suffix = parts
    git_original().validate_path(repo)
    full = resolve_inside(repositories_root, repo)
    if not is_bare_repository(full):
        raise MissingOnPrimary(f"repository {repo} is missing on primary")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_PROJECT_ROOT": os.path.realpath(repositories_root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": f"/{repo}{suffix}",
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.url.query,
        "CONTENT_TYPE": request.headers.get("content-type", ""),
        "REMOTE_USER": caller,
        "REMOTE_ADDR": request.client.host if request.client else "",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "http.receivepack",
        "GIT_CONFIG_VALUE_0": "false",
        # We have already proven the path is inside our root; ownership is not our concern.
        "GIT_CONFIG_KEY_1": "safe.directory",
        "GIT_CONFIG_VALUE_1": "*",
    }
    for header, variable in (("git-protocol", "GIT_PROTOCOL"),
                             ("content-encoding", "HTTP_CONTENT_ENCODING"),
                             ("content-length", "CONTENT_LENGTH")):
        if header in request.headers:
            env[variable] = request.headers[header]
    proc = await asyncio.create_subprocess_exec(
        "git", "http-backend",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdin and proc.stdout and proc.stderr
    feeder = asyncio.create_task(_feed_body(request, proc.stdin))
    errors = asyncio.create_task(proc.stderr.read())
    status, headers = await _read_cgi_headers(proc.stdout)
    return CgiOutputResponse(status, headers, _stream(proc, feeder, errors, repo))


async def _feed_body(request: Request, stdin: asyncio.StreamWriter) -> None:
    try:
        async for chunk in request.stream():
            stdin.write(chunk)
            await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        with suppress(BrokenPipeError, ConnectionResetError):
            stdin.close()


async def _read_cgi_headers(stdout: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status = 200
    headers: dict[str, str] = {}
    while True:
        line = (await stdout.readline()).decode("latin-1").rstrip("\r\n")
        if not line:
            return status, headers
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split(" ", 1)[0])
        else:
            headers[name.strip()] = value.strip()


async def _stream(
    proc: asyncio.subprocess.Process,
    feeder: asyncio.Task[None],
    errors: asyncio.Task[bytes],
    repo: str,
) -> AsyncIterator[bytes]:
    assert proc.stdout
    try:
        while chunk := await proc.stdout.read(CHUNK):
            yield chunk
        await feeder
        returncode = await proc.wait()
        stderr = await errors
        if returncode != 0:
            log.warning("git_http_backend_failed", repository=repo, returncode=returncode,
                        stderr=stderr.decode("utf-8", "replace")[-2000:])
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        feeder.cancel()
        errors.cancel()
