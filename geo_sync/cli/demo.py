"""`geo-sync demo`: placeholder until written."""

from __future__ import annotations

import click


@click.command()
def demo() -> None:
    """Run a primary and a secondary in embedded mode and drive a workload through them."""
    raise click.ClickException("not yet")
