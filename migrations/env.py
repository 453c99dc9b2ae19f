"""Alembic environment of flywheel-sync.

Everything lives in schema flywheel, the version table included: the platform's database very likely
has an alembic_version of its own in public, and flywheel-sync must never touch it. The schema is
created before the version table needs it, and removed again when a downgrade reaches base, so that
nothing of flywheel-sync remains (but the cluster-wide roles: see migrations 0001 and 0005).

An upgrade creates the views and functions of the release it ends at once, after all its
migrations (flywheel_sync.database.objects.one_release_per_upgrade): `migrate --sql` prints the end state.
"""

from __future__ import annotations

import contextlib
import os

import sqlalchemy as sa
from alembic import command, context

from flywheel_sync.database import objects
from flywheel_sync.database.db import DATABASE_URL_ENV, create_engine

SCHEMA = "flywheel"
VERSION_TABLE = "alembic_version"

config = context.config


def _database_url() -> str | None:
    return (
        context.get_x_argument(as_dictionary=True).get("database_url")
        or config.attributes.get("database_url")
        or os.environ.get(DATABASE_URL_ENV)
    )


def _configure(**options) -> None:
    context.configure(
        version_table=VERSION_TABLE,
        version_table_schema=SCHEMA,
        transactional_ddl=True,
        **options,
    )


def _upgrading() -> bool:
    """True for an upgrade, from flywheel_sync.database.migrate (which says so) or from plain alembic."""
    if "upgrading" in config.attributes:
        return config.attributes["upgrading"]
    invoked = getattr(config.cmd_opts, "cmd", None)
    return bool(invoked) and invoked[0] is command.upgrade


def _run_migrations() -> None:
    releases = objects.one_release_per_upgrade(context.execute) if _upgrading() else contextlib.nullcontext()
    with releases:
        context.run_migrations()


def run_offline() -> None:
    # Offline mode only renders SQL: a URL, when given, only has to name the dialect.
    _configure(dialect_name="postgresql", literal_binds=True)
    with context.begin_transaction():
        context.execute(f"create schema if not exists {SCHEMA}")
        _run_migrations()
        if str(context.get_revision_argument()) == "base":
            context.execute(f"drop table {SCHEMA}.{VERSION_TABLE}")
            context.execute(f"drop schema {SCHEMA}")


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    engine = create_engine(_database_url(), poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        _run_on(connection)
        connection.commit()


def _run_on(connection: sa.Connection) -> None:
    connection.execute(sa.text(f"create schema if not exists {SCHEMA}"))
    _configure(connection=connection)
    with context.begin_transaction():
        _run_migrations()
        if context.get_context().get_current_revision() is None:
            connection.execute(sa.text(f"drop table if exists {SCHEMA}.{VERSION_TABLE}"))
            connection.execute(sa.text(f"drop schema if exists {SCHEMA}"))


if context.is_offline_mode():
    run_offline()
else:
    run_online()
