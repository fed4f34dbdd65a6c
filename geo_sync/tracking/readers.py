"""Readers of the mirror server: a name and a token, stored as the token's sha256.

The token is printed once when the reader is added and never kept; a lookup hashes
what the client sent and finds the row by that hash, so neither a wrong name nor a
wrong token tells anything about which names exist.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select

from geo_sync.db import utcnow
from geo_sync.errors import InvalidInput, NotFound
from geo_sync.tracking.models import ReaderRow

TOKEN_PREFIX = "gsr_"  # noqa: S105 - a marker of reader tokens, not a secret
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


@dataclass(frozen=True)
class Reader:
    """A reader as listed: never its token."""

    name: str
    created_at: datetime


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def validate_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidInput(f"reader name {name[:80]!r} is not valid: 1-64 letters, digits and "
                           "._@- starting with a letter or digit")
    return name


def add_reader(conn: Connection, name: str) -> str:
    """Create reader ``name`` and return its token (the only time it is seen)."""
    validate_name(name)
    if conn.execute(select(ReaderRow.name).where(ReaderRow.name == name)).first():
        raise InvalidInput(f"reader {name!r} exists already",
                           hint="remove it first with `geo-sync secondary remove-reader` "
                           "to issue a new token")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    conn.execute(insert(ReaderRow).values(name=name, token_hash=hash_token(token),
                                          created_at=utcnow()))
    return token


def remove_reader(conn: Connection, name: str) -> None:
    """Revoke reader ``name``'s token."""
    if conn.execute(delete(ReaderRow).where(ReaderRow.name == name)).rowcount == 0:
        raise NotFound(f"no reader named {name[:80]!r}",
                       hint="`geo-sync secondary readers` lists them")


def list_readers(conn: Connection) -> list[Reader]:
    rows = conn.execute(select(ReaderRow.name, ReaderRow.created_at).order_by(ReaderRow.name))
    return [Reader(name, created) for name, created in rows]


def reader_for_token(conn: Connection, token: str) -> str | None:
    """The name of the reader holding ``token``, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    return conn.execute(select(ReaderRow.name).where(
        ReaderRow.token_hash == hash_token(token))).scalar()
