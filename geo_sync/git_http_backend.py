"""Git smart HTTP, upload-pack only, shared by the primary's Geo API and the
secondary's mirror server.

Each request runs ``git upload-pack --stateless-rpc`` itself, doing what ``git
http-backend`` does for upload-pack (the service line, the no-cache headers, a gzipped
negotiation inflated) without the CGI process in between: that second exec was about a
third of the primary's CPU per fetch. Receive-pack is never run. The request body is
streamed into git while its output is streamed back, so neither a large negotiation nor
a large pack is held in memory.
"""

from __future__ import annotations

import asyncio
import os
import zlib
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from geo_sync.errors import InvalidInput
from geo_sync.files import CHUNK
from geo_sync.logging import get_logger

log = get_logger("git_http")

INFO_REFS = "/info/refs"
UPLOAD_PACK = "/git-upload-pack"
RECEIVE_PACK = "/git-receive-pack"


class GitOutputResponse(Response):
    """Streams a git process's output without ever calling ``receive``.

    Starlette's StreamingResponse listens for disconnects by calling ``receive``
    itself (for ASGI servers below spec 2.4, uvicorn among them). The request
    body belongs to the task feeding it to git; when the listener won the
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


def is_push(rest: str, service: str | None) -> bool:
    """Whether a smart-HTTP request is (the start of) a push."""
    return rest.endswith(RECEIVE_PACK) or service == "git-receive-pack"


def split_upload_pack(rest: str, method: str, service: str | None) -> tuple[str, str]:
    """``(repository path, suffix)`` of an upload-pack request, or InvalidInput. The
    caller has already refused pushes (``is_push``)."""
    if rest.endswith(INFO_REFS) and method in ("GET", "HEAD"):
        if service != "git-upload-pack":
            raise InvalidInput("only the smart protocol is served: ?service=git-upload-pack")
        return rest[: -len(INFO_REFS)], INFO_REFS
    if rest.endswith(UPLOAD_PACK) and method == "POST":
        return rest[: -len(UPLOAD_PACK)], UPLOAD_PACK
    raise InvalidInput(f"not a git smart-HTTP upload-pack request: {method} {rest[:200]}")


#: What http-backend sends with every smart-HTTP answer: never cache refs.
NO_CACHE = {"Expires": "Fri, 01 Jan 1980 00:00:00 GMT", "Pragma": "no-cache",
            "Cache-Control": "no-cache, max-age=0, must-revalidate"}
ADVERTISEMENT = "application/x-git-upload-pack-advertisement"
REQUEST_TYPE = "application/x-git-upload-pack-request"
RESULT_TYPE = "application/x-git-upload-pack-result"
GZIP = ("gzip", "x-gzip")


def pkt_line(text: str) -> bytes:
    """One git pkt-line: four hex digits of length (their own included), then the data."""
    data = text.encode()
    return f"{len(data) + 4:04x}".encode() + data


def wants_v2(git_protocol: str | None) -> bool:
    """Whether a ``Git-Protocol`` header asks for protocol v2, by git's own rule: the
    highest ``version=N`` among its colon-separated keys."""
    versions = [int(key[8:]) for key in (git_protocol or "").split(":")
                if key.startswith("version=") and key[8:].isdigit()]
    return max(versions, default=0) == 2


async def run_upload_pack(request: Request, project_root: Path, repo: str,
                          suffix: str) -> Response:
    """Answer one upload-pack request for ``project_root/repo`` with ``git upload-pack
    --stateless-rpc``, as ``git http-backend`` would, without the CGI in between (one
    git process per request, not two). ``repo`` must already be proven to lie inside
    ``project_root`` and to be a repository."""
    v2 = wants_v2(request.headers.get("git-protocol"))
    if suffix == INFO_REFS:
        headers = {"Content-Type": ADVERTISEMENT, **NO_CACHE}
        if request.method == "HEAD":
            return Response(status_code=200, headers=headers)
        # Protocol v0/v1 clients expect the service line first; v2 starts at once.
        prefix = b"" if v2 else pkt_line("# service=git-upload-pack\n") + b"0000"
        return await _upload_pack(request, project_root / repo, repo, headers, prefix,
                                  advertise=True)
    content_type = request.headers.get("content-type", "")
    if content_type != REQUEST_TYPE:
        raise InvalidInput(f"a git-upload-pack POST must be Content-Type {REQUEST_TYPE}, "
                           f"not {content_type[:100] or 'none'}")
    encoding = request.headers.get("content-encoding", "")
    if encoding and encoding not in GZIP:
        raise InvalidInput(f"unsupported Content-Encoding for git-upload-pack: "
                           f"{encoding[:100]} (send it plain or gzip)")
    return await _upload_pack(request, project_root / repo, repo,
                              {"Content-Type": RESULT_TYPE, **NO_CACHE}, b"",
                              advertise=False)


async def _upload_pack(request: Request, directory: Path, repo: str,
                       headers: dict[str, str], prefix: bytes, *,
                       advertise: bool) -> Response:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_COUNT": "2",
        # The caller has proven the path is inside our root; ownership is not our concern.
        "GIT_CONFIG_KEY_0": "safe.directory",
        "GIT_CONFIG_VALUE_0": "*",
        # Partial clones (--filter=blob:none) ask for this; off by default in git.
        "GIT_CONFIG_KEY_1": "uploadpack.allowFilter",
        "GIT_CONFIG_VALUE_1": "true",
    }
    if "git-protocol" in request.headers:
        env["GIT_PROTOCOL"] = request.headers["git-protocol"]
    args = ["git", "upload-pack", "--stateless-rpc"]
    if advertise:
        args.append("--advertise-refs")
    proc = await asyncio.create_subprocess_exec(
        *args, os.path.realpath(directory),
        stdin=asyncio.subprocess.DEVNULL if advertise else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout and proc.stderr
    feeder = asyncio.create_task(_feed_body(request, proc.stdin) if proc.stdin
                                 else _nothing())
    errors = asyncio.create_task(proc.stderr.read())
    # The status waits for git's first bytes: a request git refuses outright (a garbled
    # negotiation) gets a 400 with git's own words, not a 200 cut short.
    first = await proc.stdout.read(CHUNK)
    if not first:
        returncode = await proc.wait()
        stderr = (await errors).decode("utf-8", "replace").strip()
        if problem := await feeder:
            raise InvalidInput(f"git-upload-pack request for {repo}: {problem}")
        if returncode != 0:
            log.warning("git_upload_pack_refused", repository=repo, returncode=returncode,
                        stderr=stderr[-2000:])
            last = stderr.splitlines()[-1] if stderr else f"exit code {returncode}"
            raise InvalidInput(f"git upload-pack refused the request for {repo}: "
                               f"{last[:300]}")
    return GitOutputResponse(200, headers, _stream(proc, feeder, errors, repo,
                                                   prefix + first))


async def _feed_body(request: Request, stdin: asyncio.StreamWriter) -> str | None:
    """The request body into git's stdin, inflated if git's client gzipped it (it does
    for a negotiation over 1 KiB), as http-backend would. Returns what was wrong with
    the body, if anything; git then sees it end early."""
    inflate = (zlib.decompressobj(16 + zlib.MAX_WBITS)
               if request.headers.get("content-encoding", "") in GZIP else None)
    try:
        async for chunk in request.stream():
            stdin.write(inflate.decompress(chunk) if inflate else chunk)
            await stdin.drain()
        if inflate:
            stdin.write(inflate.flush())
    except (BrokenPipeError, ConnectionResetError):
        pass
    except zlib.error as exc:
        return f"the body is sent as gzip but is not gzip ({exc})"
    finally:
        with suppress(BrokenPipeError, ConnectionResetError):
            stdin.close()
    return None


async def _nothing() -> str | None:
    return None


async def _stream(
    proc: asyncio.subprocess.Process,
    feeder: asyncio.Task[str | None],
    errors: asyncio.Task[bytes],
    repo: str,
    first: bytes,
) -> AsyncIterator[bytes]:
    assert proc.stdout
    try:
        yield first
        while chunk := await proc.stdout.read(CHUNK):
            yield chunk
        await feeder
        returncode = await proc.wait()
        stderr = await errors
        if returncode != 0:
            log.warning("git_upload_pack_failed", repository=repo, returncode=returncode,
                        stderr=stderr.decode("utf-8", "replace")[-2000:])
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        feeder.cancel()
        errors.cancel()
