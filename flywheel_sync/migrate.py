"""Migrations: alembic, driven from Python so the CLI and the tests share one path."""

from __future__ import annotations

import io

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from . import db
from .paths import ALEMBIC_INI, MIGRATIONS_DIR


def alembic_config(output: io.TextIOBase | None = None) -> Config:
    config = Config(str(ALEMBIC_INI), output_buffer=output)
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _run(engine: Engine, action, *args) -> None:
    config = alembic_config()
    with db.connect(engine) as connection:
        db.require_primary(connection)
        config.attributes["connection"] = connection
        action(config, *args)


def upgrade(engine: Engine, revision: str = "head") -> None:
    _run(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    _run(engine, command.downgrade, revision)


def upgrade_sql(revision: str = "head", start: str | None = None) -> str:
    """The SQL an upgrade would run (alembic's offline mode), for a DBA to review."""
    output = io.StringIO()
    config = alembic_config(output=output)
    command.upgrade(config, f"{start}:{revision}" if start else revision, sql=True)
    return output.getvalue()


def current_revision(engine: Engine) -> str | None:
    with db.connect(engine) as connection:
        exists = connection.execute(sa.text("select to_regclass('flywheel.alembic_version') is not null")).scalar_one()
        if not exists:
            return None
        return connection.execute(sa.text("select version_num from flywheel.alembic_version")).scalar_one_or_none()


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def revisions() -> list[str]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]
