"""Short-lived HS256 JWTs, one secret per secondary.

A secondary signs each request with its own secret; the primary looks the
secondary up by the token's ``sub`` and verifies with that secondary's secret,
so a token signed with another secondary's secret, an expired token, or one
from a disabled secondary is refused.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from geo_sync.errors import AuthError, InvalidCredentials

AUDIENCE = "geo-sync-primary"
DEFAULT_TTL = 60
#: Secondary names are at most this long (geo_sync.primary.secondaries).
MAX_NAME_LENGTH = 64


@dataclass(frozen=True)
class Credential:
    """What the primary knows about a secondary to check its tokens."""

    name: str
    secret: str
    enabled: bool


def new_secret() -> str:
    """A fresh 256-bit secret, URL-safe."""
    return secrets.token_urlsafe(32)


def issue_token(name: str, secret: str, *, ttl: int = DEFAULT_TTL, now: float | None = None) -> str:
    """A token for secondary ``name`` valid for ``ttl`` seconds."""
    issued = int(now if now is not None else time.time())
    claims = {"sub": name, "aud": AUDIENCE, "iat": issued, "exp": issued + ttl}
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(
    token: str,
    lookup: Callable[[str], Credential | None],
    *,
    leeway: int,
    max_ttl: int,
) -> str:
    """Return the name of the secondary that signed ``token``; raise AuthError otherwise."""
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise AuthError("malformed token: not a JWT") from None
    name = unverified.get("sub")
    if not isinstance(name, str) or not name:
        raise AuthError("token names no secondary (missing sub claim)")
    credential = lookup(name) if len(name) <= MAX_NAME_LENGTH else None
    if credential is None:
        raise InvalidCredentials(f"unknown secondary {name[:80]!r}")
    try:
        claims = jwt.decode(
            token,
            credential.secret,
            algorithms=["HS256"],
            audience=AUDIENCE,
            leeway=leeway,
            options={"require": ["exp", "iat", "sub", "aud"]},
        )
    except jwt.InvalidSignatureError:
        raise InvalidCredentials(
            f"token signature does not match secondary {name!r}'s secret") from None
    except jwt.ExpiredSignatureError:
        # PyJWT checks the signature before the expiry: the caller is who it says.
        raise AuthError(f"token of secondary {name!r} has expired") from None
    except jwt.ImmatureSignatureError:
        # Signed by the right secret, issued in our future: the two clocks are apart.
        raise AuthError(
            f"token of secondary {name!r} is not yet valid (issued in the future)",
            hint="the secondary's clock is ahead of the primary's: sync both with NTP",
        ) from None
    except jwt.InvalidTokenError as exc:
        raise InvalidCredentials(f"invalid token for secondary {name!r}: {exc}") from None
    if not credential.enabled:
        raise AuthError(
            f"secondary {name!r} is disabled",
            hint="enable it on the primary with `geo-sync primary enable-secondary NAME`",
        )
    if int(claims["exp"]) - int(claims["iat"]) > max_ttl:
        raise AuthError(
            f"token of secondary {name!r} lives longer than {max_ttl}s",
            hint="issue tokens with a short expiry",
        )
    return name
