"""A promoted site keeps trying to fence the old primary a forced promotion could not
reach (``geo_fence_targets``, migration 0008).

`promote --force` records the old primary's URL and the promoted secondary's
credential on it (the only one it is sure to accept; it stays in the new primary's
database, like the secondaries' own secrets, and never in a log or a status).
`primary serve` then POSTs ``/fence`` there, with this site's epoch, on a capped
backoff until it answers, and stops. An old primary that comes back is fenced within
one retry interval: it refuses writes from its start anyway (an unclean shutdown,
geo_sync.primary.site_state), and from then on for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from geo_sync.auth import issue_token
from geo_sync.db import utcnow, write_transaction
from geo_sync.logging import get_logger
from geo_sync.primary import site_state
from geo_sync.primary.models import FenceTarget
from geo_sync.tls import client_verify
from geo_sync.wire import API_PREFIX, EPOCH_HEADER

log = get_logger("fence")
FIRST_RETRY_SECONDS = 1.0
#: An old primary that comes back is fenced within this (one connection attempt each).
MAX_RETRY_SECONDS = 15.0
REQUEST_TIMEOUT_SECONDS = 10.0
MAX_ERROR = 500
LOG_EVERY_ATTEMPTS = 40


def record_target(conn: Connection, *, url: str, epoch: int, new_primary_url: str,
                  caller_name: str, caller_secret: str, ca_bundle: Path | None) -> None:
    """Remember an old primary to fence (a forced promotion whose fence failed)."""
    conn.execute(insert(FenceTarget).values(
        url=url.rstrip("/"), epoch=epoch, new_primary_url=new_primary_url,
        caller_name=caller_name, caller_secret=caller_secret,
        ca_bundle=str(ca_bundle) if ca_bundle else None, recorded_at=utcnow(), attempts=0))


def unfenced(conn: Connection) -> list[dict[str, Any]]:
    """Old primaries not fenced yet, for status and check (never the secret)."""
    rows = conn.execute(select(FenceTarget.url, FenceTarget.recorded_at,
                               FenceTarget.attempts, FenceTarget.last_attempt_at,
                               FenceTarget.last_error)
                        .where(FenceTarget.fenced_at.is_(None)).order_by(FenceTarget.id))
    return [{"url": row.url, "since": row.recorded_at.isoformat(), "attempts": row.attempts,
             "last_attempt_at": (row.last_attempt_at.isoformat()
                                 if row.last_attempt_at else None),
             "last_error": row.last_error} for row in rows]


@dataclass(frozen=True)
class _Target:
    id: int
    url: str
    new_primary_url: str
    caller_name: str
    caller_secret: str
    ca_bundle: str | None


def _answer_error(response: httpx.Response) -> str:
    try:
        body = response.json()
        message = str(body.get("message")) if isinstance(body, dict) else response.text
    except ValueError:
        message = response.text
    return f"answered {response.status_code}: {' '.join(message[:300].split())}"


def fence_target(target: _Target, epoch: int) -> tuple[bool, str | None]:
    """One attempt: (fenced, why not). Network failures are answers too."""
    headers = {"Authorization": f"Bearer {issue_token(target.caller_name, target.caller_secret)}",
               EPOCH_HEADER: str(epoch)}
    try:
        with httpx.Client(verify=client_verify(Path(target.ca_bundle) if target.ca_bundle
                                               else None, target.url),
                          timeout=REQUEST_TIMEOUT_SECONDS) as http:
            response = http.post(f"{target.url}{API_PREFIX}/fence", headers=headers,
                                 json={"new_primary_url": target.new_primary_url,
                                       "epoch": epoch})
    except (httpx.HTTPError, OSError) as exc:
        return False, f"unreachable: {type(exc).__name__}: {exc}"[:MAX_ERROR]
    if response.status_code == 200:
        return True, None
    return False, _answer_error(response)[:MAX_ERROR]


def fence_pass(engine: Engine) -> int:
    """Try every old primary not fenced yet, once; returns how many are left. Stops
    (0) if this site was itself demoted meanwhile: a demoted site fences nobody."""
    with engine.connect() as conn:
        state = site_state.read_state(conn)
        targets = [_Target(r.id, r.url, r.new_primary_url, r.caller_name, r.caller_secret,
                           r.ca_bundle)
                   for r in conn.execute(select(
                       FenceTarget.id, FenceTarget.url, FenceTarget.new_primary_url,
                       FenceTarget.caller_name, FenceTarget.caller_secret,
                       FenceTarget.ca_bundle).where(FenceTarget.fenced_at.is_(None))
                       .order_by(FenceTarget.id))]
    if state.demoted:
        if targets:
            log.error("fence_loop_stopped", reason="this site was demoted itself",
                      old_primaries=[t.url for t in targets])
        return 0
    left = 0
    for target in targets:
        fenced, error = fence_target(target, state.epoch)
        now = utcnow()
        with write_transaction(engine) as conn:
            attempts, before = conn.execute(select(
                FenceTarget.attempts, FenceTarget.last_error).where(
                FenceTarget.id == target.id)).one()
            attempts += 1
            conn.execute(update(FenceTarget).where(FenceTarget.id == target.id).values(
                attempts=attempts, last_attempt_at=now, last_error=error,
                fenced_at=now if fenced else None))
        if fenced:
            log.warning("old_primary_fenced", url=target.url, epoch=state.epoch,
                        attempts=attempts)
            continue
        left += 1
        # A line when the reason changes, and about every ten minutes while it lasts.
        if error != before or attempts % LOG_EVERY_ATTEMPTS == 1:
            log.warning("old_primary_not_fenced", url=target.url, attempt=attempts,
                        error=error, retry_in_at_most=MAX_RETRY_SECONDS,
                        hint="it refuses writes from its start until it is fenced or its "
                        "epoch is confirmed; fencing is retried until it answers")
    return left


async def fence_loop(engine: Engine, run: Any, sleep: Any) -> None:
    """Fence every recorded old primary, retrying on a capped backoff until none is
    left. ``run`` runs a blocking call in the thread pool, ``sleep`` waits (asyncio's).
    A database that cannot be read is retried like an unreachable old primary; any
    other error escapes (the caller stops the process)."""
    delay = FIRST_RETRY_SECONDS
    while True:
        try:
            left = await run(fence_pass, engine)
        except SQLAlchemyError as exc:
            log.warning("fence_loop_database_error", error=str(exc)[:MAX_ERROR],
                        retry_in=delay)
            left = -1
        if left == 0:
            return
        await sleep(delay)
        delay = min(delay * 2, MAX_RETRY_SECONDS)
