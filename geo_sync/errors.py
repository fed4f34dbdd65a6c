"""The one error hierarchy of geo-sync.

Every error an operator can see says what happened (the message) and what to do
(the hint), and knows whether retrying the same operation can succeed.
"""

from __future__ import annotations


class GeoSyncError(Exception):
    """Raised when geo-sync cannot do what it was asked; the root of all our errors."""

    retryable: bool = False
    default_hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class ConfigError(GeoSyncError):
    """Raised when the configuration file or an override is missing, malformed or invalid."""

    default_hint = "fix the named key in the config file, or run `geo-sync ... init` to write one"


class InvalidInput(GeoSyncError):
    """Raised when a caller hands us something malformed or hostile; nothing was written."""

    default_hint = "correct the named field and try again; nothing was changed"


class UnsafePath(InvalidInput):
    """Raised when a path is absolute, not normalized, or would leave its storage root."""

    default_hint = "paths must be relative to the storage root, normalized, without '..'"


class InvalidCursor(InvalidInput):
    """Raised when an event-feed cursor cannot be parsed or belongs to another database."""

    default_hint = "use the cursor the feed returned, or fetch /events/head to start over"


class TooLarge(InvalidInput):
    """Raised when a request body is larger than the endpoint ever needs."""

    default_hint = "send only what the endpoint documents"


class NotFound(GeoSyncError):
    """Raised when the named item does not exist."""


class MissingOnPrimary(NotFound):
    """Raised when the primary has no such item (deleted, or never existed)."""

    default_hint = "the item was deleted on the primary or never existed; it will be retried later"


class AuthError(GeoSyncError):
    """Raised when a request's credentials are missing, invalid, expired or disabled."""

    default_hint = "check the secondary's name and secret, and that both clocks are in sync"


class InvalidCredentials(AuthError):
    """Raised when a token names an unknown secondary or is not signed with its secret.

    The caller has proven nothing, so it learns nothing (not even which names exist);
    ``detail`` is for the primary's own log."""

    def __init__(self, detail: str) -> None:
        super().__init__("invalid credentials")
        self.detail = detail


class BackfillRequired(GeoSyncError):
    """Raised when the event log was pruned past a secondary's cursor."""

    default_hint = "the secondary must backfill from the catalog and restart from the feed head"


class SchemaOutOfDate(GeoSyncError):
    """Raised when the database schema is not at the revision this code expects."""

    default_hint = "run `geo-sync primary migrate` (or `secondary migrate`) to upgrade the schema"


class TransientError(GeoSyncError):
    """Raised when an operation failed for a reason that may go away (network, locks)."""

    retryable = True


class DaemonFailed(GeoSyncError):
    """Raised when a daemon loop died of a bug; the process exits non-zero."""

    default_hint = ("the supervisor (systemd, compose) restarts it; report the "
                    "daemon_thread_died log line")


class SiteReadOnly(GeoSyncError):
    """Raised when the primary refuses a write: maintenance mode is on, or the site was
    demoted (fenced) after another site was promoted."""

    default_hint = ("`geo-sync primary maintenance off` ends maintenance; a demoted site "
                    "takes no writes: publish on the new primary")


class SplitBrain(GeoSyncError):
    """Raised when a site answers at a lower epoch than one this secondary already
    followed: it is an old primary that another site replaced."""

    default_hint = ("point this secondary at the current primary (`geo-sync secondary "
                    "repoint URL`); demote the old one with `geo-sync primary demote`")
