"""Alembic, driven from code: each database kind has its own script directory and
version table, so a primary and a tracking schema can even share one database."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

from geo_sync.db import make_engine
from geo_sync.errors import SchemaOutOfDate

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic (with mako and pygments behind it) is imported only to migrate: checking
# that a database is at the head, which status and every daemon start do, reads the
# version table and the scripts' revision lines instead (0.15 s of imports or more).
_REVISION = re.compile(r"^revision(?:\s*:[^=]+)?\s*=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision(?:\s*:[^=]+)?\s*=\s*(.+)$", re.MULTILINE)
_QUOTED = re.compile(r"['\"]([^'\"]+)['\"]")


def run_env() -> None:
    """The body of every migrations/env.py: run in a transaction on the engine given."""
    from alembic import context  # noqa: PLC0415 - see _REVISION

    config = context.config
    engine = config.attributes["engine"]
    assert isinstance(engine, Engine)
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            version_table=config.get_main_option("version_table") or "alembic_version",
            render_as_batch=connection.dialect.name == "sqlite",
            transactional_ddl=True,
        )
        with context.begin_transaction():
            context.run_migrations()


@dataclass(frozen=True)
class Schema:
    """One migration history: where its scripts live and which table records its revision."""

    name: str
    script_location: Path
    version_table: str

    def config(self, engine: Engine) -> Config:
        from alembic.config import Config  # noqa: PLC0415 - see _REVISION

        cfg = Config()
        cfg.set_main_option("script_location", str(self.script_location))
        cfg.set_main_option("version_table", self.version_table)
        cfg.attributes["engine"] = engine
        return cfg

    def head(self) -> str:
        """The revision no script revises (tests check alembic agrees)."""
        revisions, revised = set(), set()
        for script in (self.script_location / "versions").glob("*.py"):
            source = script.read_text()
            found = _REVISION.search(source)
            if found is None:
                continue
            revisions.add(found.group(1))
            down = _DOWN_REVISION.search(source)
            if down is not None:
                revised.update(_QUOTED.findall(down.group(1)))
        heads = sorted(revisions - revised)
        assert len(heads) == 1, f"{self.name} migrations have {len(heads)} heads"
        return heads[0]

    def current(self, engine: Engine) -> str | None:
        with engine.connect() as conn:
            if not inspect(conn).has_table(self.version_table):
                return None
            return conn.execute(text(
                f"SELECT version_num FROM {self.version_table}")).scalar()  # noqa: S608

    def upgrade(self, engine: Engine, revision: str = "head") -> None:
        from alembic import command  # noqa: PLC0415 - see _REVISION

        command.upgrade(self.config(engine), revision)

    def upgrade_url(self, url: str) -> tuple[str | None, str | None]:
        """Upgrade the database at ``url`` to head; return (revision before, after)."""
        engine = make_engine(url)
        try:
            before = self.current(engine)
            self.upgrade(engine)
            return before, self.current(engine)
        finally:
            engine.dispose()

    def downgrade(self, engine: Engine, revision: str) -> None:
        from alembic import command  # noqa: PLC0415

        command.downgrade(self.config(engine), revision)

    def require_current(self, engine: Engine) -> None:
        """Raise SchemaOutOfDate unless the database is at this code's head revision."""
        current, head = self.current(engine), self.head()
        if current != head:
            raise SchemaOutOfDate(
                f"{self.name} database schema is at {current or 'nothing'}, code expects {head}",
                hint=f"run `geo-sync {self.name} migrate`",
            )


PRIMARY = Schema(
    name="primary",
    script_location=Path(__file__).parent / "primary" / "migrations",
    version_table="geo_primary_alembic_version",
)

TRACKING = Schema(
    name="secondary",
    script_location=Path(__file__).parent / "secondary" / "migrations",
    version_table="geo_tracking_alembic_version",
)
