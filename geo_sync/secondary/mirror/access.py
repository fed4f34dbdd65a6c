"""Who may read from the mirror server: reader tokens, as ``Authorization: Bearer``
or as the password of HTTP Basic (what git sends; the user name is not looked at).

A refusal is the same 401 whatever was wrong (no header, unknown token, a removed
reader), with ``WWW-Authenticate`` so that git asks for credentials.
"""

from __future__ import annotations

import base64
import binascii
import time

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from geo_sync.tracking.readers import hash_token, reader_for_token

#: A token found valid is trusted this long without asking the DB again: a removed
#: reader is refused within this many seconds.
CACHE_SECONDS = 5.0
_CACHE_MAX = 10_000

ANONYMOUS = "anonymous"


def presented_token(request: Request) -> str | None:
    """The token in the Authorization header, Bearer or Basic password."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip() or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def refusal() -> Response:
    return JSONResponse(
        {"error": "unauthorized",
         "message": "a reader token is required to read from this mirror",
         "hint": "ask the secondary's operator for one (`geo-sync secondary add-reader`); "
                 "send it as Authorization: Bearer, or as the password of HTTP Basic"},
        status_code=401,
        headers={"WWW-Authenticate": 'Basic realm="geo-sync mirror", charset="UTF-8"'})


class Readers:
    """Checks reader tokens against the tracking DB, remembering recent answers."""

    def __init__(self, engine: Engine, allow_anonymous: bool) -> None:
        self.engine = engine
        self.allow_anonymous = allow_anonymous
        self._valid: dict[str, tuple[str, float]] = {}

    async def reader(self, request: Request) -> str | None:
        """The reader's name; ``anonymous`` where that is allowed; None: refuse."""
        token = presented_token(request)
        if token is None:
            return ANONYMOUS if self.allow_anonymous else None
        key = hash_token(token)
        now = time.monotonic()
        cached = self._valid.get(key)
        if cached and cached[1] > now:
            return cached[0]
        name = await run_in_threadpool(self._lookup, token)
        if name is None:
            # A wrong token is refused even where anonymous reads are allowed: the
            # runner meant to authenticate and should hear that it failed.
            return None
        if len(self._valid) >= _CACHE_MAX:
            self._valid.clear()
        self._valid[key] = (name, now + CACHE_SECONDS)
        return name

    def _lookup(self, token: str) -> str | None:
        with self.engine.connect() as conn:
            return reader_for_token(conn, token)
