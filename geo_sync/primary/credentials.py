"""Who is calling: a secondary's JWT checked against its stored credential, with the
credential cached briefly and "last seen" recorded at most every few seconds.

A token that passed the whole check is remembered (by its exact text, signature
included) until the credential it was checked against leaves the cache, and never
past its own expiry: a secondary sends the same token for many requests (the mirror
server's asks: one every request), and answering those from memory spares the
request a trip to a worker thread and two JWT decodes. Disabling a secondary or
rotating its secret still takes effect within CREDENTIAL_CACHE_SECONDS of the
credential being read, as before; an unknown, disabled or refused token is never
remembered.
"""

from __future__ import annotations

import time

import jwt
from sqlalchemy import Engine

from geo_sync.auth import Credential, verify_token
from geo_sync.db import write_transaction
from geo_sync.primary import secondaries
from geo_sync.settings import PrimarySettings

# Disabling a secondary or rotating its secret takes effect within this.
CREDENTIAL_CACHE_SECONDS = 2.0
TOUCH_INTERVAL = 5.0
#: Tokens remembered at once (a few per secondary are live at a time).
_TOKENS_MAX = 1024


class Credentials:
    """The API's view of its secondaries' credentials (one per process)."""

    def __init__(self, settings: PrimarySettings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._last_touch: dict[str, float] = {}
        self._credentials: dict[str, tuple[float, Credential]] = {}
        #: token text -> (secondary, monotonic time until which it is taken as checked)
        self._tokens: dict[str, tuple[str, float]] = {}

    def credential(self, name: str) -> Credential | None:
        """An enabled secondary's credential is remembered for CREDENTIAL_CACHE_SECONDS,
        sparing the database a query on every request; unknown and disabled ones are
        always looked up, so a newly added or re-enabled secondary is admitted at once."""
        now = time.monotonic()
        cached = self._credentials.get(name)
        if cached is not None and now - cached[0] < CREDENTIAL_CACHE_SECONDS:
            return cached[1]
        with self.engine.connect() as conn:
            found = secondaries.credential(conn, name)
        if found is not None and found.enabled:
            self._credentials[name] = (now, found)
        else:
            self._credentials.pop(name, None)
        return found

    def checked(self, token: str) -> str | None:
        """The caller of a token that passed ``authenticate`` recently and needs no
        database work now (still within its credential's cache time and its expiry,
        "last seen" not due); None: call ``authenticate``. No I/O: safe on the event
        loop."""
        hit = self._tokens.get(token)
        if hit is None:
            return None
        name, until = hit
        now = time.monotonic()
        if now >= until:
            self._tokens.pop(token, None)
            return None
        if now - self._last_touch.get(name, -TOUCH_INTERVAL) >= TOUCH_INTERVAL:
            return None
        return name

    def authenticate(self, token: str) -> str:
        """The calling secondary's name; raises AuthError (blocking: run in a thread)."""
        name = verify_token(token, self.credential,
                            leeway=self.settings.token_leeway_seconds,
                            max_ttl=self.settings.max_token_ttl_seconds)
        self._remember(token, name)
        # Record "last seen" at most every few seconds per secondary, in a write
        # transaction of its own (a read transaction upgraded to a write can fail on SQLite).
        now = time.monotonic()
        if now - self._last_touch.get(name, -TOUCH_INTERVAL) >= TOUCH_INTERVAL:
            self._last_touch[name] = now
            with write_transaction(self.engine) as conn:
                secondaries.touch(conn, name)
        return name

    def _remember(self, token: str, name: str) -> None:
        """Remember a token that passed, until its credential's cache time ends or the
        token expires, whichever is first."""
        cached = self._credentials.get(name)
        if cached is None:
            return
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
        if not isinstance(exp, int):
            return
        now = time.monotonic()
        until = min(cached[0] + CREDENTIAL_CACHE_SECONDS, now + (exp - time.time()))
        if until <= now:
            return
        if len(self._tokens) >= _TOKENS_MAX:
            self._tokens.clear()
        self._tokens[token] = (name, until)
