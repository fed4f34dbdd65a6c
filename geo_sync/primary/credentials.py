"""Who is calling: a secondary's JWT checked against its stored credential, with the
credential cached briefly and "last seen" recorded at most every few seconds."""

from __future__ import annotations

import time

from sqlalchemy import Engine

from geo_sync.auth import Credential, verify_token
from geo_sync.db import write_transaction
from geo_sync.primary import secondaries
from geo_sync.settings import PrimarySettings

# Disabling a secondary or rotating its secret takes effect within this.
CREDENTIAL_CACHE_SECONDS = 2.0
TOUCH_INTERVAL = 5.0


class Credentials:
    """The API's view of its secondaries' credentials (one per process)."""

    def __init__(self, settings: PrimarySettings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._last_touch: dict[str, float] = {}
        self._credentials: dict[str, tuple[float, Credential]] = {}

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

    def authenticate(self, token: str) -> str:
        """The calling secondary's name; raises AuthError (blocking: run in a thread)."""
        name = verify_token(token, self.credential,
                            leeway=self.settings.token_leeway_seconds,
                            max_ttl=self.settings.max_token_ttl_seconds)
        # Record "last seen" at most every few seconds per secondary, in a write
        # transaction of its own (a read transaction upgraded to a write can fail on SQLite).
        now = time.monotonic()
        if now - self._last_touch.get(name, -TOUCH_INTERVAL) >= TOUCH_INTERVAL:
            self._last_touch[name] = now
            with write_transaction(self.engine) as conn:
                secondaries.touch(conn, name)
        return name
