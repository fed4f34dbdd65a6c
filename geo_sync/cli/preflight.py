"""Before `secondary init` writes anything: is the primary there, and does it accept
this name and secret? The same checks `geo-sync check` runs about the primary."""

from __future__ import annotations

import click
from pydantic import ValidationError

from geo_sync.errors import ConfigError
from geo_sync.health.result import Level
from geo_sync.health.secondary import primary_checks
from geo_sync.secondary.client import PrimaryClient
from geo_sync.secondary.probe import probe_primary
from geo_sync.settings import SecondarySettings


def verify_primary(*, primary_url: str, name: str, secret: str, **tls: object) -> None:
    """Raise ConfigError naming each failed check; echo the results otherwise (``tls``:
    primary_ca_bundle and allow_insecure_primary, as the config will have them)."""
    try:
        # Only the fields the primary checks use; the rest are placeholders.
        settings = SecondarySettings(name=name, secret=secret, primary_url=primary_url,
                                     database_url="sqlite:///unused.db", mirror_root=".",
                                     **tls)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"invalid option: {problems}", hint="fix the named option") from None
    client = PrimaryClient(settings)
    try:
        results = primary_checks(settings, probe_primary(client))
    finally:
        client.close()
    failed = [r for r in results if r.level in (Level.CRITICAL, Level.UNKNOWN)]
    if failed:
        first = failed[0]
        raise ConfigError(
            "the primary check failed, nothing was written: "
            + "; ".join(f"{r.name}: {r.message}" for r in failed),
            hint=(first.hint or "fix the named problem")
            + " (or pass --skip-primary-check to set up offline)")
    for result in results:
        click.echo(result.line(), err=True)
